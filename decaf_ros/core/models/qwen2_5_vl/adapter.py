"""Qwen2.5-VL adapter: video path (§2.2) and frame path (§2.3), rollout maps per §5.1 / §11.

One LLM token covers a 28×28 pixel block (14-px patches, 2×2 merge) and two consecutive
frames (temporal patch 2). Frames are resized here, with PIL bicubic, to sizes that are
multiples of 28, and handed to the HF processors with resizing disabled, so the token grid
is known exactly: video (T/2, H/28, W/28), frames (1, H/28, W/28) each.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from ...config import DecafConfig
from ..base import PassMaps, register_adapter
from ..hf_adapter import HFAdapter

TOKEN_PX = 28  # patch 14 × spatial merge 2
MIN_TOKENS = 4  # qwen-vl-utils' VIDEO_MIN_PIXELS = 4·28²
REFERENCE_FPS = 2.0  # the processor default the reference ran with: second_per_grid_ts = 2 / 2.0 = 1.0


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Sides rounded to multiples of ``factor``; area capped by flooring, raised by ceiling (§2.2)."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio above 200 is not supported: {height}x{width}")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def video_frame_size(height: int, width: int, max_tokens: int, token_px: int = TOKEN_PX) -> tuple[int, int]:
    """(H, W) of the video path's frames: ≤ max_tokens tokens per temporal slot."""
    return smart_resize(height, width, token_px, MIN_TOKENS * token_px**2, max_tokens * token_px**2)


def resize_frames(frames: Sequence[np.ndarray], size_hw: tuple[int, int]) -> list[np.ndarray]:
    """PIL bicubic resize of uint8 RGB (H, W, 3) frames to exactly ``size_hw``."""
    height, width = size_hw
    out = []
    for frame in frames:
        image = Image.fromarray(np.ascontiguousarray(frame)).convert("RGB")
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BICUBIC)
        out.append(np.array(image))  # writable copy (torch.from_numpy warns on read-only)
    return out


def pad_to_even(frames: list[np.ndarray]) -> list[np.ndarray]:
    """Duplicate the last frame when the count is odd (temporal patch 2)."""
    return frames + [frames[-1]] if len(frames) % 2 else frames


