"""InternVL3 adapter on the tiny model: loading, prompt layout, tiling, planted maps, V, pipeline."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from decaf_ros.core.models import supported_model_types
from decaf_ros.core.models.internvl import adapter as internvl
from decaf_ros.core.models.internvl.adapter import SYSTEM_PROMPT, InternVLAdapter
from decaf_ros.core.models.internvl.tiny import TILE_PX, _build_processor
from adapter_helpers import decode, grid_codes, plant_row, random_clip, record_capture
from common_fixtures import load_tiny, tiny_config

H, W = 60, 90  # aspect 1.5 -> 3 x 2 tiles of 56 px (rows 2, cols 3): row-major order matters
SIDE = 4  # 56-px tile / 7-px patches = 8 patches, pixel shuffle 0.5 -> 4 tokens per side
ROWS, COLS = 2, 3


def clip(n: int, seed: int = 0) -> list[np.ndarray]:
    return random_clip(n, (H, W), seed)


# ---------------------------------------------------------------- loading, geometry
def test_loads_offline_with_half_depth_start(tiny_internvl_adapter, tiny_internvl_dir) -> None:
    adapter = tiny_internvl_adapter
    assert isinstance(adapter, InternVLAdapter) and adapter.family == "internvl"
    assert "internvl" in supported_model_types()
    assert adapter.num_layers == 4 and adapter.start_layer == 2 and adapter.temporal_merge == 1
    assert (adapter.tile_px, adapter.tile_side) == (TILE_PX, SIDE)
    assert load_tiny(tiny_internvl_dir, rollout_start_layer=3).start_layer == 3


def test_tile_grid_matches_the_reference_arrangement() -> None:
    assert internvl.tile_grid(480, 854, 448) == (1, 2)  # DAVIS: 2x1 tiles -> a 16x32 map (§11)
    assert internvl.tile_grid(H, W, TILE_PX) == (ROWS, COLS)
    assert internvl.tile_grid(448, 448, 448) == (1, 1)
    rows, cols = internvl.tile_grid(100, 2000, 448)
    assert rows * cols <= internvl.MAX_TILES


def test_tiles_to_map_is_row_major() -> None:
    values = torch.arange(2 * 3 * 4, dtype=torch.float32).view(1, -1)  # 6 tiles of 2x2 tokens
    grid = internvl.tiles_to_map(values, rows=2, cols=3, side=2)[0]
    assert grid[0].tolist() == [0, 1, 4, 5, 8, 9] and grid[1].tolist() == [2, 3, 6, 7, 10, 11]
    assert grid[2].tolist() == [12, 13, 16, 17, 20, 21]


def test_thumbnail_is_dropped_only_by_the_override() -> None:
    processor = _build_processor()
    kwargs = dict(return_tensors="pt", crop_to_patches=True, max_patches=12)
    with_thumbnail = processor.image_processor(images=clip(1), **kwargs)["pixel_values"]
    assert with_thumbnail.shape[0] == ROWS * COLS + 1  # stock behaviour: tiles + thumbnail
    with internvl.no_thumbnail(processor.image_processor):
        tiles = processor.image_processor(images=clip(1), **kwargs)["pixel_values"]
    assert tiles.shape[0] == ROWS * COLS
    torch.testing.assert_close(tiles, with_thumbnail[:-1])
    # Only inside the block: the processor is unchanged (and serialisable) afterwards.
    assert processor.image_processor(images=clip(1), **kwargs)["pixel_values"].shape[0] == ROWS * COLS + 1
    processor.image_processor.to_json_string()


# ---------------------------------------------------------------- prompt layout
def test_video_prompt_writes_one_item_per_frame(tiny_internvl_adapter, monkeypatch) -> None:
    adapter = tiny_internvl_adapter
    seen = {}
    real_run = adapter._run

    def keep(inputs, token_id, generate):
        seen["ids"] = inputs["input_ids"]
        return real_run(inputs, token_id, generate)

    monkeypatch.setattr(adapter, "_run", keep)
    adapter.video_pass(clip(2), "which object? ", generate=False)
    item = "<img>" + "<IMG_CONTEXT>" * SIDE**2 + "</img>"
    assert decode(adapter, seen["ids"][0]) == (
        f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n"
        f"Frame1: {item}\nFrame2: {item}\nwhich object? <|im_end|>\n<|im_start|>assistant\n")


def test_image_prompt_has_the_system_message(tiny_internvl_adapter) -> None:
    text = tiny_internvl_adapter._chat("image", "which object? ")
    assert text == (f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n<IMG_CONTEXT>\n"
                    "which object? <|im_end|>\n<|im_start|>assistant\n")


# ---------------------------------------------------------------- planted maps (§5.1, §11)
def _in_tile_order(adapter) -> torch.Tensor:
    """(side², 2) token (y, x) within a tile, from the model's own pixel shuffle of patch coordinates."""
    patches = adapter.tile_px // adapter.model.config.vision_config.patch_size[0]
    yy, xx = torch.meshgrid(torch.arange(patches), torch.arange(patches), indexing="ij")
    coords = torch.stack([yy, xx], dim=-1).float().unsqueeze(0)  # (1, rows, cols, 2), as get_image_features
    shuffled = adapter.model.model.pixel_shuffle(coords, scale_factor=adapter.model.config.downsample_ratio)
    return (shuffled.reshape(-1, shuffled.shape[-1])[:, :2] // 2).long()  # any merged patch // 2


def _tile_positions(adapter, frame: np.ndarray, tiles: torch.Tensor, rows: int, cols: int) -> list[tuple[int, int]]:
    """(row, col) of each processed tile, found by matching it against the resized frame."""
    tile = adapter.tile_px
    canvas = adapter.processor.image_processor(
        images=[frame], crop_to_patches=False, size={"height": rows * tile, "width": cols * tile},
        return_tensors="pt")["pixel_values"][0]  # (3, rows·tile, cols·tile)
    crops = [(r, c) for r in range(rows) for c in range(cols)]
    out = []
    for t in tiles:
        dist = [float((canvas[:, r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] - t).abs().mean()) for r, c in crops]
        assert min(dist) < 1e-4
        out.append(crops[int(np.argmin(dist))])
    return out


def _codes(frame_idx: torch.Tensor, yx: torch.Tensor) -> torch.Tensor:
    return (frame_idx * 10_000 + yx[:, 0] * 100 + yx[:, 1]).float()


def _plant(adapter, monkeypatch, frames: list[np.ndarray] | None) -> None:
    """Replace the rollout row by each visual token's true (frame, y, x), encoded; text gets -1.

    Video: the frame is the number of <img> markers before the token. Frames (frames given):
    the tile's place comes from matching pixels, the place within the tile from pixel_shuffle.
    """
    inner = _in_tile_order(adapter)
    side2 = inner.shape[0]
    done = [0]  # frames already seen (the frame path runs in batches)

    def codes(inputs, token_id):
        ids = inputs["input_ids"]
        visual = ids == token_id
        code = torch.full(ids.shape, -1.0)
        for b in range(ids.shape[0]):
            k = torch.arange(int(visual[b].sum()))
            if frames is None:  # video: one tile per frame
                frame_idx = (torch.cumsum(ids[b] == adapter.processor.start_image_token_id, 0) - 1)[visual[b]]
                code[b, visual[b]] = _codes(frame_idx, inner[k % side2])
                continue
            rows, cols = internvl.tile_grid(H, W, adapter.tile_px)
            tiles = inputs["pixel_values"][b * rows * cols:(b + 1) * rows * cols]
            where = torch.tensor(_tile_positions(adapter, frames[done[0] + b], tiles, rows, cols))
            yx = where[k // side2] * adapter.tile_side + inner[k % side2]
            code[b, visual[b]] = _codes(torch.zeros_like(k), yx)
        done[0] += ids.shape[0]
        return code

    plant_row(adapter, monkeypatch, codes)


def test_video_maps_follow_token_geometry(tiny_internvl_adapter, monkeypatch) -> None:
    _plant(tiny_internvl_adapter, monkeypatch, frames=None)
    out = tiny_internvl_adapter.video_pass(clip(3), "which object? ", generate=False)
    torch.testing.assert_close(out.maps, grid_codes(3, SIDE, SIDE))  # grid (T, 16, 16) on the real model
    assert tiny_internvl_adapter.last_video_grid_hw == (SIDE, SIDE)


def test_frame_maps_follow_token_geometry(tiny_internvl_adapter, monkeypatch) -> None:
    frames = clip(3, seed=1)
    _plant(tiny_internvl_adapter, monkeypatch, frames=frames)
    out = tiny_internvl_adapter.frame_pass(frames, "which object? ", generate=False)
    torch.testing.assert_close(out.maps, grid_codes(1, ROWS * SIDE, COLS * SIDE).expand(3, -1, -1))


def test_v_is_the_exact_visual_positions(tiny_internvl_adapter, monkeypatch) -> None:
    """The "FrameK:" text and the <img>/</img> markers between frames are not in V."""
    seen = record_capture(monkeypatch)
    tiny_internvl_adapter.video_pass(clip(3), "which object? ", generate=False)
    mask, span_rule = seen[-1]
    assert span_rule is False and int(mask.sum()) == 3 * SIDE**2
    first, last = (int(i) for i in mask[0].nonzero()[[0, -1], 0])
    assert not bool(mask[0, first:last + 1].all())


# ---------------------------------------------------------------- real passes
def test_real_passes_shapes_batches_and_answers(tiny_internvl_adapter, monkeypatch) -> None:
    frames = clip(3, seed=2)
    video = tiny_internvl_adapter.video_pass(frames, "which object? ", generate=True)
    assert video.maps.shape == (3, SIDE, SIDE) and len(video.answers) == 1  # odd T: no padding needed
    batched = tiny_internvl_adapter.frame_pass(frames, "which object? ", generate=True)
    assert batched.maps.shape == (3, ROWS * SIDE, COLS * SIDE) and len(batched.answers) == 3
    for maps in (video.maps, batched.maps):
        assert maps.dtype == torch.float32 and bool((maps > 0).all()) and bool(torch.isfinite(maps).all())
    monkeypatch.setattr(tiny_internvl_adapter, "config",
                        tiny_internvl_adapter.config.with_overrides(frame_batch_size=1))
    single = tiny_internvl_adapter.frame_pass(frames, "which object? ", generate=False)
    torch.testing.assert_close(batched.maps, single.maps, rtol=1e-5, atol=1e-7)
    assert isinstance(tiny_internvl_adapter.generate_text("pick one: dog, cat"), str)


def test_pipeline_end_to_end(tiny_internvl_dir, tiny_sam2_dir) -> None:
    from decaf_ros.core.pipeline import DecafPipeline

    config = tiny_config(tiny_internvl_dir, sam2=str(tiny_sam2_dir), num_key_frames=4)
    pipeline = DecafPipeline.from_config(config)
    result = pipeline.ground(clip(5, seed=3), "the dog")
    assert result.masks.shape == (5, H, W) and result.masks.dtype == bool
    # Video map (4, 4, 4) aligned 1:1 in time, upsampled onto the (4, 8, 12) frame map.
    assert tuple(result.fused.shape) == (4, ROWS * SIDE, COLS * SIDE)
    assert float(result.fused.max()) == pytest.approx(1.0)
    assert result.num_targets >= 1 and len(result.candidates) == 1 + 4
