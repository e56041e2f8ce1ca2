"""Sam2Segmenter on the tiny random SAM2: shapes, ordering, propagation coverage, streaming memory.

Random weights make the masks arbitrary, so these tests check structure and invariants that hold for
any weights (mask prompts read back, object independence, exact pruning, offline == streaming).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from decaf_ros.core.loading import ModelLoadError
from decaf_ros.core.models.sam2.segmenter import Sam2Segmenter

H, W = 48, 64  # not square, not the model's 128 px: exercises both rescalings


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # tiny ops on a shared 2-core box: one thread avoids oversubscription stalls (10-20x slower)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def sam(tiny_sam2_dir) -> Sam2Segmenter:  # noqa: F811
    return Sam2Segmenter.from_pretrained(str(tiny_sam2_dir), device="cpu")


def _video(t: int, h: int = H, w: int = W) -> list[np.ndarray]:
    """A bright square drifting right over a textured background."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    frames = []
    for i in range(t):
        f = base.copy()
        x = 8 + i % (w - 24)
        f[12:32, x : x + 16] = (230, 200, 40)
        frames.append(f)
    return frames


def _box_mask(h: int = H, w: int = W, x: int = 8) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[12:32, x : x + 16] = True
    return m


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _frames_run(model: torch.nn.Module) -> tuple[list[tuple[int, bool]], object]:
    """Record (frame_idx, reverse) of every video forward."""
    seen: list[tuple[int, bool]] = []

    def hook(_module, _args, kwargs):
        seen.append((kwargs.get("frame_idx"), bool(kwargs.get("reverse", False))))

    return seen, model.register_forward_pre_hook(hook, with_kwargs=True)


def test_loads_in_fp32_eval(sam: Sam2Segmenter) -> None:
    assert sam.dtype == torch.float32
    assert not sam.model.training
    assert sam.image_size == 128
    assert next(sam.model.parameters()).dtype == torch.float32


def test_segment_points_shapes(sam: Sam2Segmenter) -> None:
    frames = _video(8)
    points = np.array([[0.2, 0.4], [0.5, 0.5], [0.9, 0.1], [0.0, 1.0]])
    masks, ious = sam.segment_points(frames, 2, points)
    assert masks.shape == (4, H, W) and masks.dtype == bool
    assert ious.shape == (4,) and ious.dtype == np.float32
    assert np.all((ious >= 0) & (ious <= 1))


def test_segment_points_keeps_input_order(sam: Sam2Segmenter) -> None:
    frames = _video(4)
    points = np.array([[0.2, 0.4], [0.7, 0.3], [0.5, 0.9]])
    masks, ious = sam.segment_points(frames, 1, points)
    masks_r, ious_r = sam.segment_points(frames, 1, points[::-1])
    np.testing.assert_array_equal(masks_r, masks[::-1])
    np.testing.assert_allclose(ious_r, ious[::-1], rtol=1e-5, atol=1e-6)
    single, single_iou = sam.segment_points(frames, 1, points[1:2])
    np.testing.assert_array_equal(single[0], masks[1])  # each click is its own object
    np.testing.assert_allclose(single_iou[0], ious[1], rtol=1e-5, atol=1e-6)


def test_segment_points_iou_is_best_of_three(sam: Sam2Segmenter) -> None:
    frames = _video(3)
    calls: list[torch.Tensor] = []
    handle = sam.model.mask_decoder.register_forward_hook(lambda _m, _i, out: calls.append(out[1]))
    try:
        _, ious = sam.segment_points(frames, 0, np.array([[0.3, 0.3], [0.6, 0.6]]))
    finally:
        handle.remove()
    assert [c.shape[-1] for c in calls] == [3, 3]  # multimask output for a single click
    np.testing.assert_allclose(ious, [c.max().item() for c in calls], rtol=1e-6)


