"""Qwen3-VL adapter on the tiny model: loading, timestamp layout, planted maps, V, pipeline."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from decaf_ros.core.models import supported_model_types
from decaf_ros.core.models.qwen2_5_vl import adapter as qwen2_5_vl
from decaf_ros.core.models.qwen3_vl.adapter import Qwen3VLAdapter
from adapter_helpers import decode, grid_codes, plant_row, random_clip, record_capture
from common_fixtures import load_tiny, tiny_config

H, W = 60, 90  # not multiples of 32: the adapter must resize (video budget 6 -> 64x96, 2x3 tokens)
GH, GW = 2, 3


def clip(n: int, seed: int = 0) -> list[np.ndarray]:
    return random_clip(n, (H, W), seed)


# ---------------------------------------------------------------- loading
def test_loads_offline_with_half_depth_start(tiny_qwen3_vl_adapter, tiny_qwen3_vl_dir) -> None:
    adapter = tiny_qwen3_vl_adapter
    assert isinstance(adapter, Qwen3VLAdapter) and adapter.family == "qwen3_vl"
    assert "qwen3_vl" in supported_model_types()
    assert adapter.num_layers == 4 and adapter.start_layer == 2 and adapter.temporal_merge == 2
    assert adapter.token_px == 32  # 16-px patches, 2x2 merge
    assert load_tiny(tiny_qwen3_vl_dir, rollout_start_layer=1).start_layer == 1


# ---------------------------------------------------------------- prompt and token layout
def test_prompt_has_no_default_system_message(tiny_qwen3_vl_adapter) -> None:
    text = tiny_qwen3_vl_adapter._chat("image", "which object? ")
    assert text == ("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>which object? <|im_end|>\n"
                    "<|im_start|>assistant\n")


def test_video_prompt_interleaves_timestamps(tiny_qwen3_vl_adapter) -> None:
    adapter = tiny_qwen3_vl_adapter
    frames = qwen2_5_vl.resize_frames(clip(4), (64, 96))
    inputs = adapter._video_inputs(frames, "which object? ")
    # Processor grid in 16-px patches; LLM grid (T/2, H/32, W/32).
    assert inputs["video_grid_thw"].tolist() == [[2, 4, 6]]
    group = "<|vision_start|>" + "<|video_pad|>" * (GH * GW) + "<|vision_end|>"
    expected = f"<|im_start|>user\n<0.2 seconds>{group}<1.2 seconds>{group}which object? <|im_end|>\n"
    assert decode(adapter, inputs["input_ids"][0]) == expected + "<|im_start|>assistant\n"


# ---------------------------------------------------------------- planted maps (§5.1, §11)
def _plant_positions(adapter, monkeypatch) -> None:
    """Replace the rollout row by each visual token's own (group, row, col), encoded.

    Qwen3-VL's rope index gives every token of one temporal group the temporal position
    ``start`` and spatial positions ``start + row`` / ``start + col``; the group is the number
    of vision-start markers before the token. A correct reshape puts group*10^4 + row*100 + col
    at maps[group, row, col]; text tokens get -1, so any leak shows.
    """

    def codes(inputs, token_id):
        ids = inputs["input_ids"]
        positions, _ = adapter.model.model.get_rope_index(
            ids, inputs["mm_token_type_ids"], image_grid_thw=inputs.get("image_grid_thw"),
            video_grid_thw=inputs.get("video_grid_thw"))
        group = torch.cumsum(ids == adapter.model.config.vision_start_token_id, dim=1) - 1
        return group * 10_000 + (positions[1] - positions[0]) * 100 + (positions[2] - positions[0])

    plant_row(adapter, monkeypatch, codes)


def test_video_maps_follow_token_geometry(tiny_qwen3_vl_adapter, monkeypatch) -> None:
    _plant_positions(tiny_qwen3_vl_adapter, monkeypatch)
    out = tiny_qwen3_vl_adapter.video_pass(clip(4), "which object? ", generate=False)
    assert tiny_qwen3_vl_adapter.last_video_grid_hw == (GH, GW)
    torch.testing.assert_close(out.maps, grid_codes(2, GH, GW))


def test_frame_maps_follow_token_geometry(tiny_qwen3_vl_adapter, monkeypatch) -> None:
    _plant_positions(tiny_qwen3_vl_adapter, monkeypatch)
    out = tiny_qwen3_vl_adapter.frame_pass(clip(3), "which object? ", generate=False, video_grid_hw=(GH, GW))
    # Exactly 2x the video grid per side; each frame is its own single-image prompt (group 0).
    torch.testing.assert_close(out.maps, grid_codes(1, 2 * GH, 2 * GW).expand(3, 2 * GH, 2 * GW))


def test_v_is_the_exact_visual_positions(tiny_qwen3_vl_adapter, monkeypatch) -> None:
    """Timestamp and marker tokens between groups are not in V (span_rule=False)."""
    seen = record_capture(monkeypatch)
    tiny_qwen3_vl_adapter.video_pass(clip(4), "which object? ", generate=False)
    mask, span_rule = seen[-1]
    assert span_rule is False and int(mask.sum()) == 2 * GH * GW
    first, last = (int(i) for i in mask[0].nonzero()[[0, -1], 0])
    assert not bool(mask[0, first:last + 1].all())  # text between the groups stays out


# ---------------------------------------------------------------- real passes
def test_real_passes_shapes_and_odd_frame_count(tiny_qwen3_vl_adapter) -> None:
    frames = clip(5, seed=2)
    odd = tiny_qwen3_vl_adapter.video_pass(frames, "which object? ", generate=False)
    even = tiny_qwen3_vl_adapter.video_pass(frames + [frames[-1]], "which object? ", generate=False)
    assert odd.maps.shape == (3, GH, GW)  # last frame duplicated: ceil(5 / 2) slots
    torch.testing.assert_close(odd.maps, even.maps, rtol=0, atol=0)
    frame = tiny_qwen3_vl_adapter.frame_pass(frames[:2], "which object? ", generate=True, video_grid_hw=(GH, GW))
    assert frame.maps.shape == (2, 2 * GH, 2 * GW) and len(frame.answers) == 2
    for maps in (odd.maps, frame.maps):
        assert maps.dtype == torch.float32 and bool((maps > 0).all()) and bool(torch.isfinite(maps).all())
    assert isinstance(tiny_qwen3_vl_adapter.generate_text("pick one: dog, cat"), str)


def test_pipeline_end_to_end(tiny_qwen3_vl_dir, tiny_sam2_dir) -> None:
    from decaf_ros.core.pipeline import DecafPipeline

    config = tiny_config(tiny_qwen3_vl_dir, sam2=str(tiny_sam2_dir), num_key_frames=4)
    pipeline = DecafPipeline.from_config(config)
    # A clip and query for which the random weights do not give obj <= bg everywhere (an
    # all-zero fused map would leave SAM2 without clicks).
    rng = np.random.default_rng(5)
    frames = [rng.integers(0, 255, (H, W, 3), dtype=np.uint8) for _ in range(5)]
    result = pipeline.ground(frames, "the dog")
    assert result.masks.shape == (5, H, W) and result.masks.dtype == bool
    assert tuple(result.fused.shape) == (4, 2 * GH, 2 * GW)  # video slots repeated x2 onto 4 key frames
    assert float(result.fused.max()) == pytest.approx(1.0)
    assert result.num_targets >= 1 and len(result.candidates) == 1 + 4
