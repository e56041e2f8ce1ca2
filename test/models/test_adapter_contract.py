"""The MLLM adapter contract, on the tiny model of every registered family.

Parametrised by the ``tiny_mllm`` fixture over the registry (``core/models/registry.py``): a new
family is held to all of it without a line here. What a family does differently (its token
layout, its planted geometry, its prompt) is in its own ``test_<family>.py``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from decaf_ros.core import prompts
from decaf_ros.core.fusion import align_video_to_frames
from decaf_ros.core.models import adapter_for, load_mllm
from decaf_ros.core.pipeline import DecafPipeline
from decaf_ros.core.rollout import visual_span_mask
from decaf_ros.devtools.tiny_recipe import TEXT_LAYERS
from adapter_helpers import assert_batching_keeps_maps, assert_generation_is_deterministic, record_capture
from common_fixtures import random_clip, tiny_config

LANDSCAPE, PORTRAIT = (48, 96), (96, 48)
E2E_SIZE = (64, 96)
QUESTION = prompts.object_class_prompt(prompts.normalize_expression("the dog"))


def _video_then_frames(adapter: Any, frames: list[np.ndarray], generate: bool = False) -> tuple[Any, Any]:
    video = adapter.video_pass(frames, QUESTION, generate=generate)
    return video, adapter.frame_pass(frames, QUESTION, generate=generate, video_grid_hw=video.grid_hw)


def _record_runs(adapter: Any, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record the inputs and answers of every prompt the adapter runs under the capture."""
    runs: list[dict[str, Any]] = []
    original = adapter._run

    def recording(inputs: Any, token_id: int, generate: bool) -> tuple[torch.Tensor, list[str]]:
        row, answers = original(inputs, token_id, generate)
        runs.append({"inputs": inputs, "visual": inputs["input_ids"] == token_id, "answers": answers})
        return row, answers

    monkeypatch.setattr(adapter, "_run", recording)
    return runs


