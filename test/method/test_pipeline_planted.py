"""DecafPipeline orchestration on planted maps and a scripted SAM2: known answers, no models."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from decaf_ros.core.config import DecafConfig
from decaf_ros.core.models.base import MLLMAdapter, PassMaps
from decaf_ros.core.pipeline import GROUND_STAGES, DecafPipeline, GroundingCancelled, InputError
from decaf_ros.core.result import STAGE_COARSE, STAGE_DENSE
from decaf_ros.core.models.sam2.segmenter import ClipFeatures

H, W = 56, 84  # frame size; video grid 2x3 tokens, frame grid 4x6 tokens
BOX = 10  # half side of the square the scripted SAM2 returns around a click


class PlantedAdapter(MLLMAdapter):
    """Returns attention maps with a hot spot at a known cell; records the prompts it saw."""

    family = "planted"
    num_layers = 4

    def __init__(self, hot_cell: tuple[int, int]) -> None:
        self.hot_cell = hot_cell  # (row, col) on the frame grid
        self.prompts: list[str] = []
        self.video_grids: list[tuple[int, int] | None] = []  # video_grid_hw of every frame pass
        self.p2_delay_s = 0.0

    def _maps(self, t: int, h: int, w: int, text: str, hot: bool) -> torch.Tensor:
        maps = torch.full((t, h, w), 1e-4)
        if hot and "background" not in text.lower():
            r, c = self.hot_cell
            maps[:, r * h // 4, c * w // 6] += 1e-2
        return maps

    def video_pass(self, frames, text, generate):
        self.prompts.append(text)
        t = (len(frames) + 1) // 2
        return PassMaps(self._maps(t, 2, 3, text, hot=False), ["mug"] if generate else [])

    def frame_pass(self, frames, text, generate, video_grid_hw):
        self.prompts.append(text)
        self.video_grids.append(video_grid_hw)
        return PassMaps(self._maps(len(frames), 4, 6, text, hot=True), ["cup"] * len(frames) if generate else [])

    def generate_text(self, text):
        self.prompts.append(text)
        time.sleep(self.p2_delay_s)
        return " Mug \n"


class ScriptedSam2:
    """Square masks around each click; propagation copies the prompt mask to every frame."""

    def __init__(self) -> None:
        self.propagations: list[tuple[int, int]] = []  # (frame_idx, number of frames)

    def clip_features(self, frames):
        return ClipFeatures(self, frames)  # the shared-feature frame lists, never encoded here

    def segment_points(self, frames, frame_idx, points_xy):
        h, w = frames[0].shape[:2]
        masks = np.zeros((len(points_xy), h, w), dtype=bool)
        for k, (x, y) in enumerate(points_xy):
            cx, cy = int(x * w), int(y * h)
            masks[k, max(cy - BOX, 0):cy + BOX, max(cx - BOX, 0):cx + BOX] = True
        return masks, np.full(len(points_xy), 0.9)

    def propagate_masks(self, frames, frame_idx, masks):
        self.propagations.append((frame_idx, len(frames)))
        return np.repeat(masks[:, None], len(frames), axis=1)


def clip(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (H, W, 3), dtype=np.uint8) for _ in range(n)]


def make_pipeline(hot_cell=(1, 2), key_frames=4) -> tuple[DecafPipeline, PlantedAdapter, ScriptedSam2]:
    adapter, sam2 = PlantedAdapter(hot_cell), ScriptedSam2()
    config = DecafConfig(mllm="planted", sam2="scripted", num_key_frames=key_frames)
    return DecafPipeline(adapter, sam2, config), adapter, sam2


def test_planted_hot_cell_becomes_the_only_target():
    pipeline, adapter, sam2 = make_pipeline(hot_cell=(1, 2))
    frames = clip(9)
    result = pipeline.ground(frames, "The red mug")
    # key frames of 9 with 4 samples: linspace(0, 8, 4) = 0, 2.67, 5.33, 8 -> 0, 2, 5, 8
    assert result.key_frame_indices == [0, 2, 5, 8]
    assert result.obj_name == "mug"
    assert result.candidates == ["mug", "cup", "cup", "cup", "cup"]
    # F peaks at cell (1, 2) of the 4x6 frame grid: click at ((2+.5)/6, (1+.5)/4) of the frame.
    expected = np.zeros((H, W), dtype=bool)
    cx, cy = int(2.5 / 6 * W), int(1.5 / 4 * H)
    expected[cy - BOX:cy + BOX, cx - BOX:cx + BOX] = True
    assert result.masks.shape == (9, H, W) and result.masks.dtype == bool
    assert all(np.array_equal(m, expected) for m in result.masks)
    # The same cell is hot on all 4 key frames, but the cross-frame check keeps one tracklet.
    assert result.num_targets == 1 and len(result.kept) == 1
    assert len(result.tracklets) == 1
    # Stage 2 propagates from the origin key frame over all 9 frames, once.
    assert sam2.propagations[-1] == (0, 9)
    # P2 saw the expression and all candidates, P3 asked about the chosen class.
    assert "'the red mug.'" in adapter.prompts[2].lower()
    assert "mug,cup,cup,cup,cup" in adapter.prompts[2]
    assert "mug" in adapter.prompts[3]


def test_coarse_only_fills_key_frames_only():
    pipeline, _, _ = make_pipeline()
    result = pipeline.ground(clip(9), "the mug", coarse_only=True)
    assert result.coarse_only
    assert result.coarse_masks.shape == (4, H, W)
    others = [i for i in range(9) if i not in result.key_frame_indices]
    assert not result.masks[others].any()
    assert result.masks[result.key_frame_indices].any()


def test_stages_run_in_order_and_each_is_timed_on_its_own():
    """progress sees every stage of GROUND_STAGES in order; a stage's time is its own work."""
    pipeline, adapter, _ = make_pipeline()
    adapter.p2_delay_s = 0.05  # only P2 (generate_text) sleeps
    seen: list[str] = []
    start = time.perf_counter()
    result = pipeline.ground(clip(5), "the mug", progress=seen.append)
    wall = time.perf_counter() - start
    assert seen == list(GROUND_STAGES) and list(result.timings) == list(GROUND_STAGES)
    assert result.timings["p2_choice"] >= 0.05
    assert sum(result.timings.values()) <= wall


