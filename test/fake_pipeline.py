"""A DecafPipeline stand-in with planted masks, for node tests in this process and in child processes.

Deterministic: masks are boxes chosen by the query's words; ground() can block on an Event, hold
until cancelled ("hold ..." queries), ignore or honour cancellation, pause between its coarse and
dense results, plant several targets (one vanishing on the last frame) and raise.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import torch

from decaf_ros.core.pipeline import GroundingCancelled
from decaf_ros.core.result import STAGE_COARSE, STAGE_DENSE, GroundingResult, TrackResult

HOLD = "hold"  # a query starting with this grounds until it is cancelled


def planted_mask(height: int, width: int, query: str) -> np.ndarray:
    """A box on the left for goals mentioning 'left', else on the right."""
    mask = np.zeros((height, width), dtype=bool)
    rows = slice(height // 4, 3 * height // 4)
    mask[rows, 2: width // 3] = "left" in query
    mask[rows, 2 * width // 3: width - 2] = "left" not in query
    return mask


def grown(mask: np.ndarray, px: int = 1) -> np.ndarray:
    """The box grown by ``px`` on every side: the coarse mask of the same object (IoU stays > 0.5)."""
    out = mask.copy()
    for axis in (0, 1):
        for shift in range(1, px + 1):
            out |= np.roll(mask, shift, axis) | np.roll(mask, -shift, axis)
    return out


class FakePipeline:
    """Deterministic planted masks, controllable delay, cancellation, progressive results and failures."""

    def __init__(self, block: bool = False, honour_cancel: bool = True, track_score: float = 0.95,
                 two_targets: bool = False) -> None:
        self.gate = threading.Event()
        if not block:
            self.gate.set()
        self.dense_gate = threading.Event()  # cleared: ground() waits after its coarse result
        self.dense_gate.set()
        self.entered = threading.Event()
        self.honour_cancel = honour_cancel
        self.track_score = track_score
        # Two targets: [a box that is gone on the clip's last frame, the planted box].
        self.two_targets = two_targets
        self.ground_error: BaseException | None = None
        self.track_error: BaseException | None = None
        self.ground_calls: list[tuple[str, list[tuple[int, ...]]]] = []
        self.ground_options: list[dict] = []
        self.threads_seen: list[int] = []  # torch.get_num_threads() inside each ground()
        self.cancelled = 0
        self.cancel_events: list[threading.Event | None] = []  # the event the node handed to each ground()
        self.track_calls = 0
        self.tracking_started_with = 0
        self._tracked = np.zeros((0, 1, 1), dtype=bool)

    def ground(self, frames: list[np.ndarray], query: str, *, coarse_only: bool = False,
               cancel: threading.Event | None = None, progress: Callable[[str], None] | None = None,
               on_coarse: Callable[[GroundingResult], None] | None = None) -> GroundingResult:
        self.ground_calls.append((query, [f.shape for f in frames]))
        self.ground_options.append({"coarse_only": coarse_only, "on_coarse": on_coarse is not None})
        self.cancel_events.append(cancel)
        self.threads_seen.append(torch.get_num_threads())
        self.entered.set()
        if progress is not None:
            progress("p1_video")
        self._wait(self.gate, cancel, hold=query.startswith(HOLD))
        if self.ground_error is not None:
            raise self.ground_error
        targets = self._planted_targets(len(frames), *frames[0].shape[:2], query)
        coarse = self._result(query, grown_targets(targets), STAGE_COARSE, coarse_only=True)
        if on_coarse is not None:
            on_coarse(coarse)
        if coarse_only:
            return coarse
        if progress is not None:
            progress("sam2_stage1")
        self._wait(self.dense_gate, cancel)
        return self._result(query, targets, STAGE_DENSE, coarse_only=False)

    def _wait(self, gate: threading.Event, cancel: threading.Event | None, hold: bool = False) -> None:
        while hold or not gate.wait(0.005):
            self._stop_if_cancelled(cancel)
            if hold and cancel is not None:
                cancel.wait(0.005)
        # Checked once more after the gate opens, like the real pipeline's next stage boundary: whether the
        # cancel is observed must not depend on which of the gate and the cancel the thread saw first.
        self._stop_if_cancelled(cancel)

    def _stop_if_cancelled(self, cancel: threading.Event | None) -> None:
        if self.honour_cancel and cancel is not None and cancel.is_set():
            self.cancelled += 1
            raise GroundingCancelled("cancelled")

    def _planted_targets(self, num_frames: int, height: int, width: int, query: str) -> np.ndarray:
        box = planted_mask(height, width, query)
        target = np.broadcast_to(box, (1, num_frames, height, width)).copy()
        if not self.two_targets:
            return target
        vanishing = np.zeros((1, num_frames, height, width), dtype=bool)
        vanishing[0, :-1, 1: height // 5, width // 3 + 2: 2 * width // 3 - 2] = True
        return np.concatenate([vanishing, target])

    def _result(self, query: str, targets: np.ndarray, stage: str, coarse_only: bool) -> GroundingResult:
        num_frames, height, width = targets.shape[1:]
        scores = np.linspace(0.9, 0.8, len(targets)).astype(np.float32)
        return GroundingResult(
            query=query, masks=targets.any(axis=0), target_masks=targets, target_scores=scores,
            coarse_masks=np.zeros((0, height, width), bool), key_frame_indices=list(range(num_frames)),
            fused=torch.zeros(num_frames, 2, 2), obj_name=query.split()[-1], candidates=[],
            coarse_only=coarse_only, stage=stage)

    def start_tracking(self, frame: np.ndarray, result: GroundingResult) -> int:
        """Like DecafPipeline: targets empty on the frame tracking starts from are not tracked."""
        last = result.target_masks[:, -1]
        self._tracked = last[last.any(axis=(1, 2))]
        self.tracking_started_with = len(result.target_masks)
        return int(len(self._tracked))

    def track(self, frame: np.ndarray) -> TrackResult:
        self.track_calls += 1
        if self.track_error is not None:
            raise self.track_error
        scores = np.full(len(self._tracked), self.track_score, np.float32)
        return TrackResult(target_masks=self._tracked.copy(), scores=scores, timing_s=0.001)

    def stop_tracking(self) -> None:
        pass


def grown_targets(targets: np.ndarray) -> np.ndarray:
    return np.stack([np.stack([grown(m) if m.any() else m for m in target]) for target in targets])


class FakePipelineWithoutCoarse(FakePipeline):
    """A pipeline whose ground() predates progressive results: no on_coarse parameter."""

    def ground(self, frames: list[np.ndarray], query: str, *, coarse_only: bool = False,  # type: ignore[override]
               cancel: threading.Event | None = None,
               progress: Callable[[str], None] | None = None) -> GroundingResult:
        return super().ground(frames, query, coarse_only=coarse_only, cancel=cancel, progress=progress)
