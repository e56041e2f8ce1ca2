"""Settings of the DecAF pipeline; every default is the paper's reference setting.

One home for every threshold and size the method uses (``docs/decaf-method`` §14), so the
CLI, the ROS node and the evaluation all read the same numbers.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

DEFAULT_MLLM = "Qwen/Qwen2.5-VL-7B-Instruct"
DEFAULT_SAM2 = "facebook/sam2.1-hiera-large"
DTYPES = ("auto", "float32", "bfloat16", "float16")


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

    # Map post-processing (§5).
    smooth_kernel_video: int = 3
    smooth_kernel_frame: int = 7
    smooth_sigma: float = 1.0

    # SAM2 prompting and selection (§7).
    point_threshold: float = 0.8  # tau_pq, inclusive (>=)
    nms_iou: float = 0.7  # strict >
    track_score_threshold: float = 0.8  # tau_trk, strict >
    mask_threshold: float = 0.0  # logits > 0  <=> sigmoid > 0.5

    # Live grounding: compute each thing once. Both give the reference results (the MLLM maps to
    # fp rounding, the SAM2 masks bit for bit); False runs the reference computation literally.
    share_prompt_prefix: bool = True  # P3 reuses P1's visual prefix (KV cache, prefix rows' V-Max sums)
    share_sam2_features: bool = True  # one SAM2 image-feature cache per grounding (every session)

    extra: dict[str, Any] = field(default_factory=dict)

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
        ]
        errors = [message for ok, message in checks if not ok]
        if errors:
            raise ValueError("; ".join(errors))
