"""Qwen3-VL quirks: 32-px tokens, timestamp text between temporal groups, planted maps, exact V.

The adapter contract every family meets is in test_adapter_contract.py.
"""
from __future__ import annotations

import numpy as np
import torch

from decaf_ros.core.models.qwen2_5_vl import adapter as qwen2_5_vl
from decaf_ros.core.models.qwen3_vl.adapter import Qwen3VLAdapter
from adapter_helpers import decode, grid_codes, plant_row, record_capture
from common_fixtures import random_clip

H, W = 60, 90  # not multiples of 32: the adapter must resize (video budget 6 -> 64x96, 2x3 tokens)
GH, GW = 2, 3


def clip(n: int, seed: int = 0) -> list[np.ndarray]:
    return random_clip(n, (H, W), seed)


# ---------------------------------------------------------------- geometry
def test_one_token_covers_32_px(tiny_qwen3_vl_adapter) -> None:
    assert isinstance(tiny_qwen3_vl_adapter, Qwen3VLAdapter) and tiny_qwen3_vl_adapter.family == "qwen3_vl"
    assert tiny_qwen3_vl_adapter.token_px == 32  # 16-px patches, 2x2 merge


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
    assert out.grid_hw == (GH, GW)
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
def test_odd_frame_count_duplicates_the_last_frame(tiny_qwen3_vl_adapter) -> None:
    frames = clip(5, seed=2)
    odd = tiny_qwen3_vl_adapter.video_pass(frames, "which object? ", generate=False)
    even = tiny_qwen3_vl_adapter.video_pass(frames + [frames[-1]], "which object? ", generate=False)
    assert odd.maps.shape == (3, GH, GW)  # last frame duplicated: ceil(5 / 2) slots
    torch.testing.assert_close(odd.maps, even.maps, rtol=0, atol=0)


def test_default_loads_the_pil_image_processor(tiny_qwen3_vl_adapter) -> None:
    """As for Qwen2.5-VL (test_qwen2_5_vl.py): the reference's use_fast=False processor (§13 item 11)."""
    assert type(tiny_qwen3_vl_adapter.processor.image_processor).__name__.endswith("Pil")
