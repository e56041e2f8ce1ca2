"""InternVL3 adapter (hf ``internvl`` checkpoints, Qwen2 LLM): §11's token layout and grids.

Video path: every key frame is squashed to one tile (448² on the real models), pixel-shuffled
to a side×side token grid (16×16), and written as its own ``FrameK: <img>…</img>`` item by
the processor's video support. The "FrameK:" text between frames makes the visual tokens
non-contiguous, so they are gathered by token id and V (§4.3) is the exact visual positions.
Grid (T, side, side): no temporal merge, so the video map aligns with the key frames 1:1.

Frame path: each key frame is one image conversation, tiled by the image processor into
(cols, rows) = get_optimal_tiled_canvas(frame size, tile², 1, 12) tiles in row-major order,
**without** the thumbnail tile (the processor always appends one; see ``no_thumbnail``).
The map is reassembled as (rows·side, cols·side).

Both paths use the image context token; InternVL's own system message is prepended.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from ...config import DecafConfig
from ..base import PassMaps, register_adapter
from ..hf_adapter import HFAdapter

# InternVL2.5/3's conversation-template system message, which the reference prepends.
SYSTEM_PROMPT = ("你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的"
                 "多模态大语言模型。")
MAX_TILES = 12  # --max_patches of the reference scripts
MIN_TILES = 1


def tile_grid(height: int, width: int, tile_px: int, max_tiles: int = MAX_TILES) -> tuple[int, int]:
    """(rows, cols) of the frame-path tiling, as the image processor computes it."""
    from transformers.models.got_ocr2.image_processing_got_ocr2 import get_optimal_tiled_canvas

    cols, rows = get_optimal_tiled_canvas((height, width), (tile_px, tile_px), MIN_TILES, max_tiles)
    return rows, cols


def tiles_to_map(values: torch.Tensor, rows: int, cols: int, side: int) -> torch.Tensor:
    """(B, rows·cols·side²) per-token values, tiles row-major -> (B, rows·side, cols·side)."""
    batch = values.shape[0]
    tiles = values.reshape(batch, rows, cols, side, side)  # (B, tile row, tile col, y, x)
    return tiles.permute(0, 1, 3, 2, 4).reshape(batch, rows * side, cols * side)


def _check_thumbnail_switch(image_processor: Any) -> None:
    crop = type(image_processor).crop_image_to_patches
    if "use_thumbnail" not in inspect.signature(crop).parameters:
        raise RuntimeError(f"{type(image_processor).__name__}.crop_image_to_patches has no use_thumbnail option")


@contextlib.contextmanager
def no_thumbnail(image_processor: Any) -> Iterator[None]:
    """Within the block, the processor's tiling skips the global thumbnail tile (§11).

    ``crop_image_to_patches`` has a ``use_thumbnail`` switch but ``_preprocess`` never passes
    it and no processor option reaches it, so it is bound to False on this instance: the
    smallest override. The processor then also counts the right number of tiles (it expands
    the prompt from the ``num_patches`` this returns). The binding is removed afterwards so
    the processor stays serialisable and unchanged for other callers.
    """
    _check_thumbnail_switch(image_processor)
    crop = type(image_processor).crop_image_to_patches
    image_processor.crop_image_to_patches = functools.partial(crop, image_processor, use_thumbnail=False)
    try:
        yield
    finally:
        del image_processor.crop_image_to_patches


@register_adapter("internvl")
class InternVLAdapter(HFAdapter):
    """InternVL3 (hf) with the rollout capture in its Qwen2 text layers."""

    family = "internvl"
    temporal_merge = 1
    span_rule = False  # "FrameK:" text sits between the frames' tokens

    def __init__(self, model: Any, processor: Any, config: DecafConfig) -> None:
        super().__init__(model, processor, config)
        self.image_token_id = int(model.config.image_token_id)
        self.tile_px, self.tile_side = _tile_geometry(model.config)
        if processor.image_seq_length != self.tile_side**2:
            raise RuntimeError(f"processor writes {processor.image_seq_length} tokens per tile, "
                               f"the model makes {self.tile_side}x{self.tile_side}")
        if processor.image_token_id != self.image_token_id:
            raise RuntimeError("processor and model disagree on the image token id")
        _check_thumbnail_switch(processor.image_processor)  # fail at load, not at the first frame pass

    @classmethod
    def _hf_model_class(cls, model_type: str) -> Any:
        from transformers import InternVLForConditionalGeneration

        return InternVLForConditionalGeneration

    def _system_turns(self) -> list[dict[str, Any]]:
        return [{"role": "system", "content": SYSTEM_PROMPT}]

    # ------------------------------------------------------------------ video path
    def video_pass(self, frames: Sequence[np.ndarray], text: str, generate: bool) -> PassMaps:
        if len(frames) == 0:
            raise ValueError("video_pass needs at least one frame")
        clip = np.stack([np.ascontiguousarray(f) for f in frames])  # (T, H, W, 3)
        inputs = self.processor(
            text=[self._chat("video", text)], videos=[clip], return_tensors="pt",
            videos_kwargs={"do_sample_frames": False, "do_resize": True,
                           "size": {"height": self.tile_px, "width": self.tile_px}})
        if tuple(inputs["pixel_values"].shape[-2:]) != (self.tile_px, self.tile_px):
            raise RuntimeError(f"video frames are {tuple(inputs['pixel_values'].shape[-2:])}, not one tile")
        grid = torch.tensor([[len(frames), self.tile_side, self.tile_side]])
        return self._video_maps(inputs, self.image_token_id, grid, generate)

    # ------------------------------------------------------------------ frame path
    def frame_pass(
        self, frames: Sequence[np.ndarray], text: str, generate: bool,
        video_grid_hw: tuple[int, int] | None = None,
    ) -> PassMaps:
        """Tiled single-image prompts; the grid follows each frame's own size (video_grid_hw unused)."""
        if len(frames) == 0:
            raise ValueError("frame_pass needs at least one frame")
        images = [np.ascontiguousarray(f) for f in frames]
        if len({im.shape for im in images}) != 1:
            raise ValueError("frame_pass needs frames of one size (equal prompt lengths, §13 item 5)")
        rows, cols = tile_grid(*images[0].shape[:2], self.tile_px)
        prompt = self._chat("image", text)
        return self._in_batches(images, lambda part: self._frame_batch(part, prompt, generate, rows, cols))

    def _frame_batch(self, images: list[np.ndarray], prompt: str, generate: bool,
                     rows: int, cols: int) -> tuple[torch.Tensor, list[str]]:
        with no_thumbnail(self.processor.image_processor):
            inputs = self.processor(
                text=[prompt] * len(images), images=images, return_tensors="pt", padding=True,
                images_kwargs={"crop_to_patches": True, "min_patches": MIN_TILES, "max_patches": MAX_TILES,
                               "size": {"height": self.tile_px, "width": self.tile_px}})
        if inputs["pixel_values"].shape[0] != len(images) * rows * cols:
            raise RuntimeError(f"processor made {inputs['pixel_values'].shape[0]} tiles for {len(images)} "
                               f"frames; expected {rows}x{cols} each (thumbnail not dropped?)")
        row, answers = self._run(inputs, self.image_token_id, generate)
        visual = inputs["input_ids"] == self.image_token_id  # (B, L)
        side = self.tile_side
        if int(visual.sum()) != len(images) * rows * cols * side * side:
            raise RuntimeError(f"{int(visual.sum())} image tokens for {len(images)} frames of {rows}x{cols} tiles")
        values = row[visual].view(len(images), -1)  # each item's tokens in sequence order
        return tiles_to_map(values, rows, cols, side).float().cpu(), answers


def _tile_geometry(config: Any) -> tuple[int, int]:
    """(tile px, tokens per tile side): 448 px / 14-px patches, pixel shuffle ×0.5 -> 16."""
    vision = config.vision_config
    image = vision.image_size if isinstance(vision.image_size, (list, tuple)) else (vision.image_size,) * 2
    patch = vision.patch_size if isinstance(vision.patch_size, (list, tuple)) else (vision.patch_size,) * 2
    if image[0] != image[1] or patch[0] != patch[1]:
        raise RuntimeError(f"non-square tiles are not supported: image {image}, patch {patch}")
    side = image[0] // patch[0] * config.downsample_ratio
    if side != int(side):
        raise RuntimeError(f"tile of {image[0]} px / {patch[0]} px patches does not pixel-shuffle evenly")
    return int(image[0]), int(side)