def test_segment_points_matches_a_session_over_all_frames(sam: Sam2Segmenter) -> None:
    # segment_points preprocesses only the prompted frame; a click on a first conditioning frame uses
    # no memory, so a session over the whole clip must give the same masks
    frames = _video(5)
    points = np.array([[0.3, 0.4], [0.7, 0.6]])
    masks, _ = sam.segment_points(frames, 3, points)
    session = sam.processor.init_video_session(
        video=np.stack(frames), inference_device="cpu", dtype=torch.float32)
    sam.processor.add_inputs_to_inference_session(
        session, frame_idx=3, obj_ids=[100, 101],
        input_points=[[[p.tolist()] for p in points * [W, H]]], input_labels=[[[1], [1]]])
    with torch.inference_mode():
        out = sam.model(inference_session=session, frame_idx=3)
    full = torch.nn.functional.interpolate(out.pred_masks, size=(H, W), mode="bilinear", align_corners=False)
    np.testing.assert_array_equal(masks, (full[:, 0] > 0).numpy())


def test_empty_inputs(sam: Sam2Segmenter) -> None:
    frames = _video(5)
    masks, ious = sam.segment_points(frames, 0, np.zeros((0, 2)))
    assert masks.shape == (0, H, W) and masks.dtype == bool and ious.shape == (0,)
    out = sam.propagate_masks(frames, 2, np.zeros((0, H, W), bool))
    assert out.shape == (0, 5, H, W) and out.dtype == bool
    sam.start_stream(frames[0], np.zeros((0, H, W), bool))
    m, s = sam.track(frames[1])
    assert m.shape == (0, H, W) and s.shape == (0,)
    sam.stop_stream()


def test_propagate_shapes_and_prompt_readback(sam: Sam2Segmenter) -> None:
    frames = _video(6)
    prompts = np.stack([_box_mask(x=10), _box_mask(x=40)])
    out = sam.propagate_masks(frames, 3, prompts)
    assert out.shape == (2, 6, H, W) and out.dtype == bool
    # a mask prompt is taken as the output on its own frame, whatever the weights
    assert _iou(out[0, 3], prompts[0]) > 0.85
    assert _iou(out[1, 3], prompts[1]) > 0.85


def test_propagate_from_frame_1_reaches_frame_0(sam: Sam2Segmenter) -> None:
    frames = _video(5)
    seen, handle = _frames_run(sam.model)
    try:
        out = sam.propagate_masks(frames, 1, _box_mask()[None])
    finally:
        handle.remove()
    assert out.shape == (1, 5, H, W)
    assert (0, True) in seen  # frame 0 was tracked backwards
    assert {f for f, _ in seen} == set(range(5))


def test_propagate_from_frame_0_runs_forward_only(sam: Sam2Segmenter) -> None:
    frames = _video(4)
    seen, handle = _frames_run(sam.model)
    try:
        sam.propagate_masks(frames, 0, _box_mask()[None])
    finally:
        handle.remove()
    assert not any(rev for _, rev in seen)
    assert {f for f, _ in seen} == set(range(4))


def test_deterministic(sam: Sam2Segmenter) -> None:
    frames = _video(6)
    points = np.array([[0.25, 0.45], [0.8, 0.8]])
    a = sam.segment_points(frames, 2, points)
    b = sam.segment_points(frames, 2, points)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    pa = sam.propagate_masks(frames, 2, a[0])
    pb = sam.propagate_masks(frames, 2, b[0])
    np.testing.assert_array_equal(pa, pb)


def test_mixed_sizes_rejected(sam: Sam2Segmenter) -> None:
    frames = _video(3) + _video(1, h=40)
    with pytest.raises(ValueError, match="mixed sizes"):
        sam.segment_points(frames, 0, np.array([[0.5, 0.5]]))
    with pytest.raises(ValueError, match="mixed sizes"):
        sam.propagate_masks(frames, 0, _box_mask()[None])
    sam.start_stream(_video(1)[0], _box_mask()[None])
    with pytest.raises(ValueError, match="differs"):
        sam.track(_video(1, h=40)[0])
    sam.stop_stream()


