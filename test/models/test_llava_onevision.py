"""LLaVA-OneVision adapter on the tiny model: loading, planted feature positions, grids, pipeline."""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from decaf_ros.core import prompts
from decaf_ros.core.models.base import PassMaps
from decaf_ros.core.models.llava_onevision.adapter import LlavaOnevisionAdapter, TileGridModel, TileGridProcessor
from decaf_ros.core.models.llava_onevision import tiny
from decaf_ros.devtools.tiny_recipe import TEXT_LAYERS
from adapter_helpers import assert_batching_keeps_maps, assert_generation_is_deterministic, random_clip
from common_fixtures import tiny_config

H, W = 100, 150  # non-square: 2×2 tiles of 98 px, padded top and bottom
SIDE = tiny.TILE // tiny.PATCH  # 7 patches per tile side
POOLED = math.ceil(SIDE / 2)  # 4 video tokens per side
NEWLINE = -777.0  # planted value of the newline embedding


def clip(n: int, size: tuple[int, int] = (H, W), seed: int = 0) -> list[np.ndarray]:
    return random_clip(n, size, seed)


# ---------------------------------------------------------------- independent anyres geometry
def best_pinpoint(height: int, width: int, pinpoints: list[list[int]]) -> tuple[int, int]:
    """The pinpoint keeping the most of the frame's pixels, then wasting the least (first on ties)."""
    def keep(p):
        scale = min(p[1] / width, p[0] / height)
        kept = min(int(width * scale) * int(height * scale), width * height)
        return kept, -(p[0] * p[1] - kept)
    best = max(pinpoints, key=keep)
    return best[0], best[1]


