"""DecAF end to end: prompting stages → rollout maps → fusion → SAM2 tracklets → masks.

Reference mode (``ground``) follows docs/method.md §2–§7 step by step. Live mode adds
``start_tracking``/``track``: SAM2 streaming over new frames after a grounding.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import torch

from . import prompts
from .config import DecafConfig
from .frames import MIN_FRAME_SIDE, key_frame_indices
from .fusion import coarse_masks, coarse_targets, fuse_maps
from .loading import pick_device, pick_dtype
from .models import MLLMAdapter, load_mllm
from .models.sam2.segmenter import FrameView, Sam2Segmenter
from .result import STAGE_COARSE, STAGE_DENSE, GroundingResult, Tracklet, TrackResult
from .tracklets import (
    attention_consistency,
    cross_frame_check,
    nms_masks,
    object_score,
    point_candidates,
    select_tracklets,
    tracklet_score,
)

log = logging.getLogger(__name__)

ProgressFn = Callable[[str], None]
CoarseFn = Callable[[GroundingResult], None]
MAX_QUERY_CHARS = 2000


class GroundingCancelled(RuntimeError):
    """Raised between stages when the caller's cancel event is set (a newer goal arrived)."""


class InputError(ValueError):
    """The frames or the query cannot be processed; the message says why."""


def validate_frames(frames: Sequence[np.ndarray]) -> tuple[int, int]:
    """Check a clip is non-empty, uint8 RGB and of one size; return (H, W)."""
    if len(frames) == 0:
        raise InputError("the clip has no frames")
    sizes = set()
    for i, frame in enumerate(frames):
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise InputError(f"frame {i} must be a uint8 RGB array of shape (H, W, 3), got "
                             f"{getattr(frame, 'dtype', type(frame))} {getattr(frame, 'shape', '')}")
        if frame.shape[0] < MIN_FRAME_SIDE or frame.shape[1] < MIN_FRAME_SIDE:
            raise InputError(f"frame {i} is too small: {frame.shape[1]}x{frame.shape[0]}")
        sizes.add(frame.shape[:2])
    if len(sizes) > 1:
        listed = ", ".join(f"{w}x{h}" for h, w in sorted(sizes))
        raise InputError(f"all frames of a clip must have one size; got {listed}")
    return next(iter(sizes))


def validate_query(query: str) -> str:
    """Return the query unchanged, or raise InputError when it is empty or absurdly long.

    The text is not re-spaced or stripped: the prompts quote the expression as given (§2.1), as the
    reference does with the benchmarks' expressions; only the length check ignores extra spaces.
    """
    text = str(query)
    compact = " ".join(text.split())
    if not compact or not any(ch.isalnum() for ch in compact):
        raise InputError("the query is empty (it needs at least one letter or digit)")
    if len(compact) > MAX_QUERY_CHARS:
        raise InputError(f"the query has {len(compact)} characters; at most {MAX_QUERY_CHARS} are accepted")
    return text


# The stages of ``ground`` in the order they run: the keys of ``GroundingResult.timings`` and the
# names ``progress`` callbacks receive. A coarse-only run stops after ATTENTION_STAGES.
ATTENTION_STAGES = ("p1_video", "p1_frames", "p2_choice", "p3_video", "p3_frames", "fusion", "coarse_masks")
SAM2_STAGES = ("sam2_stage1", "tracklet_scoring", "sam2_propagation")
GROUND_STAGES = ATTENTION_STAGES + SAM2_STAGES


class _StageClock:
    """Times named stages, checks for cancellation and reports progress between them."""

    def __init__(self, cancel: threading.Event | None, progress: ProgressFn | None) -> None:
        self.timings: dict[str, float] = {}
        self._cancel = cancel
        self._progress = progress

    def check_cancel(self, what: str) -> None:
        if self._cancel is not None and self._cancel.is_set():
            raise GroundingCancelled(f"cancelled before {what}")

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if name not in GROUND_STAGES:  # one list of stage names: callers and reports rely on it
            raise ValueError(f"unknown stage '{name}'; add it to GROUND_STAGES")
        self.check_cancel(f"stage {name}")
        if self._progress is not None:
            self._progress(name)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start