def _token_grid(grid: torch.Tensor) -> torch.Tensor:
    """(B, 3) processor grid in patches -> LLM token grid (the 2×2 spatial merge halves h and w)."""
    return torch.stack([grid[:, 0], grid[:, 1] // 2, grid[:, 2] // 2], dim=1)


def _model_class(model_type: str) -> Any:
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLForConditionalGeneration

    return {"qwen2_5_vl": Qwen2_5_VLForConditionalGeneration,
            "qwen2_vl": Qwen2VLForConditionalGeneration}[model_type]


@register_adapter("qwen2_5_vl", "qwen2_vl")
class Qwen2_5_VLAdapter(HFAdapter):
    """Qwen2.5-VL (and Qwen2-VL: same token layout) with the rollout capture in its text layers.

    No system turn is written: the chat template adds the family's default one (§3.1).
    """

    family = "qwen2_5_vl"
    patch_px = 14  # vision patch side; one LLM token covers 2·patch_px (2×2 spatial merge)

    def __init__(self, model: Any, processor: Any, config: DecafConfig) -> None:
        super().__init__(model, processor, config)
        self.family = model.config.model_type
        self.video_token_id = int(model.config.video_token_id)
        self.image_token_id = int(model.config.image_token_id)

    @classmethod
    def _hf_model_class(cls, model_type: str) -> Any:
        return _model_class(model_type)

    @classmethod
    def _load_processor(cls, source: str, config: DecafConfig) -> Any:
        """The processor with the configured image-processor backend (§13 item 11).

        The reference loads ``use_fast=False``, the PIL/numpy image processor; transformers'
        default torchvision one rescales and normalises to pixels 1 ulp apart in most values. The
        image processor is loaded on its own because a ``backend`` passed to the processor would
        also reach the video processor, which has only the torchvision variant in transformers 5.
        """
        from transformers import AutoImageProcessor, AutoProcessor

        image_processor = AutoImageProcessor.from_pretrained(source, backend=config.image_processor_backend)
        return AutoProcessor.from_pretrained(source, image_processor=image_processor)

    @property
    def token_px(self) -> int:
        return 2 * self.patch_px

    def _text_positions(self, inputs: Any) -> torch.Tensor:
        """(3, B, L) multimodal RoPE positions of the whole prompt, as the model's forward computes them.

        Text after the visual items continues from the grid's largest position, not from the
        token count, so a suffix run on a cached prefix needs these explicitly (the model would
        otherwise fall back to the rope deltas of whatever prompt it ran last).
        """
        positions, _ = self.model.model.get_rope_index(
            inputs["input_ids"], mm_token_type_ids=inputs["mm_token_type_ids"],
            image_grid_thw=inputs.get("image_grid_thw"), video_grid_thw=inputs.get("video_grid_thw"),
            second_per_grid_ts=inputs.get("second_per_grid_ts"), attention_mask=inputs.get("attention_mask"))
        return positions

    # ------------------------------------------------------------------ video path
    def video_pass(self, frames: Sequence[np.ndarray], text: str, generate: bool) -> PassMaps:
        if len(frames) == 0:
            raise ValueError("video_pass needs at least one frame")
        size = video_frame_size(*frames[0].shape[:2], self.config.video_max_tokens, self.token_px)
        clip = pad_to_even(resize_frames(frames, size))
        inputs = self._video_inputs(clip, text)
        grid = inputs["video_grid_thw"]  # (1, 3) in patches
        self._check_grid(grid, len(clip), size)
        return self._video_maps(inputs, self.video_token_id, _token_grid(grid), generate)

    def _video_inputs(self, clip: list[np.ndarray], text: str) -> Any:
        """Processor inputs of one video prompt; frames already at their final size."""
        inputs = self.processor(
            text=[self._chat("video", text)], videos=[np.stack(clip)], return_tensors="pt",
            videos_kwargs={"do_resize": False, "cap_pixels_per_frame": False})
        if "second_per_grid_ts" in inputs:  # Qwen2.5-VL's absolute-time mRoPE (Qwen2-VL has none)
            patch = self.processor.video_processor.temporal_patch_size
            inputs["second_per_grid_ts"] = torch.full((inputs["video_grid_thw"].shape[0],), patch / REFERENCE_FPS)
        return inputs

    def _check_grid(self, grid: torch.Tensor, num_frames: int, size_hw: tuple[int, int]) -> None:
        # The processor must keep our sizes; a resize there would silently misplace the maps.
        expected = [num_frames // 2, size_hw[0] // self.patch_px, size_hw[1] // self.patch_px]
        if grid[0].tolist() != expected:
            raise RuntimeError(f"processor changed the video grid: {grid[0].tolist()} != {expected}")

    # ------------------------------------------------------------------ frame path
    def frame_pass(
        self, frames: Sequence[np.ndarray], text: str, generate: bool,
        video_grid_hw: tuple[int, int] | None = None,
    ) -> PassMaps:
        if video_grid_hw is None:
            raise RuntimeError("frame_pass needs the video grid: pass video_grid_hw=<video pass>.grid_hw")
        scale = self.config.frame_resize_scale
        size = (video_grid_hw[0] * self.token_px * scale, video_grid_hw[1] * self.token_px * scale)
        prompt = self._chat("image", text)
        return self._in_batches(resize_frames(frames, size),
                                lambda part: self._frame_batch(part, prompt, generate, size))

    def _frame_batch(self, images: list[np.ndarray], prompt: str, generate: bool,
                     size_hw: tuple[int, int]) -> tuple[torch.Tensor, list[str]]:
        """One batch of single-image conversations; same size and text, hence no padding."""
        inputs = self.processor(
            text=[prompt] * len(images), images=images, return_tensors="pt", padding=True,
            images_kwargs={"do_resize": False})
        grid = inputs["image_grid_thw"]  # (B, 3)
        expected = [1, size_hw[0] // self.patch_px, size_hw[1] // self.patch_px]
        if any(g != expected for g in grid.tolist()):
            raise RuntimeError(f"processor changed the image grid: {grid.tolist()} != {expected}")
        return self._visual_pass(inputs, self.image_token_id, _token_grid(grid), generate)