def expected_layout(height: int, width: int, pinpoints, tile: int, side: int,
                    max_tiles: int = 9) -> dict[str, int]:
    """Canvas of stitched tile features, the un-padded window inside it, and the final grid."""
    best_h, best_w = best_pinpoint(height, width, pinpoints)
    tiles_h, tiles_w = best_h // tile, best_w // tile
    canvas_h, canvas_w = tiles_h * side, tiles_w * side
    top = left = 0
    if width / height > canvas_w / canvas_h:  # frame fills the width: padding above and below
        top = (canvas_h - int(height * canvas_w / width)) // 2
    else:
        left = (canvas_w - int(width * canvas_h / height)) // 2
    rows, cols = canvas_h - 2 * top, canvas_w - 2 * left
    ratio = math.sqrt(rows * cols / (max_tiles * side**2))
    if ratio > 1.1:  # anyres_max_9 budget exceeded: bilinearly downsized
        rows, cols = int(rows // ratio), int(cols // ratio)
    return dict(tiles_w=tiles_w, top=top, left=left, rows=rows, cols=cols, downsized=int(ratio > 1.1))


REAL_PINPOINTS = [[384 * i, 384 * j] for i in range(1, 7) for j in range(1, 7)]


def real_size_processor(tokenizer) -> TileGridProcessor:
    """The real checkpoint's image geometry: 384-px tiles, 27×27 patches, pinpoints up to 6×6 tiles."""
    from transformers import LlavaOnevisionImageProcessor, LlavaOnevisionVideoProcessor

    return TileGridProcessor(
        image_processor=LlavaOnevisionImageProcessor(image_grid_pinpoints=REAL_PINPOINTS),
        tokenizer=tokenizer, video_processor=LlavaOnevisionVideoProcessor(),
        num_image_tokens=729, vision_feature_select_strategy="full", vision_aspect_ratio="anyres_max_9")


def test_real_size_grids_match_independent_computation(tiny_llava_adapter) -> None:
    processor = real_size_processor(tiny_llava_adapter.processor.tokenizer)
    assert processor.frame_grid(480, 854) == (46, 81)  # §11 worked example: 3×2 tiles of 384
    assert processor.video_side() == 14  # 27 patches pooled to 14
    for height, width in [(480, 854), (720, 1280), (1080, 1920), (854, 480), (500, 500), (100, 3000), (37, 61)]:
        want = expected_layout(height, width, REAL_PINPOINTS, 384, 27)
        assert processor.frame_grid(height, width) == (want["rows"], want["cols"]), (height, width)
    assert expected_layout(1080, 1920, REAL_PINPOINTS, 384, 27)["downsized"] == 1


def test_real_checkpoint_geometry(tmp_path_factory) -> None:
    """384-px tiles at toy width: 16 frames -> (16, 14, 14); 854×480 frame -> 46×81 (§11)."""
    from decaf_ros.core.models import load_mllm

    folder = str(tiny.build_tiny_llava_onevision(tmp_path_factory.mktemp("llava_real_geometry"), tile=384))
    adapter = load_mllm(folder, "cpu", torch.float32, tiny_config(folder))
    frames = clip(16, (480, 854))
    assert adapter.video_pass(frames, "which object? ", generate=False).maps.shape == (16, 14, 14)
    assert adapter.frame_pass(frames[:1], "which object? ", generate=False).maps.shape == (1, 46, 81)


# ---------------------------------------------------------------- loading
def test_loads_offline_through_load_mllm(tiny_llava_adapter, tiny_llava_dir) -> None:
    from decaf_ros.core.models import load_mllm, supported_model_types

    assert "llava_onevision" in supported_model_types()
    adapter = tiny_llava_adapter
    assert isinstance(adapter, LlavaOnevisionAdapter) and adapter.family == "llava_onevision"
    assert isinstance(adapter.processor, TileGridProcessor) and isinstance(adapter.model.model, TileGridModel)
    assert adapter.num_layers == TEXT_LAYERS and adapter.start_layer == TEXT_LAYERS // 2
    assert adapter.temporal_merge == 1
    assert adapter.model.config.text_config._attn_implementation == "decaf_rollout"
    override = load_mllm(tiny_llava_dir, "cpu", torch.float32, tiny_config(tiny_llava_dir, rollout_start_layer=1))
    assert override.start_layer == 1
    with pytest.raises(ValueError, match="rollout_start_layer"):
        load_mllm(tiny_llava_dir, "cpu", torch.float32, tiny_config(tiny_llava_dir, rollout_start_layer=4))


def test_chat_prompt_layout(tiny_llava_adapter) -> None:
    text = tiny_llava_adapter._chat("video", "which object? ")
    assert text.startswith("<|im_start|>system \nYou are a helpful assistant.<|im_end|>\n<|im_start|>user <video>\n")
    assert "which object? <|im_end|>" in text and text.endswith("<|im_start|>assistant\n")
    image = tiny_llava_adapter._chat("image", "x")
    assert "You are a helpful assistant." in image and "<|im_start|>user <image>\nx" in image
    assert "You are a helpful assistant." in tiny_llava_adapter._chat(None, "x")


# ---------------------------------------------------------------- planted feature positions
class CodeProjector(nn.Module):
    """Stands in for the projector: channel 0 of each feature = its source (tile, patch row, col).

    Input (N, P, D_vision) with N tiles (or frames) in processing order and P = side² patches in
    raster order; output (N, P, D_text) with code n·10⁴ + row·100 + col, zeros elsewhere.
    """

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        n, patches, _ = features.shape
        side = math.isqrt(patches)
        tile = torch.arange(n).view(n, 1)
        patch = torch.arange(patches).view(1, patches)
        out = features.new_zeros(n, patches, self.hidden)
        out[..., 0] = (tile * 10_000 + (patch // side) * 100 + patch % side).to(features.dtype)
        return out


@contextlib.contextmanager
def swapped(module: nn.Module, name: str, value: Any) -> Iterator[None]:
    """Temporarily replace a submodule/parameter (monkeypatch would delete it on undo: not in __dict__)."""
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


@pytest.fixture
def planted(tiny_llava_adapter, monkeypatch) -> Iterator[list[torch.Tensor]]:
    """Rollout row := channel 0 of the LLM's input embedding at each visual token.

    The embedding is what the model scattered into that token, so a correct reshape puts each
    source feature's code at its place in the (t, h, w) grid. Yields the captured embeddings.
    """
    adapter = tiny_llava_adapter
    inner = adapter.model.model
    hidden = adapter.model.config.text_config.hidden_size
    seen: list[torch.Tensor] = []
    original = adapter._run

    def run(inputs, token_id, generate):
        hook = inner.language_model.register_forward_pre_hook(
            lambda module, args, kwargs: seen.append(kwargs["inputs_embeds"][..., 0].clone()), with_kwargs=True)
        try:
            _, answers = original(inputs, token_id, generate)
        finally:
            hook.remove()
        visual = inputs["input_ids"] == token_id
        return torch.where(visual, seen[-1], torch.full_like(seen[-1], -1.0)), answers

    monkeypatch.setattr(adapter, "_run", run)
    with swapped(inner, "multi_modal_projector", CodeProjector(hidden)), \
            swapped(inner, "image_newline", nn.Parameter(torch.full((hidden,), NEWLINE))):
        yield seen


def test_video_maps_follow_feature_geometry(tiny_llava_adapter, planted) -> None:
    out = tiny_llava_adapter.video_pass(clip(5), "which object? ", generate=False)
    assert out.maps.shape == (5, POOLED, POOLED)  # no temporal merge: one map per frame
    assert tiny_llava_adapter.last_video_grid_hw == (POOLED, POOLED)
    # Bilinear pooling (align_corners False) of a code linear in (row, col) samples it exactly at
    # the source coordinates (i + 0.5)·7/4 − 0.5.
    src = (torch.arange(POOLED) + 0.5) * SIDE / POOLED - 0.5
    expected = (torch.arange(5).view(5, 1, 1) * 10_000 + src.view(1, -1, 1) * 100 + src.view(1, 1, -1))
    torch.testing.assert_close(out.maps, expected.float(), rtol=0, atol=1e-2)
    assert not bool((planted[-1] == NEWLINE).any())  # no newline token after the video


def test_frame_maps_follow_tiled_unpadded_geometry(tiny_llava_adapter, planted) -> None:
    out = tiny_llava_adapter.frame_pass(clip(2), "which object? ", generate=False)
    lay = expected_layout(H, W, tiny.PINPOINTS, tiny.TILE, SIDE)
    assert (lay["rows"], lay["cols"], lay["top"], lay["downsized"]) == (10, 14, 2, 0)
    assert out.maps.shape == (2, lay["rows"], lay["cols"])
    # Map cell (y, x) sits at canvas (y + top, x + left); tile 0 is the base image, tiles 1.. are
    # row-major; the tile count per image is 1 + 2·2, so image b's tiles are numbered from 5·b.
    yy, xx = torch.meshgrid(torch.arange(lay["rows"]) + lay["top"], torch.arange(lay["cols"]) + lay["left"],
                            indexing="ij")
    tile = 1 + (yy // SIDE) * lay["tiles_w"] + xx // SIDE
    per_image = 1 + 4
    for b in range(2):
        code = (b * per_image + tile) * 10_000 + (yy % SIDE) * 100 + xx % SIDE
        torch.testing.assert_close(out.maps[b], code.float(), rtol=0, atol=0)
    assert not bool(((out.maps // 10_000) % per_image == 0).any())  # no base-image feature
    assert not bool((planted[-1] == NEWLINE).any())  # no newline column


def test_downsized_frame_grid(tiny_llava_adapter) -> None:
    # 300×500 picks 4×6 tiles: 26×42 un-padded features exceed 1.1² × 9 tiles -> downsized.
    lay = expected_layout(300, 500, tiny.PINPOINTS, tiny.TILE, SIDE)
    assert lay["downsized"] == 1
    out = tiny_llava_adapter.frame_pass(clip(1, (300, 500)), "which object? ", generate=False)
    assert out.maps.shape == (1, lay["rows"], lay["cols"]) == (1, 16, 26)
    assert bool(torch.isfinite(out.maps).all()) and bool((out.maps > 0).all())


def test_token_count_mismatch_raises(tiny_llava_adapter, tiny_llava_dir, monkeypatch) -> None:
    from transformers import LlavaOnevisionProcessor
    from transformers.models.llava_onevision.modeling_llava_onevision import LlavaOnevisionModel

    # Stock processor: base image + newlines counted -> more placeholders than the grid.
    monkeypatch.setattr(tiny_llava_adapter, "processor", LlavaOnevisionProcessor.from_pretrained(tiny_llava_dir))
    monkeypatch.setattr(tiny_llava_adapter.processor, "video_side", lambda: POOLED, raising=False)
    monkeypatch.setattr(tiny_llava_adapter.processor, "frame_grid", lambda h, w: (10, 14), raising=False)
    with pytest.raises(RuntimeError, match="visual tokens"):
        tiny_llava_adapter.frame_pass(clip(1), "x", generate=False)
    with pytest.raises(RuntimeError, match="visual tokens"):
        tiny_llava_adapter.video_pass(clip(2), "x", generate=False)
    monkeypatch.undo()
    # Stock model with the tile-grid processor: transformers refuses to scatter the features.
    inner = tiny_llava_adapter.model.model
    inner.__class__ = LlavaOnevisionModel
    try:
        with pytest.raises(ValueError, match="do not match"):
            tiny_llava_adapter.frame_pass(clip(1), "x", generate=False)
    finally:
        inner.__class__ = TileGridModel


# ---------------------------------------------------------------- real passes
def test_generation_answers_and_determinism(tiny_llava_adapter) -> None:
    frames = clip(4, seed=3)
    text = prompts.object_class_prompt(prompts.normalize_expression("The dog"))
    first = assert_generation_is_deterministic(tiny_llava_adapter, frames, text)
    assert isinstance(first, PassMaps)
    frame = tiny_llava_adapter.frame_pass(frames[:3], text, generate=True)
    assert len(frame.answers) == 3 and frame.maps.shape == (3, 10, 14)
    for maps in (first.maps, frame.maps):
        assert maps.dtype == torch.float32 and bool((maps > 0).all()) and bool(torch.isfinite(maps).all())
    assert isinstance(tiny_llava_adapter.generate_text(prompts.class_choice_prompt("the dog.", ["dog"])), str)


def test_frame_batches_do_not_change_maps(tiny_llava_adapter, monkeypatch) -> None:
    assert_batching_keeps_maps(tiny_llava_adapter, monkeypatch, clip(3, seed=5))


def test_pipeline_end_to_end(tiny_llava_adapter, tiny_llava_dir, tiny_sam2_dir) -> None:
    from skimage import data

    from decaf_ros.core.pipeline import DecafPipeline
    from decaf_ros.core.models.sam2.segmenter import Sam2Segmenter

    photo = data.astronaut()
    frames = [np.ascontiguousarray(photo[100 + 4 * i:156 + 4 * i, 150 + 6 * i:234 + 6 * i]) for i in range(6)]
    config = tiny_config(tiny_llava_dir, sam2=str(tiny_sam2_dir), num_key_frames=4)
    sam2 = Sam2Segmenter.from_pretrained(str(tiny_sam2_dir), device="cpu", dtype=torch.float32)
    result = DecafPipeline(tiny_llava_adapter, sam2, config).ground(frames, "the person's face")
    lay = expected_layout(56, 84, tiny.PINPOINTS, tiny.TILE, SIDE)
    assert tuple(result.fused.shape) == (4, lay["rows"], lay["cols"]) == (4, 5, 7)  # frame-map resolution
    assert result.masks.shape == (6, 56, 84) and result.masks.dtype == bool
    assert result.key_frame_indices == [0, 1, 3, 5] and result.num_targets >= 1
    assert len(result.candidates) == 1 + 4
    assert float(result.fused.max()) == pytest.approx(1.0)