def test_mask_shape_must_match_frames(sam: Sam2Segmenter) -> None:
    with pytest.raises(ValueError, match="masks must be"):
        sam.propagate_masks(_video(2), 0, np.zeros((1, H + 1, W), bool))


def test_stream_memory_stays_bounded(sam: Sam2Segmenter) -> None:
    frames = _video(40)
    sam.start_stream(frames[0], np.stack([_box_mask(), _box_mask(x=30)]))
    cfg = sam.model.config
    window = max(cfg.num_maskmem, cfg.max_object_pointers_in_encoder) - 1
    sizes = []
    for f in frames[1:]:
        masks, scores = sam.track(f)
        assert masks.shape == (2, H, W) and masks.dtype == bool
        assert scores.shape == (2,) and np.all((scores >= 0) & (scores <= 1))
        sizes.append(sam.stream_state_size())
    session = sam._stream
    sam.stop_stream()
    assert max(s["frames"] for s in sizes) == 1  # past pixels are not kept
    assert max(s["outputs"] for s in sizes) <= 1 + window  # the conditioning frame + the window
    assert max(s["tracked"] for s in sizes) <= window
    past = session.output_dict_per_obj[0]["non_cond_frame_outputs"]
    heavy = [f for f, o in past.items() if "maskmem_features" in o]
    assert len(heavy) <= cfg.num_maskmem - 1  # memory features only for the frames memory attention reads
    assert not sam.streaming


def test_stream_pruning_is_exact(sam: Sam2Segmenter, monkeypatch: pytest.MonkeyPatch) -> None:
    frames = _video(22)
    prompt = np.stack([_box_mask(), _box_mask(x=30)])

    def run() -> tuple[np.ndarray, np.ndarray]:
        sam.start_stream(frames[0], prompt)
        outs = [sam.track(f) for f in frames[1:]]
        sam.stop_stream()
        return np.stack([m for m, _ in outs]), np.stack([s for _, s in outs])

    pruned = run()
    monkeypatch.setattr(Sam2Segmenter, "_prune_stream", lambda self, idx: None)
    full = run()
    np.testing.assert_array_equal(pruned[0], full[0])
    np.testing.assert_allclose(pruned[1], full[1], rtol=1e-6)


def test_stream_matches_offline_propagation(sam: Sam2Segmenter) -> None:
    # with >= max_object_pointers_in_encoder frames the offline and streaming memories coincide
    frames = _video(sam.model.config.max_object_pointers_in_encoder)
    prompt = _box_mask()[None]
    offline = sam.propagate_masks(frames, 0, prompt)
    sam.start_stream(frames[0], prompt)
    streamed = np.stack([sam.track(f)[0] for f in frames[1:]], axis=1)
    sam.stop_stream()
    agree = (streamed == offline[:, 1:]).mean()
    assert agree > 0.999


def test_track_needs_stream(sam: Sam2Segmenter) -> None:
    with pytest.raises(RuntimeError):
        sam.track(_video(1)[0])


def test_missing_folder_raises_model_load_error(tmp_path) -> None:
    missing = tmp_path / "no_such_sam2"
    with pytest.raises(ModelLoadError, match="no_such_sam2"):
        Sam2Segmenter.from_pretrained(str(missing), device="cpu")


def test_offline_hub_id_raises_model_load_error(offline) -> None:
    with pytest.raises(ModelLoadError, match="decaf-tests/no-such-sam2"):
        Sam2Segmenter.from_pretrained("decaf-tests/no-such-sam2", device="cpu")


def test_broken_folder_raises_model_load_error(tmp_path) -> None:
    folder = tmp_path / "broken_sam2"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "sam2_video"}))
    with pytest.raises(ModelLoadError, match="broken_sam2"):
        Sam2Segmenter.from_pretrained(str(folder), device="cpu")