# ---------------------------------------------------------------- loading
def test_loads_through_from_pretrained_into_its_adapter(tiny_mllm) -> None:
    folder, adapter = tiny_mllm
    model_type = json.loads((Path(folder) / "config.json").read_text())["model_type"]
    assert type(adapter) is adapter_for(model_type)
    assert (adapter.num_layers, adapter.start_layer) == (TEXT_LAYERS, TEXT_LAYERS // 2)  # s = N // 2 (§4.1)
    # the capture sits in the text layers only; the vision tower keeps sdpa
    assert adapter.model.config.get_text_config()._attn_implementation == "decaf_rollout"
    assert adapter.model.config.vision_config._attn_implementation == "sdpa"
    assert not adapter.model.training


def test_configured_start_layer_is_honoured_and_checked(tiny_mllm) -> None:
    folder, _ = tiny_mllm
    assert load_mllm(folder, "cpu", torch.float32, tiny_config(folder, rollout_start_layer=1)).start_layer == 1
    with pytest.raises(ValueError, match="rollout_start_layer"):
        load_mllm(folder, "cpu", torch.float32, tiny_config(folder, rollout_start_layer=TEXT_LAYERS))


# ---------------------------------------------------------------- V (§4.3)
def test_v_is_exactly_the_visual_tokens_of_each_pass(tiny_mllm, monkeypatch) -> None:
    """The key set the capture uses is every visual token and nothing else, on both paths."""
    _, adapter = tiny_mllm
    seen = record_capture(monkeypatch)
    video, frames = _video_then_frames(adapter, random_clip(4, LANDSCAPE))
    assert len(seen) >= 2
    for token_is_visual, span_rule in seen:
        v = visual_span_mask(token_is_visual) if span_rule else token_is_visual
        assert torch.equal(v, token_is_visual)  # a span never swallows text between visual items
    assert int(seen[0][0].sum()) == video.maps.numel()
    assert sum(int(mask.sum()) for mask, _ in seen[1:]) == frames.maps.numel()


# ---------------------------------------------------------------- grids
@pytest.mark.parametrize("size", [LANDSCAPE, PORTRAIT], ids=["landscape", "portrait"])
def test_grid_geometry_follows_the_frame_size(tiny_mllm, monkeypatch, size) -> None:
    """Video maps align with the key frames (§5.5); frame maps keep one map per frame, the frame's
    orientation and one cell per visual token."""
    _, adapter = tiny_mllm
    runs = _record_runs(adapter, monkeypatch)
    video, frames = _video_then_frames(adapter, random_clip(4, size))
    t, gh, gw = video.maps.shape
    assert video.grid_hw == (gh, gw) and t in (4, math.ceil(4 / 2))
    assert align_video_to_frames(video.maps, 4).shape == (4, gh, gw)
    n, fh, fw = frames.maps.shape
    assert n == 4 and frames.grid_hw == (fh, fw)
    assert (fw > fh) if size == LANDSCAPE else (fh > fw)
    per_item = [int(count) for run in runs[1:] for count in run["visual"].sum(dim=1)]
    assert per_item == [fh * fw] * 4
    for maps in (video.maps, frames.maps):
        assert maps.dtype == torch.float32 and maps.device.type == "cpu"
        assert bool(torch.isfinite(maps).all()) and bool((maps > 0).all())  # rollout mass is positive


def test_grid_of_a_portrait_frame_is_the_landscape_grid_transposed(tiny_mllm) -> None:
    _, adapter = tiny_mllm
    landscape = _video_then_frames(adapter, random_clip(2, LANDSCAPE))[1].grid_hw
    portrait = _video_then_frames(adapter, random_clip(2, PORTRAIT))[1].grid_hw
    assert portrait == landscape[::-1]


# ---------------------------------------------------------------- batching, determinism, answers
def test_frame_batches_of_one_and_four_give_identical_maps(tiny_mllm, monkeypatch) -> None:
    _, adapter = tiny_mllm
    frames = random_clip(4, LANDSCAPE, seed=5)
    grid = adapter.video_pass(frames, QUESTION, generate=False).grid_hw
    monkeypatch.setattr(adapter, "config", adapter.config.with_overrides(frame_batch_size=4))
    assert_batching_keeps_maps(adapter, monkeypatch, frames, video_grid_hw=grid)


def test_passes_are_deterministic_and_maps_do_not_depend_on_generation(tiny_mllm) -> None:
    _, adapter = tiny_mllm
    assert_generation_is_deterministic(adapter, random_clip(4, LANDSCAPE, seed=3), QUESTION)


def test_answers_one_per_prompt_and_unchanged_by_the_capture(tiny_mllm, monkeypatch) -> None:
    """One answer per video and per frame; identical frames answer alike; generating again
    without the capture, from the same inputs, gives the same answers (the capture is transparent)."""
    _, adapter = tiny_mllm
    a, b = random_clip(2, LANDSCAPE, seed=7)
    runs = _record_runs(adapter, monkeypatch)
    video, frames = _video_then_frames(adapter, [a, b, a], generate=True)
    assert len(video.answers) == 1 and len(frames.answers) == 3
    assert frames.answers[0] == frames.answers[2]
    torch.testing.assert_close(frames.maps[0], frames.maps[2], rtol=1e-5, atol=1e-7)
    with torch.inference_mode():
        for run in runs:
            assert adapter._generate(adapter._to_device(run["inputs"])) == run["answers"]


def test_text_turn_is_greedy_and_repeatable(tiny_mllm) -> None:
    """P2 (no image): the same answer every time, and the one plain greedy decoding gives."""
    _, adapter = tiny_mllm
    text = prompts.class_choice_prompt("the dog.", ["dog", "cat"])
    answer = adapter.generate_text(text)
    assert adapter.generate_text(text) == answer
    inputs = adapter.processor(text=[adapter._chat(None, text)], return_tensors="pt")
    with torch.inference_mode():
        out = adapter.model.generate(**inputs, do_sample=False, num_beams=1,
                                     max_new_tokens=adapter.config.max_new_tokens)
    new = out[0, inputs["input_ids"].shape[1]:]
    assert len(new) <= adapter.config.max_new_tokens
    assert answer == adapter.processor.tokenizer.decode(new, skip_special_tokens=True)


# ---------------------------------------------------------------- end to end
def test_ground_end_to_end(tiny_mllm, tiny_sam2_dir) -> None:
    """``ground`` on the tiny models: the fused volume on the frame-map grid, binary masks that
    are the union of the kept targets, the kept targets the ones §7.5 selects.

    The clip is one on which every tiny model's random weights give some object > background
    contrast (an all-zero fused volume would leave SAM2 without a click).
    """
    from decaf_ros.core.models.sam2.segmenter import Sam2Segmenter

    _, adapter = tiny_mllm
    frames = random_clip(5, E2E_SIZE, seed=5)
    config = adapter.config.with_overrides(num_key_frames=4)
    sam2 = Sam2Segmenter.from_pretrained(str(tiny_sam2_dir), device="cpu", dtype=torch.float32)
    result = DecafPipeline(adapter, sam2, config).ground(frames, "the dog")
    keys = [frames[i] for i in result.key_frame_indices]
    grid = adapter.frame_pass(keys, QUESTION, generate=False,
                              video_grid_hw=adapter.video_pass(keys, QUESTION, generate=False).grid_hw).grid_hw
    assert result.key_frame_indices == [0, 1, 2, 4] and len(result.candidates) == 1 + 4
    assert tuple(result.fused.shape) == (4, *grid)
    assert float(result.fused.min()) >= 0.0 and float(result.fused.max()) == pytest.approx(1.0)
    assert result.masks.shape == (5, *E2E_SIZE) and result.masks.dtype == bool
    assert result.num_targets >= 1
    assert np.array_equal(result.masks, result.target_masks.any(axis=0))
    scores = np.array(result.tracklet_scores)
    passing = np.flatnonzero(scores > config.track_score_threshold)
    assert result.kept == (passing.tolist() if passing.size else [int(np.argmax(scores))])
    np.testing.assert_array_equal(result.target_scores, scores[result.kept].astype(np.float32))