class DecafPipeline:
    """A loaded MLLM adapter + SAM2 segmenter and the DecAF procedure that joins them."""

    def __init__(self, mllm: MLLMAdapter, sam2: Sam2Segmenter | None, config: DecafConfig) -> None:
        config.validate()
        self.mllm = mllm
        self.sam2 = sam2
        self.config = config
        self._stream_open = False
        self._stream_seed: FrameView | None = None  # the last grounding's last frame, features encoded

    @classmethod
    def from_config(cls, config: DecafConfig, load_sam2: bool = True) -> "DecafPipeline":
        """Load both models named in the config (hub ids or local folders); raises ModelLoadError."""
        config.validate()
        device = pick_device(config.device)
        mllm = load_mllm(config.mllm, device=device, dtype=pick_dtype(config.dtype, device), config=config)
        sam2 = None
        if load_sam2:
            sam2 = Sam2Segmenter.from_pretrained(
                config.sam2, device=device, dtype=pick_dtype(config.sam2_dtype, device))
        return cls(mllm, sam2, config)

    # ------------------------------------------------------------------ reference mode
    def ground(
        self,
        frames: Sequence[np.ndarray],
        query: str,
        *,
        coarse_only: bool = False,
        cancel: threading.Event | None = None,
        progress: ProgressFn | None = None,
        on_coarse: CoarseFn | None = None,
    ) -> GroundingResult:
        """Segment what ``query`` refers to in every frame of the clip (§2–§7).

        Progressive: ``on_coarse`` (if given) is called once, on this thread, with the coarse
        result (stage ``STAGE_COARSE``: Otsu masks on the key frames, coarse targets, §6) as soon
        as fusion and the coarse masks are done, before any SAM2 work — also when ``coarse_only``.
        ``cancel`` is checked at every stage boundary, that call included. The returned result is
        the dense one (stage ``STAGE_DENSE``) when SAM2 ran, else the coarse one.
        """
        height, width = validate_frames(frames)
        query = validate_query(query)
        clock = _StageClock(cancel, progress)
        keys = key_frame_indices(len(frames), self.config.num_key_frames)
        key_frames = [frames[i] for i in keys]
        with torch.inference_mode():
            fused, obj_name, candidates = self._attention_volume(key_frames, query, clock)
        with clock.stage("coarse_masks"):
            coarse = self._coarse_result(fused, (len(frames), height, width), keys, query, obj_name, candidates)
        coarse.timings = dict(clock.timings)
        clock.check_cancel("the coarse result")
        if on_coarse is not None:
            on_coarse(coarse)
        if coarse_only or self.sam2 is None:
            coarse.timings = clock.timings
            return coarse
        result = replace(
            coarse, masks=np.zeros_like(coarse.masks), target_masks=coarse.target_masks[:0],
            target_scores=coarse.target_scores[:0], timings=clock.timings, coarse_only=False, stage=STAGE_DENSE)
        self._dense_masks(frames, key_frames, result, clock)
        return result

    @staticmethod
    def _coarse_result(
        fused: torch.Tensor, clip_shape: tuple[int, int, int], keys: list[int], query: str, obj_name: str,
        candidates: list[str],
    ) -> GroundingResult:
        """The §6 result: Otsu masks on the key frames and the coarse targets (``coarse_targets``)."""
        num_frames, height, width = clip_shape
        coarse = coarse_masks(fused, (height, width))
        masks = np.zeros(clip_shape, dtype=bool)
        masks[keys] = coarse
        target_masks, target_scores = coarse_targets(fused, coarse, keys, num_frames)
        return GroundingResult(
            query=query, masks=masks, target_masks=target_masks, target_scores=target_scores,
            coarse_masks=coarse, key_frame_indices=keys, fused=fused, obj_name=obj_name,
            candidates=candidates, coarse_only=True, stage=STAGE_COARSE)

    def _attention_volume(
        self, key_frames: list[np.ndarray], query: str, clock: _StageClock,
    ) -> tuple[torch.Tensor, str, list[str]]:
        """Run P1/P2/P3 on both paths and fuse the four maps into F (§3, §5).

        With ``share_prompt_prefix``, P3 reuses P1's visual prefix on each path (and on each frame
        batch): only its own text goes through the LLM.
        """
        with self.mllm.sharing_prompt_prefixes(self.config.share_prompt_prefix):
            return self._prompting_stages(key_frames, query, clock)

    def _prompting_stages(
        self, key_frames: list[np.ndarray], query: str, clock: _StageClock,
    ) -> tuple[torch.Tensor, str, list[str]]:
        cfg = self.config
        expression = prompts.normalize_expression(query)
        object_prompt = prompts.object_class_prompt(expression, cfg.prompt_object_version)
        with clock.stage("p1_video"):
            obj_video = self.mllm.video_pass(key_frames, object_prompt, generate=True)
        grid_hw = obj_video.grid_hw
        with clock.stage("p1_frames"):
            obj_frame = self.mllm.frame_pass(key_frames, object_prompt, generate=True, video_grid_hw=grid_hw)
        candidates = [a.strip().lower() for a in obj_video.answers + obj_frame.answers]
        choice_prompt = prompts.class_choice_prompt(expression, candidates, cfg.prompt_choice_version)
        with clock.stage("p2_choice"):
            obj_name = self.mllm.generate_text(choice_prompt).strip().lower()
        background_prompt = prompts.background_prompt(obj_name, cfg.prompt_background_version, expression=expression)
        with clock.stage("p3_video"):
            bg_video = self.mllm.video_pass(key_frames, background_prompt, generate=False)
        with clock.stage("p3_frames"):
            bg_frame = self.mllm.frame_pass(key_frames, background_prompt, generate=False, video_grid_hw=grid_hw)
        with clock.stage("fusion"):
            fused = fuse_maps(
                obj_video.maps, bg_video.maps, obj_frame.maps, bg_frame.maps,
                k_video=cfg.smooth_kernel_video, k_frame=cfg.smooth_kernel_frame, sigma=cfg.smooth_sigma)
        return fused, obj_name, candidates

    def _dense_masks(
        self, frames: Sequence[np.ndarray], key_frames: list[np.ndarray],
        result: GroundingResult, clock: _StageClock,
    ) -> None:
        """SAM2 stage 1 over key frames, scoring and selection, stage 2 over all frames (§7).

        With ``share_sam2_features`` every SAM2 session of this grounding reads one per-frame
        feature cache (each clip frame is encoded at most once); the last frame's features are
        kept for ``start_tracking``.
        """
        assert self.sam2 is not None
        self._stream_seed = None
        if self.config.share_sam2_features:
            clip = self.sam2.clip_features(frames)
            key_frames, frames = clip.view(result.key_frame_indices), clip.view(range(len(frames)))
        with clock.stage("sam2_stage1"):
            tracklets = self._key_frame_tracklets(key_frames, result.fused)
        with clock.stage("tracklet_scoring"):
            self._score_tracklets(tracklets, result.fused)
            kept = select_tracklets(np.array([t.score for t in tracklets], dtype=np.float32),
                                    self.config.track_score_threshold)
        result.tracklets, result.kept = tracklets, [int(i) for i in kept]
        with clock.stage("sam2_propagation"):
            target_masks = self._propagate_kept(frames, [tracklets[i] for i in result.kept], result.key_frame_indices)
        result.target_masks = target_masks
        result.target_scores = np.array([tracklets[i].score for i in result.kept], dtype=np.float32)
        result.masks = target_masks.any(axis=0) if len(target_masks) else result.masks
        if isinstance(frames, FrameView):
            last = len(frames) - 1
            frames.clip.keep_only([last])  # the tracking stream starts on the clip's last frame
            self._stream_seed = frames.subset([last])

    def _key_frame_tracklets(self, key_frames: list[np.ndarray], fused: torch.Tensor) -> list[Tracklet]:
        """§7.3: per key frame, click every cell >= tau_pq, NMS, cross-frame check, propagate."""
        cfg = self.config
        tracklets: list[Tracklet] = []
        for t in range(len(key_frames)):
            points, attention = point_candidates(fused[t], cfg.point_threshold)
            if len(points) == 0:
                continue
            masks, ious = self.sam2.segment_points(key_frames, t, points)
            ious = np.asarray(ious, dtype=np.float32)
            scores = object_score(attention, ious)  # float32, as every decision of §7.3
            kept = [int(i) for i in nms_masks(masks, scores, cfg.nms_iou)]
            keep_new, delete_old = cross_frame_check(
                masks[kept], scores[kept],
                np.array([tr.masks[t] for tr in tracklets]).reshape(-1, *masks.shape[1:]),
                np.array([tr.object_score for tr in tracklets], dtype=np.float32), cfg.nms_iou)
            survivors = [i for i, keep in zip(kept, keep_new) if keep]
            if not survivors:
                continue
            propagated = self.sam2.propagate_masks(key_frames, t, masks[survivors])  # (K', T_k, H, W)
            deleted = set(delete_old)
            tracklets = [tr for j, tr in enumerate(tracklets) if j not in deleted]
            tracklets += [
                Tracklet(masks=propagated[n], origin=t, attention=float(attention[i]), sam_iou=float(ious[i]))
                for n, i in enumerate(survivors)]
        return tracklets

    @staticmethod
    def _score_tracklets(tracklets: list[Tracklet], fused: torch.Tensor) -> None:
        """Fill s_ac and s_trk = (a + s_SAM + s_ac) / 3 (§7.4–§7.5)."""
        if not tracklets:
            return
        consistency = attention_consistency(fused, np.stack([t.masks for t in tracklets]))
        for tracklet, s_ac in zip(tracklets, consistency):
            # float32 values held in Python floats: exact, so the float32 decisions are unchanged
            tracklet.consistency = float(s_ac)
            tracklet.score = float(tracklet_score(tracklet.attention, tracklet.sam_iou, s_ac))

    def _propagate_kept(
        self, frames: Sequence[np.ndarray], kept: list[Tracklet], keys: list[int],
    ) -> np.ndarray:
        """§7.6: each kept tracklet's origin-frame mask re-propagated over every frame, grouped by frame."""
        height, width = frames[0].shape[:2]
        out = np.zeros((len(kept), len(frames), height, width), dtype=bool)
        by_frame: dict[int, list[int]] = {}
        for k, tracklet in enumerate(kept):
            by_frame.setdefault(keys[tracklet.origin], []).append(k)
        for frame_idx, members in sorted(by_frame.items()):
            prompts_masks = np.stack([kept[k].masks[kept[k].origin] for k in members])
            out[members] = self.sam2.propagate_masks(frames, frame_idx, prompts_masks)
        return out

    # ------------------------------------------------------------------ live mode
    def start_tracking(self, frame: np.ndarray, result: GroundingResult) -> int:
        """Open a SAM2 stream on ``frame`` (the clip's last frame) prompted with each target's last mask.

        Returns the number of targets tracked; targets that vanished on the last frame are not tracked.
        """
        if self.sam2 is None:
            raise RuntimeError("tracking needs SAM2, which is not loaded")
        last = result.target_masks[:, -1]  # (K, H, W); K may be 0
        last = last[last.any(axis=(1, 2))]
        seed, self._stream_seed = self._stream_seed, None
        if seed is not None and not np.array_equal(seed[0], frame):
            seed = None  # another frame than the last grounding's last one: encode it afresh
        self.sam2.start_stream(frame, last, features=seed)
        self._stream_open = len(last) > 0
        return int(len(last))

    def track(self, frame: np.ndarray) -> TrackResult:
        """Advance the stream by one frame (no re-reading of earlier frames)."""
        if not self._stream_open or self.sam2 is None:
            raise RuntimeError("no tracking stream is open; call start_tracking after a grounding")
        start = time.perf_counter()
        masks, scores = self.sam2.track(frame)
        return TrackResult(target_masks=masks, scores=np.asarray(scores, dtype=np.float32),
                           timing_s=time.perf_counter() - start)

    def stop_tracking(self) -> None:
        if self.sam2 is not None and self._stream_open:
            self.sam2.stop_stream()
        self._stream_open = False
