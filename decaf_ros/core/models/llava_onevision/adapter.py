"""LLaVA-OneVision adapter (hf checkpoints): video path and frame path per §11.

Video path: every frame is squashed to one SigLIP tile (384×384, 27×27 patches) by the video
processor and its features are bilinearly pooled to 14×14, so the token grid is (T, 14, 14);
there is no temporal merge (temporal_merge 1, no alignment needed).

Frame path: each key frame is its own single-image prompt, tiled "anyres" to the best pinpoint
resolution with padding. Only the tile features are kept: stitched, un-padded and, when their
area exceeds the ``anyres_max_9`` budget by more than 1.1×, bilinearly downsized. The grid is
(1, rows, cols) per frame, already in LLM tokens (no halving, §13 item 7).

Stock transformers adds what the reference removes (it sets ``use_newline = False`` on model and
processor): a newline embedding after every row of tiles and after each video, and the global
base-image features before the tiles. Two small subclasses drop exactly these, one on each side,
so the placeholder count the processor inserts and the features the model scatters still agree
(transformers checks that and raises otherwise; the adapter also checks the count per item).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import LlavaOnevisionProcessor
from transformers.image_processing_utils import select_best_resolution
from transformers.models.llava_onevision.modeling_llava_onevision import LlavaOnevisionModel

from ...config import DecafConfig
from ...rollout import visual_span_mask
from ..base import PassMaps, register_adapter
from ..hf_adapter import HFAdapter

SYSTEM_PROMPT = "You are a helpful assistant."  # Qwen2's default, prepended explicitly (§3.1)


class TileGridProcessor(LlavaOnevisionProcessor):
    """LLaVA-OneVision processor whose placeholder counts leave out base image and newlines."""

    use_newline = False

    def anyres_grid(self, orig_height: int, orig_width: int, tile_height: int, tile_width: int) -> tuple[int, int]:
        """(rows, cols) of the stitched, un-padded (and possibly downsized) tile features.

        Uses the processor's own sizing (best pinpoint, ``_get_unpadded_features`` with the
        ``vision_aspect_ratio`` budget); its newline count is one per row, hence ``rows``.
        """
        best_h, best_w = select_best_resolution([orig_height, orig_width], self.image_processor.image_grid_pinpoints)
        side = math.isqrt(self.num_image_tokens)  # patches per tile side (27 real)
        features, rows = self._get_unpadded_features(
            orig_height, orig_width, side, side, best_h // tile_height, best_w // tile_width)
        return rows, features // rows

    def frame_grid(self, height: int, width: int) -> tuple[int, int]:
        """Token grid of a frame of this size (tiles of the image processor's size)."""
        size = self.image_processor.size
        return self.anyres_grid(height, width, size["height"], size["width"])

    def video_side(self) -> int:
        """Pooled tokens per side of one video frame: ceil(27 / 2) = 14."""
        return math.ceil(math.isqrt(self.num_image_tokens) / 2)

    def _get_number_of_features(self, orig_height: int, orig_width: int, height: int, width: int) -> int:
        rows, cols = self.anyres_grid(orig_height, orig_width, height, width)
        return rows * cols  # no base-image block, no newline column

    def replace_video_token(self, video_inputs: dict, video_idx: int, **kwargs: Any) -> str:
        text = super().replace_video_token(video_inputs, video_idx, **kwargs)
        return text[: -len(self.video_token)]  # the stock count has +1 for the trailing newline


class TileGridModel(LlavaOnevisionModel):
    """LlavaOnevisionModel producing tile features without base image or newline embeddings."""

    use_newline = False

    def pack_image_features(self, image_features: Sequence[torch.Tensor], image_sizes: torch.Tensor,
                            image_newline: torch.Tensor | None = None,
                            vision_aspect_ratio: str = "anyres_max_9") -> tuple[list[torch.Tensor], torch.Tensor]:
        """Stock packing without newlines, then the leading base-image block removed.

        image_features: per image (1 + tiles, patches, D) with the base image first;
        returns per image (rows·cols, D) in raster order, and the lengths.
        """
        packed, _ = super().pack_image_features(
            image_features, image_sizes, image_newline=None, vision_aspect_ratio=vision_aspect_ratio)
        base = (self.config.vision_config.image_size // self.config.vision_config.patch_size) ** 2
        out = []
        for tiles, feature in zip(image_features, packed):
            if tiles.shape[0] < 2:
                raise RuntimeError("image was not anyres-tiled (multi-image prompt?); one image per prompt only")
            out.append(feature[base:])
        lengths = torch.tensor([len(f) for f in out], dtype=torch.long, device=out[0].device)
        return out, lengths

    # The explicit signature matters: ``generate`` pre-encodes pixels by matching these names.
    def get_video_features(self, pixel_values_videos: torch.Tensor,
                           vision_feature_layer: int | list[int] | None = None,
                           vision_feature_select_strategy: str | None = None, **kwargs: Any) -> Any:
        outputs = super().get_video_features(
            pixel_values_videos, vision_feature_layer=vision_feature_layer,
            vision_feature_select_strategy=vision_feature_select_strategy, **kwargs)
        outputs.pooler_output = outputs.pooler_output[:, :-1]  # (B, T·14·14 + 1, D): drop the newline
        return outputs


def _drop_base_and_newlines(model: Any) -> None:
    """Switch the loaded inner model to TileGridModel (a subclass with no state of its own)."""
    if not isinstance(model.model, LlavaOnevisionModel):
        raise TypeError(f"expected a LlavaOnevisionModel inside, got {type(model.model).__name__}")
    model.model.__class__ = TileGridModel


@register_adapter("llava_onevision")
class LlavaOnevisionAdapter(HFAdapter):
    """LLaVA-OneVision (Qwen2 LLM) with the rollout capture in its text layers."""

    family = "llava_onevision"
    temporal_merge = 1

    def __init__(self, model: Any, processor: TileGridProcessor, config: DecafConfig) -> None:
        if model.config.vision_feature_select_strategy != "full":
            # SigLIP has no CLS token; "default" would drop a real patch and break the tile grid.
            raise ValueError("LLaVA-OneVision adapter expects vision_feature_select_strategy='full'")
        _drop_base_and_newlines(model)
        processor.vision_feature_select_strategy = model.config.vision_feature_select_strategy
        processor.vision_aspect_ratio = model.config.vision_aspect_ratio
        super().__init__(model, processor, config)
        self.video_token_id = int(model.config.video_token_id)
        self.image_token_id = int(model.config.image_token_id)

    @classmethod
    def _load_processor(cls, source: str, config: DecafConfig) -> TileGridProcessor:
        return TileGridProcessor.from_pretrained(source)

    @classmethod
    def _hf_model_class(cls, model_type: str) -> Any:
        from transformers import LlavaOnevisionForConditionalGeneration

        return LlavaOnevisionForConditionalGeneration

    def _system_turns(self) -> list[dict[str, Any]]:
        # Typed content items: the template selects text items by type.
        return [{"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]}]

    # ------------------------------------------------------------------ video path
    def video_pass(self, frames: Sequence[np.ndarray], text: str, generate: bool) -> PassMaps:
        if len(frames) == 0:
            raise ValueError("video_pass needs at least one frame")
        clip = np.stack([np.ascontiguousarray(f) for f in frames])  # (T, H, W, 3)
        inputs = self.processor(text=[self._chat("video", text)], videos=[clip], return_tensors="pt")
        side = self.processor.video_side()
        grid = torch.tensor([[len(frames), side, side]])  # (1, 3): (T, 14, 14)
        self._check_count(inputs["input_ids"] == self.video_token_id, grid)
        return self._video_maps(inputs, self.video_token_id, grid, generate)

    # ------------------------------------------------------------------ frame path
    def frame_pass(
        self, frames: Sequence[np.ndarray], text: str, generate: bool,
        video_grid_hw: tuple[int, int] | None = None,
    ) -> PassMaps:
        """Anyres tiling of each frame at its own size; ``video_grid_hw`` is not used here."""
        prompt = self._chat("image", text)
        images = [np.ascontiguousarray(f) for f in frames]
        return self._in_batches(images, lambda part: self._frame_batch(part, prompt, generate))

    def _frame_batch(self, images: list[np.ndarray], prompt: str,
                     generate: bool) -> tuple[torch.Tensor, list[str]]:
        """Single-image conversations of one size and text, hence one length and no padding."""
        inputs = self.processor(text=[prompt] * len(images), images=images, return_tensors="pt", padding=True)
        rows, cols = self.processor.frame_grid(*images[0].shape[:2])
        grid = torch.tensor([[1, rows, cols]] * len(images))  # (B, 3)
        self._check_count(inputs["input_ids"] == self.image_token_id, grid)
        return self._visual_pass(inputs, self.image_token_id, grid, generate)

    @staticmethod
    def _check_count(token_is_visual: torch.Tensor, grid: torch.Tensor) -> None:
        # The processor's placeholder count must be the grid we reshape to; a stray base-image
        # block or newline column would otherwise shift every row of the map.
        counts = token_is_visual.sum(dim=1).tolist()
        expected = grid.prod(dim=1).tolist()
        if counts != expected:
            raise RuntimeError(f"processor inserted {counts} visual tokens, grid {grid.tolist()} needs {expected}")
        # V is taken as the contiguous span of item 0 (§4.3): it must hold visual tokens only.
        if not torch.equal(visual_span_mask(token_is_visual), token_is_visual):
            raise RuntimeError("visual tokens are not one contiguous span at the same place in every item")

    # ------------------------------------------------------------------ running
    def _to_device(self, inputs: Any) -> Any:
        """Inputs on the model's device, pixels (fp32 from the processor) in the model's dtype."""
        inputs = inputs.to(self.device)
        for key in ("pixel_values", "pixel_values_videos"):
            if key in inputs:
                inputs[key] = inputs[key].to(self.model.dtype)
        return inputs