def test_frame_passes_get_the_video_pass_grid():
    """The grid comes from the video pass's own maps (2x3 here), not from adapter state."""
    pipeline, adapter, _ = make_pipeline()
    pipeline.ground(clip(5), "the mug")
    assert adapter.video_grids == [(2, 3), (2, 3)]


def test_cancel_event_stops_between_stages():
    pipeline, _, _ = make_pipeline()
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(GroundingCancelled):
        pipeline.ground(clip(4), "the mug", cancel=cancel)


@pytest.mark.parametrize("query", ["", "   ", "?!", "x" * 5000])
def test_bad_queries_are_rejected(query):
    pipeline, _, _ = make_pipeline()
    with pytest.raises(InputError):
        pipeline.ground(clip(4), query)


def test_mixed_frame_sizes_are_rejected():
    pipeline, _, _ = make_pipeline()
    frames = clip(3) + [np.zeros((H + 2, W, 3), dtype=np.uint8)]
    with pytest.raises(InputError, match="one size"):
        pipeline.ground(frames, "the mug")


def test_wrong_frame_dtype_is_rejected():
    pipeline, _, _ = make_pipeline()
    with pytest.raises(InputError, match="uint8 RGB"):
        pipeline.ground([np.zeros((H, W), dtype=np.float32)], "the mug")


def test_start_tracking_with_no_visible_target_opens_no_stream():
    pipeline, _, _ = make_pipeline()
    result = pipeline.ground(clip(4), "the mug")
    result.target_masks = np.zeros((0, 4, H, W), dtype=bool)  # grounding kept nothing
    pipeline.sam2.start_stream = lambda frame, masks, features=None: None
    assert pipeline.start_tracking(clip(1)[0], result) == 0
    with pytest.raises(RuntimeError, match="no tracking stream"):
        pipeline.track(clip(1)[0])


def test_prompt_versions_come_from_the_config():
    pipeline, adapter, _ = make_pipeline()
    pipeline.config = pipeline.config.with_overrides(
        prompt_object_version=1, prompt_choice_version=3, prompt_background_version=3)
    pipeline.ground(clip(4), "The Red Mug")
    p1_video, p1_frames, p2, p3_video, p3_frames = adapter.prompts
    assert p1_video == p1_frames == ("the red mug. \nIdentify the primary object referred to in the expression "
                                     "and answer with a single word. \n")
    assert p2 == ("Given:\n- Expression: 'the red mug.'\nGoal: Identify the object class referred to by the "
                  "expression. (e.g., 'a person driving a car' \u2192 'person').\n"
                  "Output the most likely referred object class - just the label.\n")
    assert p3_video == p3_frames == (
        "Describe the background scene of the video, excluding the objects referred to in the given expression "
        "or question 'the red mug.'. Answer the question using a single word or phrase.")


