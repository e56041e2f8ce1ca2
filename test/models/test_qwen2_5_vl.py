"""Qwen2.5-VL adapter on the tiny model: sizes, token layout, planted maps, prompts, determinism."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from decaf_ros.core import prompts
from decaf_ros.core.models import hf_adapter
from decaf_ros.core.models.qwen2_5_vl import adapter as qwen
from decaf_ros.core.models.base import PassMaps
from decaf_ros.core.models.qwen2_5_vl.tiny import build_tiny_qwen2_5_vl, build_tiny_qwen2_vl
from common_fixtures import load_tiny
from adapter_helpers import (assert_batching_keeps_maps, assert_generation_is_deterministic, grid_codes, plant_row,
                             random_clip)

H, W = 100, 150  # not multiples of 28: the adapter must resize


def clip(n: int, seed: int = 0) -> list[np.ndarray]:
    return random_clip(n, (H, W), seed)


# ---------------------------------------------------------------- sizes (§2.2, §2.3)
def test_video_frame_size_worked_example() -> None:
    # DAVIS 854x480 with 400 tokens -> 728x392 (26x14 tokens), flooring on rescale.
    assert qwen.video_frame_size(480, 854, 400) == (392, 728)
    assert qwen.video_frame_size(720, 1280, 400) == (392, 728)
    h, w = qwen.video_frame_size(1080, 1920, 400)
    assert h % 28 == 0 and w % 28 == 0 and (h // 28) * (w // 28) <= 400
    assert qwen.video_frame_size(10, 10, 400) == (56, 56)  # min 4 tokens


def test_pad_to_even() -> None:
    frames = clip(3)
    padded = qwen.pad_to_even(frames)
    assert len(padded) == 4 and padded[-1] is frames[-1]
    assert len(qwen.pad_to_even(clip(4))) == 4


# ---------------------------------------------------------------- prompt layout (§3.1)
def test_chat_prompt_layout(tiny_qwen_adapter) -> None:
    text = tiny_qwen_adapter._chat("video", "which object? ")
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    assert "<|vision_start|><|video_pad|><|vision_end|>which object? <|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")


# ---------------------------------------------------------------- planted maps (§5.1, §11)
def _plant_positions(adapter, monkeypatch) -> None:
    """Replace the rollout row by each visual token's own mRoPE (t, h, w) position, encoded.

    The model's rope index is the ground truth of where a token sits in the image, so a
    correct reshape puts value t*10^4 + h*100 + w at maps[t, h, w] (t in rope units).
    """

    def codes(inputs, token_id):
        ids = inputs["input_ids"]
        positions, _ = adapter.model.model.get_rope_index(
            ids, inputs["mm_token_type_ids"], image_grid_thw=inputs.get("image_grid_thw"),
            video_grid_thw=inputs.get("video_grid_thw"), second_per_grid_ts=inputs.get("second_per_grid_ts"))
        start = positions[1][ids == token_id].view(ids.shape[0], -1).amin(dim=1)  # first row's h position
        rel = positions - start.view(1, -1, 1)
        return rel[0] * 10_000 + rel[1] * 100 + rel[2]

    plant_row(adapter, monkeypatch, codes)


def test_video_maps_follow_token_geometry(tiny_qwen_adapter, monkeypatch) -> None:
    _plant_positions(tiny_qwen_adapter, monkeypatch)
    out = tiny_qwen_adapter.video_pass(clip(4), "which object? ", generate=False)
    gh, gw = (s // 28 for s in qwen.video_frame_size(H, W, tiny_qwen_adapter.config.video_max_tokens))
    assert out.maps.shape == (2, gh, gw)
    assert tiny_qwen_adapter.last_video_grid_hw == (gh, gw)
    # Temporal rope step = tokens_per_second (2) x second_per_grid_ts (1.0, the reference's fps 2).
    torch.testing.assert_close(out.maps, grid_codes(2, gh, gw, t_step=2))


def test_frame_maps_follow_token_geometry(tiny_qwen_adapter, monkeypatch) -> None:
    _plant_positions(tiny_qwen_adapter, monkeypatch)
    out = tiny_qwen_adapter.frame_pass(clip(3), "which object? ", generate=False, video_grid_hw=(1, 2))
    assert out.maps.shape == (3, 2, 4)  # exactly 2x the video grid per side
    torch.testing.assert_close(out.maps, grid_codes(1, 2, 4, t_step=0).expand(3, 2, 4))


def test_visual_maps_raster_order() -> None:
    ids = torch.tensor([[5, 9, 9, 9, 9, 9, 9, 7], [5, 9, 9, 9, 9, 9, 9, 7]])
    row = torch.arange(16, dtype=torch.float32).view(2, 8)
    maps = hf_adapter.visual_maps(row, ids == 9, torch.tensor([[1, 2, 3], [1, 2, 3]]))
    torch.testing.assert_close(maps, torch.tensor([[[1., 2, 3], [4, 5, 6]], [[9, 10, 11], [12, 13, 14]]]))
    with pytest.raises(RuntimeError, match="grid"):
        hf_adapter.visual_maps(row, ids == 9, torch.tensor([[1, 2, 2], [1, 2, 2]]))


# ---------------------------------------------------------------- real passes
def test_frame_path_is_twice_the_video_grid(tiny_qwen_adapter) -> None:
    frames = clip(4)
    video = tiny_qwen_adapter.video_pass(frames, "which object? ", generate=False)
    frame = tiny_qwen_adapter.frame_pass(frames, "which object? ", generate=False,
                                         video_grid_hw=tiny_qwen_adapter.last_video_grid_hw)
    assert isinstance(video, PassMaps) and video.answers == [] and frame.answers == []
    t, gh, gw = video.maps.shape
    assert t == 2 and frame.maps.shape == (4, 2 * gh, 2 * gw)
    for maps in (video.maps, frame.maps):
        assert maps.dtype == torch.float32 and maps.device.type == "cpu"
        assert bool((maps > 0).all()) and bool(torch.isfinite(maps).all())


def test_odd_frame_count_duplicates_last_frame(tiny_qwen_adapter) -> None:
    frames = clip(5)
    odd = tiny_qwen_adapter.video_pass(frames, "which object? ", generate=False)
    even = tiny_qwen_adapter.video_pass(frames + [frames[-1]], "which object? ", generate=False)
    assert odd.maps.shape[0] == 3
    torch.testing.assert_close(odd.maps, even.maps, rtol=0, atol=0)


def test_generation_answers_and_determinism(tiny_qwen_adapter) -> None:
    frames = clip(4, seed=3)
    text = prompts.object_class_prompt(prompts.normalize_expression("The dog"))
    assert_generation_is_deterministic(tiny_qwen_adapter, frames, text)
    frame = tiny_qwen_adapter.frame_pass(frames[:3], text, generate=True, video_grid_hw=(1, 2))
    assert len(frame.answers) == 3
    answer = tiny_qwen_adapter.generate_text(prompts.class_choice_prompt("the dog.", ["dog", "cat"]))
    assert isinstance(answer, str)


def test_frame_batches_do_not_change_maps(tiny_qwen_adapter, monkeypatch) -> None:
    assert_batching_keeps_maps(tiny_qwen_adapter, monkeypatch, clip(3, seed=5), video_grid_hw=(1, 2))


def test_frame_pass_needs_a_grid(tiny_qwen_dir) -> None:
    from decaf_ros.core.models import load_mllm
    from common_fixtures import tiny_config

    adapter = load_mllm(tiny_qwen_dir, "cpu", torch.float32, tiny_config(tiny_qwen_dir))
    with pytest.raises(RuntimeError, match="video grid"):
        adapter.frame_pass(clip(2), "x", generate=False)


def test_tiny_build_is_deterministic(tmp_path, tiny_qwen_dir) -> None:
    folder = build_tiny_qwen2_5_vl(tmp_path / "again")
    ref = load_file(f"{tiny_qwen_dir}/model.safetensors")
    new = load_file(f"{folder}/model.safetensors")
    assert ref.keys() == new.keys() and all(torch.equal(ref[k], new[k]) for k in ref)
    for name in ("tokenizer.json", "config.json"):
        assert (folder / name).read_text() == open(f"{tiny_qwen_dir}/{name}").read()


def test_qwen2_vl_uses_the_same_adapter(tmp_path, monkeypatch) -> None:
    from decaf_ros.core.models import load_mllm
    from common_fixtures import tiny_config

    folder = str(build_tiny_qwen2_vl(tmp_path / "qwen2_vl"))
    adapter = load_mllm(folder, "cpu", torch.float32, tiny_config(folder))
    assert adapter.family == "qwen2_vl" and adapter.start_layer == 2
    _plant_positions(adapter, monkeypatch)
    video = adapter.video_pass(clip(4), "which object? ", generate=False)
    torch.testing.assert_close(video.maps, grid_codes(2, 2, 3, t_step=1))  # no absolute time
    frame = adapter.frame_pass(clip(2), "which object? ", generate=True)
    torch.testing.assert_close(frame.maps, grid_codes(1, 4, 6, t_step=0).expand(2, 4, 6))
    assert len(frame.answers) == 2


# ---------------------------------------------------------------- image-processor backend (§13 item 11)
def test_default_loads_the_reference_pil_image_processor(tiny_qwen_dir, tiny_qwen_adapter) -> None:
    """Loaded through load_mllm -> from_pretrained: the PIL processor, as the reference's use_fast=False."""
    assert type(tiny_qwen_adapter.processor.image_processor).__name__ == "Qwen2VLImageProcessorPil"
    fast = load_tiny(tiny_qwen_dir, image_processor_backend="torchvision")
    assert type(fast.processor.image_processor).__name__ == "Qwen2VLImageProcessor"
    assert type(fast.processor.video_processor) is type(tiny_qwen_adapter.processor.video_processor)
    images = qwen.resize_frames(clip(2), (56, 84))
    slow_px, fast_px = (a.processor.image_processor(images=images, return_tensors="pt", do_resize=False)[
        "pixel_values"] for a in (tiny_qwen_adapter, fast))
    # same pixels up to one float32 ulp, but not the same bits: the backend matters for bit-identity
    torch.testing.assert_close(slow_px, fast_px, rtol=0, atol=5e-7)
    assert not torch.equal(slow_px, fast_px)


def test_qwen3_vl_default_loads_the_pil_image_processor(tiny_qwen3_vl_adapter) -> None:
    assert type(tiny_qwen3_vl_adapter.processor.image_processor).__name__.endswith("Pil")
