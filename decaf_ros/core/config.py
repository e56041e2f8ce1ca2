"""Settings of the DecAF pipeline; every default is the paper's reference setting.

One home for every threshold and size the method uses (docs/method.md §14), so the
CLI, the ROS node and the evaluation all read the same numbers.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from .prompts import PROMPT_VERSIONS

DEFAULT_MLLM = "Qwen/Qwen2.5-VL-7B-Instruct"
DEFAULT_SAM2 = "facebook/sam2.1-hiera-large"
DTYPES = ("auto", "float32", "bfloat16", "float16")
IMAGE_PROCESSOR_BACKENDS = ("pil", "torchvision")
PROMPT_VERSION_FIELDS = ("prompt_object_version", "prompt_choice_version", "prompt_background_version")
# Settings that choose between the reference's variants; decaf-segment/decaf-eval expose them as options
# and the node as parameters, all with these descriptions.
VARIANT_FIELDS = (*PROMPT_VERSION_FIELDS, "image_processor_backend")
VARIANT_DOCS = {
    "prompt_object_version": "P1 object-class prompt: 0 = the paper's, 1-3 = its Table 10 ablation variants",
    "prompt_choice_version": "P2 class-choice prompt: 0 = the paper's, 1-3 = its Table 12 ablation variants",
    "prompt_background_version": "P3 background prompt: 0 = the paper's, 1-3 = its Table 11 ablation variants",
    "image_processor_backend": "Qwen families' image processor: pil = the reference's (bit-identical pixels), "
                               "torchvision = transformers' fast one (pixels differ by 1 ulp)",
}

# Exact sharing switches of the live path (docs/method.md §13): on, each thing is computed once; off, the
# reference computation runs literally. The node's parameters and the tools' options use these descriptions.
SHARING_FIELDS = ("share_prompt_prefix", "share_sam2_features")
SHARING_DOCS = {
    "share_prompt_prefix": "P3 reuses P1's visual prefix (vision features, KV cache, prefix V-Max sums): the same "
                           "maps to fp rounding for about half the MLLM work; off = the reference computation",
    "share_sam2_features": "one SAM2 image-feature cache per grounding (bit-identical masks, each frame encoded "
                           "once); off = every SAM2 session encodes its frames again",
}


@dataclass(frozen=True)
class DecafConfig:
    """All knobs of one DecAF run (reference mode defaults)."""

    # Models: a hub id or a local folder saved with ``save_pretrained``.
    mllm: str = DEFAULT_MLLM
    sam2: str = DEFAULT_SAM2
    device: str = "auto"  # "auto" -> cuda when available, else cpu
    dtype: str = "auto"  # MLLM dtype; "auto" -> bfloat16 on cuda, float32 on cpu
    sam2_dtype: str = "float32"  # the reference runs SAM2 in fp32 (§7.1, no autocast)

    # Frames (§2.1): uniform key frames; all frames when the clip is shorter.
    num_key_frames: int = 16

    # Resolution (§2.2-2.3, Qwen family): token budget per temporal slot of the video
    # path; the frame path is exactly ``frame_resize_scale`` x the video grid per side.
    video_max_tokens: int = 400
    frame_resize_scale: int = 2
    frame_batch_size: int = 4  # attn_max_batch: key frames per frame-path forward

    # Rollout (§4): None -> half the LLM depth; the last layer is always included.
    rollout_start_layer: int | None = None

    # Generation (§3.1): greedy.
    max_new_tokens: int = 128

    # Prompt versions (§3.7): 0 is the paper's setting, 1-3 its ablations (Tables 10, 12, 11).
    prompt_object_version: int = 0  # P1, object class
    prompt_choice_version: int = 0  # P2, class choice
    prompt_background_version: int = 0  # P3, background

    # Image processor of the Qwen families (§13 item 11): "pil" is the PIL/numpy processor the
    # reference loads (use_fast=False), so frame-path pixels are bit-identical to it; "torchvision"
    # is transformers' fast processor (about three quarters of the pixel values differ by 1 ulp).
    image_processor_backend: str = "pil"

    # Map post-processing (§5).
    smooth_kernel_video: int = 3
    smooth_kernel_frame: int = 7
    smooth_sigma: float = 1.0

    # SAM2 prompting and selection (§7).
    point_threshold: float = 0.8  # tau_pq, inclusive (>=)
    nms_iou: float = 0.7  # strict >
    track_score_threshold: float = 0.8  # tau_trk, strict >
    # Live grounding: compute each thing once. Both give the reference results (the MLLM maps to
    # fp rounding, the SAM2 masks bit for bit); False runs the reference computation literally.
    share_prompt_prefix: bool = True  # P3 reuses P1's visual prefix (KV cache, prefix rows' V-Max sums)
    share_sam2_features: bool = True  # one SAM2 image-feature cache per grounding (every session)

    def with_overrides(self, **overrides: Any) -> "DecafConfig":
        """Return a copy with the given fields replaced (unknown names raise)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown DecafConfig field(s): {', '.join(unknown)}")
        return replace(self, **overrides)

    def validate(self) -> None:
        """Raise ValueError with a readable message when a value is out of range."""
        checks = [
            (self.num_key_frames >= 1, "num_key_frames must be >= 1"),
            (self.video_max_tokens >= 4, "video_max_tokens must be >= 4"),
            (self.frame_resize_scale >= 1, "frame_resize_scale must be >= 1"),
            (self.frame_batch_size >= 1, "frame_batch_size must be >= 1"),
            (self.max_new_tokens >= 1, "max_new_tokens must be >= 1"),
            *((_is_prompt_version(getattr(self, name)),
               f"{name} must be one of {', '.join(map(str, PROMPT_VERSIONS))}") for name in PROMPT_VERSION_FIELDS),
            (self.smooth_kernel_video % 2 == 1, "smooth_kernel_video must be odd"),
            (self.smooth_kernel_frame % 2 == 1, "smooth_kernel_frame must be odd"),
            (self.smooth_sigma > 0, "smooth_sigma must be > 0"),
            (0.0 <= self.point_threshold <= 1.0, "point_threshold must be in [0, 1]"),
            (0.0 <= self.nms_iou <= 1.0, "nms_iou must be in [0, 1]"),
            (0.0 <= self.track_score_threshold <= 2.0, "track_score_threshold must be in [0, 2]"),
            (self.rollout_start_layer is None or self.rollout_start_layer >= 0,
             "rollout_start_layer must be >= 0"),
            (self.device in ("auto", "cpu") or self.device.startswith("cuda"),
             "device must be 'auto', 'cpu' or 'cuda[:N]'"),
            (self.dtype in DTYPES, f"dtype must be one of {', '.join(DTYPES)}"),
            (self.sam2_dtype in DTYPES, f"sam2_dtype must be one of {', '.join(DTYPES)}"),
            (self.image_processor_backend in IMAGE_PROCESSOR_BACKENDS,
             f"image_processor_backend must be one of {', '.join(IMAGE_PROCESSOR_BACKENDS)}"),
        ]
        errors = [message for ok, message in checks if not ok]
        if errors:
            raise ValueError("; ".join(errors))


def _is_prompt_version(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value in PROMPT_VERSIONS