class TiedSam2(ScriptedSam2):
    """Two clicks, one identical mask, s_SAM that tie only after float32 rounding."""

    def segment_points(self, frames, frame_idx, points_xy):
        masks, _ = super().segment_points(frames, frame_idx, points_xy[:1])
        return np.repeat(masks, len(points_xy), axis=0), np.array([0.69999999, 0.70000005])[:len(points_xy)]


def test_pipeline_nms_decides_float32_ties_like_the_reference():
    pipeline, _, _ = make_pipeline()
    pipeline.sam2 = TiedSam2()
    fused = torch.zeros(1, 4, 6)
    fused[0, 1, 2] = fused[0, 1, 3] = 0.90000010  # two clicks with the same attention
    tracklets = pipeline._key_frame_tracklets(clip(1), fused)
    assert len(tracklets) == 1
    assert tracklets[0].sam_iou == float(np.float32(0.69999999))  # mask 0 kept; float64 would keep mask 1


class CoarseRecorder:
    """progress + on_coarse callbacks that note which stages had started when the coarse result came."""

    def __init__(self) -> None:
        self.stages: list[str] = []
        self.coarse: list = []  # (stages seen so far, result)

    def progress(self, stage: str) -> None:
        self.stages.append(stage)

    def on_coarse(self, result) -> None:
        self.coarse.append((list(self.stages), result))


def test_coarse_result_comes_once_before_sam2_and_matches_the_final_coarse_masks():
    pipeline, _, sam2 = make_pipeline(hot_cell=(1, 2))
    frames = clip(9)
    recorder = CoarseRecorder()
    calls_at_coarse = []
    recorder_on_coarse = recorder.on_coarse

    def on_coarse(result):
        calls_at_coarse.append(len(sam2.propagations))
        recorder_on_coarse(result)

    final = pipeline.ground(frames, "the mug", progress=recorder.progress, on_coarse=on_coarse)
    assert len(recorder.coarse) == 1
    seen, coarse = recorder.coarse[0]
    assert seen[-1] == "coarse_masks" and "sam2_stage1" not in seen  # fired right after fusion + coarse masks
    assert calls_at_coarse == [0] and len(sam2.propagations) > 0  # SAM2 ran only afterwards
    assert "sam2_stage1" in recorder.stages
    assert coarse.stage == STAGE_COARSE and coarse.coarse_only
    assert final.stage == STAGE_DENSE and not final.coarse_only
    assert np.array_equal(coarse.coarse_masks, final.coarse_masks)
    keys = final.key_frame_indices
    assert np.array_equal(coarse.masks[keys], final.coarse_masks)
    others = [i for i in range(9) if i not in keys]
    assert not coarse.masks[others].any()
    # the coarse result is its own object: the dense stage did not overwrite it
    assert coarse is not final and coarse.masks.any() and "sam2_stage1" not in coarse.timings
    # coarse targets: the last key frame's components, each a part of that frame's coarse mask
    assert coarse.target_masks.shape[0] >= 1 and coarse.target_masks.shape[1:] == (9, H, W)
    assert coarse.target_scores.shape == (coarse.target_masks.shape[0],)
    assert coarse.target_scores.dtype == np.float32
    assert np.array_equal(coarse.target_masks.any(axis=0)[keys[-1]], coarse.coarse_masks[-1])
    assert not coarse.target_masks[:, :keys[-1]].any()


def test_coarse_only_returns_the_coarse_result_it_reported():
    pipeline, _, sam2 = make_pipeline()
    reported = []
    result = pipeline.ground(clip(9), "the mug", coarse_only=True, on_coarse=reported.append)
    assert reported == [result] and reported[0] is result
    assert result.stage == STAGE_COARSE and result.num_targets >= 1
    assert sam2.propagations == []


def test_cancel_seen_before_the_coarse_result_suppresses_it():
    pipeline, _, sam2 = make_pipeline()
    cancel = threading.Event()
    reported = []

    def progress(stage):
        if stage == "coarse_masks":
            cancel.set()  # a newer goal arrives while the coarse masks are computed

    with pytest.raises(GroundingCancelled):
        pipeline.ground(clip(4), "the mug", cancel=cancel, progress=progress, on_coarse=reported.append)
    assert reported == [] and sam2.propagations == []


def test_cancel_after_the_coarse_result_stops_before_sam2():
    pipeline, _, sam2 = make_pipeline()
    cancel = threading.Event()
    reported = []

    def on_coarse(result):
        reported.append(result)
        cancel.set()

    with pytest.raises(GroundingCancelled):
        pipeline.ground(clip(4), "the mug", cancel=cancel, on_coarse=on_coarse)
    assert len(reported) == 1 and sam2.propagations == []