def test_fill_small_holes_fills_islands_up_to_the_area_only():
    from decaf_ros.core.models.sam2.segmenter import fill_small_holes

    logits = torch.full((2, 1, 12, 12), 5.0)
    logits[0, 0, 2:4, 2:4] = -3.0  # 4-pixel hole: filled (<= 8)
    logits[0, 0, 6:9, 6:9] = -3.0  # 9-pixel hole: kept (> 8)
    logits[1, 0, :, :6] = -1.0  # large background half: kept
    out = fill_small_holes(logits, 8)
    assert torch.all(out[0, 0, 2:4, 2:4] == 0.1)
    assert torch.all(out[0, 0, 6:9, 6:9] == -3.0)
    assert torch.equal(out[1], logits[1])
    assert torch.equal(fill_small_holes(logits, 0), logits)


# ---------------------------------------------------------------- shared features (one encoding per frame)
def _clicks_and_propagations(sam: Sam2Segmenter, frames, keys) -> tuple[list, list]:
    """Stage-1-like work on key frames ``keys`` and a stage-2-like propagation over all frames."""
    key_frames = [frames[i] for i in keys] if isinstance(frames, list) else frames.subset(keys)
    points = np.array([[0.3, 0.4], [0.7, 0.6]])
    clicks, propagated = [], []
    for t in range(len(keys)):
        clicks.append(sam.segment_points(key_frames, t, points))
        propagated.append(sam.propagate_masks(key_frames, t, clicks[-1][0]))
    propagated.append(sam.propagate_masks(frames, 2, _box_mask()[None]))
    return clicks, propagated


def test_shared_features_give_bit_identical_masks_with_one_encoding_per_frame(sam):
    frames = _video(7)
    keys = [0, 2, 4, 6]
    calls = sam.image_encoder_calls
    clicks, propagated = _clicks_and_propagations(sam, frames, keys)
    unshared_calls = sam.image_encoder_calls - calls

    clip = sam.clip_features(frames)
    view = clip.view(range(len(frames)))
    calls = sam.image_encoder_calls
    shared_clicks, shared_propagated = _clicks_and_propagations(sam, view, keys)
    shared_calls = sam.image_encoder_calls - calls

    for (m, iou), (ms, ious) in zip(clicks, shared_clicks):
        assert np.array_equal(m, ms) and np.array_equal(iou, ious)
    for a, b in zip(propagated, shared_propagated):
        assert np.array_equal(a, b)
    assert shared_calls == len(frames) and clip.encoded_frames == list(range(len(frames)))
    # unshared: every session encodes each of its frames at least once (4 clicks, 4 x 4 key frames, 7)
    assert unshared_calls >= 4 + 4 * 4 + 7


def test_stream_seeded_with_shared_features_tracks_identically(sam):
    frames = _video(6)
    clip = sam.clip_features(frames[:4])
    sam.propagate_masks(clip.view(range(4)), 0, _box_mask()[None])  # encodes the clip's frames
    prompt = _box_mask()[None]
    runs = []
    for features in (None, clip.view([3])):
        calls = sam.image_encoder_calls
        sam.start_stream(frames[3], prompt, features=features)
        start_calls = sam.image_encoder_calls - calls
        steps = [sam.track(f) for f in frames[4:]]
        runs.append((start_calls, steps))
        sam.stop_stream()
    (fresh_calls, fresh), (seeded_calls, seeded) = runs
    assert (fresh_calls, seeded_calls) == (1, 0)
    for (m, s), (ms, ss) in zip(fresh, seeded):
        assert np.array_equal(m, ms) and np.array_equal(s, ss)


def test_stream_features_of_another_frame_are_refused(sam):
    frames = _video(3)
    clip = sam.clip_features(frames)
    with pytest.raises(ValueError, match="this very frame"):
        sam.start_stream(frames[0], _box_mask()[None], features=clip.view([2]))
