"""SAM2 video segmentation through transformers' ``Sam2VideoModel`` (DecAF §7).

Three uses:
- ``segment_points``: one positive click per object hypothesis on one frame (§7.3 steps 1-2);
- ``propagate_masks``: mask prompts on one frame, tracked forward to the end and backward to frame 0
  (§7.3 steps 7-8, §7.6);
- ``start_stream`` / ``track``: frame-by-frame tracking of live images with bounded memory.

Image features once per clip: ``ClipFeatures`` holds the image encoder's output for every frame of one
clip, computed the first time any session asks for it. Pass ``clip.view(indices)`` wherever a frame list
is taken and every session over those frames (clicks, propagations, the tracking stream's first frame)
reads the shared features instead of re-encoding; the masks are the same bits, since each frame's
features are the same encoder call on the same pixels.

Arrays follow the package contract: frames are uint8 RGB ``(H, W, 3)``, masks bool ``(..., H, W)`` at
the frames' own resolution. Object i of a call is SAM2 object id ``100 + i``; outputs keep input order.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ...loading import ModelLoadError, load_errors, pick_device, pick_dtype, resolve_model_source

OBJ_ID_BASE = 100  # the reference numbers its per-point objects 100 + i
FILL_HOLE_AREA = 8  # §7.1: background islands of at most this many low-res pixels become foreground


class Sam2Segmenter:
    """Stateless point/mask segmentation over frame lists, plus one optional streaming tracker."""

    def __init__(
        self, model, processor, device: torch.device, dtype: torch.dtype, name: str = "sam2",
        fill_hole_area: int = FILL_HOLE_AREA,
    ) -> None:
        self.model = model
        self.fill_hole_area = fill_hole_area
        self.processor = processor
        self.device = device
        self.dtype = dtype
        self.name = name
        self._stream = None  # Sam2VideoInferenceSession while a stream is open
        self._stream_hw: tuple[int, int] | None = None
        self._stream_k = 0
        self._stream_next = 0  # index the next streamed frame gets
        self.image_encoder_calls = 0  # forward calls of the image encoder (one per encoded frame)
        model.vision_encoder.register_forward_hook(self._count_encoder_call)

    def _count_encoder_call(self, _module: Any, _inputs: Any, _output: Any) -> None:
        self.image_encoder_calls += 1

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "auto",
    ) -> "Sam2Segmenter":
        """Load a SAM2 video model + processor from a hub id or a local folder.

        ``dtype="auto"`` means float32 on every device: the reference runs SAM2 without autocast (§7.1).
        Raises ModelLoadError naming the model when it cannot be found or loaded.
        """
        from transformers import Sam2VideoModel, Sam2VideoProcessor

        dev = device if isinstance(device, torch.device) else pick_device(device)
        dt = _sam2_dtype(dtype, dev)
        source = resolve_model_source(path_or_id)
        with load_errors(path_or_id):
            try:
                model = Sam2VideoModel.from_pretrained(source, dtype=dt)
                processor = Sam2VideoProcessor.from_pretrained(source)
            except (KeyError, TypeError, AttributeError) as exc:
                # a folder holding some other model type fails with these rather than OSError
                raise ModelLoadError(f"'{path_or_id}' is not a SAM2 video model: {exc}") from exc
        model.to(dev).eval()
        return cls(model, processor, dev, dt, name=str(path_or_id))

    @property
    def image_size(self) -> int:
        """Side of the square input SAM2 resizes every frame to (1024 for the released models)."""
        return int(self.model.config.image_size)

    # ------------------------------------------------------------------ points
    def segment_points(
        self, frames: Sequence[np.ndarray], frame_idx: int, points_xy: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """One positive click per object on ``frames[frame_idx]``.

        points_xy: (K, 2) normalised (x, y) in [0, 1]. Returns masks (K, H, W) bool (logits > 0) and the
        predicted IoU (K,) float32 of the multimask output SAM2 chose (the highest of its 3).
        """
        h, w = _check_frames(frames)
        _check_index(frame_idx, len(frames))
        points = _check_points(points_xy)
        k = len(points)
        if k == 0:
            return np.zeros((0, h, w), bool), np.zeros((0,), np.float32)
        # A point-prompted first conditioning frame uses no memory, so the other frames cannot change
        # its result: preprocess only the prompted frame.
        session = self._video_session(_one_frame(frames, frame_idx))
        pixels = points * np.array([w, h], np.float64)  # the processor rescales pixels to its input size
        self.processor.add_inputs_to_inference_session(
            session,
            frame_idx=0,
            obj_ids=_obj_ids(k),
            input_points=[[[p.tolist()] for p in pixels]],
            input_labels=[[[1] for _ in range(k)]],
        )
        with torch.inference_mode(), _capture_iou(self.model) as ious:
            # the session is thrown away, so the memory encoder's output would never be read
            out = self.model(inference_session=session, frame_idx=0, run_mem_encoder=False)
        masks = self._to_frame_masks(out, k, (h, w))
        # the video forward drops iou_scores; the mask decoder ran per object, in object order
        per_object = torch.cat([iou.reshape(-1, iou.shape[-1]) for iou in ious])
        if len(per_object) != k:
            raise RuntimeError(f"expected {k} mask-decoder IoU rows, got {len(per_object)}")
        best = per_object.max(dim=-1).values
        return masks, best.float().cpu().numpy()

    # ------------------------------------------------------------------ masks
    def propagate_masks(self, frames: Sequence[np.ndarray], frame_idx: int, masks: np.ndarray) -> np.ndarray:
        """Mask prompts (K, H, W) on ``frame_idx``; track forward to the end and backward to frame 0.

        Returns (K, T, H, W) bool. Every frame gets an entry, frame 0 included when frame_idx >= 1.
        """
        h, w = _check_frames(frames)
        _check_index(frame_idx, len(frames))
        masks = _check_masks(masks, (h, w))
        k, t = len(masks), len(frames)
        result = np.zeros((k, t, h, w), bool)
        if k == 0:
            return result
        session = self._video_session(frames)
        self._add_masks(session, frame_idx, masks)
        with torch.inference_mode():
            # the prompts must be consumed on their own frame before propagating
            first = self.model(inference_session=session, frame_idx=frame_idx)
            self._store(result, first, k, (h, w), session)
            for reverse in (False, True):
                if reverse and frame_idx == 0:
                    break
                # Starting at the prompted frame (a cached conditioning output) rather than its neighbour
                # makes reverse tracking reach frame 0 from frame_idx == 1, which stock SAM2 skipped.
                for out in self.model.propagate_in_video_iterator(
                    session, start_frame_idx=frame_idx, reverse=reverse
                ):
                    self._store(result, out, k, (h, w), session)
        return result

    # ------------------------------------------------------------------ streaming
    def start_stream(self, frame: np.ndarray, masks: np.ndarray, features: "FrameView | None" = None) -> None:
        """Open a streaming session prompted with ``masks`` (K, H, W) on ``frame``; closes any open one.

        ``features``: a one-frame view of a ``ClipFeatures`` holding ``frame`` (the grounding's last
        frame): its image features are reused instead of encoding the frame again.
        """
        self.stop_stream()
        h, w = _check_frames([frame])
        masks = _check_masks(masks, (h, w))
        self._stream_hw, self._stream_k, self._stream_next = (h, w), len(masks), 1
        self._stream = self.processor.init_video_session(inference_device=self.device, dtype=self.dtype)
        self._stream.video_height, self._stream.video_width = h, w
        if len(masks) == 0:
            return  # nothing to track: track() answers empty arrays without running the model
        self._add_masks(self._stream, 0, masks)
        if features is not None:
            if len(features) != 1 or not np.array_equal(features[0], frame):
                raise ValueError("start_stream features must be a one-frame view of this very frame")
            cached = features.cached(0)
            if cached is not None:
                self._stream.cache.cache_vision_features(0, cached)
        with torch.inference_mode():
            self.model(inference_session=self._stream, frame=self._pixels(frame), frame_idx=0)
        self._prune_stream(0)

    def track(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Track the prompted objects into the next frame only.

        Returns masks (K, H, W) bool and object scores (K,) = sigmoid(object_score_logits) in [0, 1].
        """
        if self._stream is None:
            raise RuntimeError("track() needs start_stream() first")
        h, w = _check_frames([frame])
        if (h, w) != self._stream_hw:
            raise ValueError(f"frame size {(h, w)} differs from the stream's {self._stream_hw}")
        k = self._stream_k
        if k == 0:
            return np.zeros((0, h, w), bool), np.zeros((0,), np.float32)
        idx = self._stream_next
        self._stream_next += 1
        with torch.inference_mode():
            # frame_idx is explicit: the session would number frames by how many it holds, which
            # pruning keeps small
            out = self.model(inference_session=self._stream, frame=self._pixels(frame), frame_idx=idx)
            masks = self._to_frame_masks(out, k, (h, w))
            scores = torch.sigmoid(_ordered(out.object_score_logits.reshape(-1), out.object_ids, k).float())
        self._prune_stream(idx)
        return masks, scores.cpu().numpy()

    def stop_stream(self) -> None:
        """Drop the streaming session and everything it holds."""
        self._stream = None
        self._stream_hw, self._stream_k, self._stream_next = None, 0, 0

    @property
    def streaming(self) -> bool:
        return self._stream is not None

    def stream_state_size(self) -> dict[str, int]:
        """How much the open stream holds: frames kept, and the largest per-object output history."""
        s = self._stream
        if s is None:
            return {"frames": 0, "outputs": 0, "tracked": 0}
        stored = [
            len(o["cond_frame_outputs"]) + len(o["non_cond_frame_outputs"]) for o in s.output_dict_per_obj.values()
        ]
        return {
            "frames": len(s.processed_frames or {}),
            "outputs": max(stored, default=0),
            "tracked": max((len(v) for v in s.frames_tracked_per_obj.values()), default=0),
        }

    # ------------------------------------------------------------------ shared features
    def clip_features(self, frames: Sequence[np.ndarray]) -> "ClipFeatures":
        """An empty image-feature cache for the clip ``frames`` (filled as sessions need frames)."""
        _check_frames(frames)
        return ClipFeatures(self, frames)

    def frame_pixels(self, frame: np.ndarray) -> torch.Tensor:
        """(3, S, S) input pixels of one frame, exactly as a video session preprocesses it."""
        video = self.processor.video_processor(videos=frame[None], device=self.device, return_tensors="pt")
        return video.pixel_values_videos[0][0].to(self.device, dtype=self.dtype)

    # ------------------------------------------------------------------ internals
    def _video_session(self, frames: Sequence[np.ndarray]):
        if isinstance(frames, FrameView):
            session = self.processor.init_video_session(inference_device=self.device, dtype=self.dtype)
            session.video_height, session.video_width = frames[0].shape[:2]
            # pixels are only made for frames whose features are not shared yet
            session.processed_frames = _LazyPixels(frames)
            session.cache = _SharedFeatureCache(frames, self.device)
            return session
        return self.processor.init_video_session(
            video=np.stack(frames), inference_device=self.device, dtype=self.dtype
        )

    def _pixels(self, frame: np.ndarray) -> torch.Tensor:
        inputs = self.processor(images=frame, device=self.device, return_tensors="pt")
        return inputs.pixel_values[0]

    def _add_masks(self, session, frame_idx: int, masks: np.ndarray) -> None:
        self.processor.add_inputs_to_inference_session(
            session,
            frame_idx=frame_idx,
            obj_ids=_obj_ids(len(masks)),
            input_masks=[torch.from_numpy(m) for m in masks],
        )

    def _to_frame_masks(self, out, k: int, hw: tuple[int, int]) -> np.ndarray:
        # Upsample the low-res logits straight to the frame size, as the reference does, then logits > 0
        # (= sigmoid > 0.5).
        logits = fill_small_holes(_ordered(out.pred_masks, out.object_ids, k).float(), self.fill_hole_area)
        full = F.interpolate(logits, size=hw, mode="bilinear", align_corners=False)
        return (full[:, 0] > 0).cpu().numpy()

    def _store(self, result: np.ndarray, out, k: int, hw: tuple[int, int], session) -> None:
        result[:, out.frame_idx] = self._to_frame_masks(out, k, hw)
        _drop_high_res(session, out.frame_idx)

    def _prune_stream(self, idx: int) -> None:
        """Keep only what SAM2 reads for the next frames.

        transformers' session keeps every streamed frame's pixels and every frame's outputs forever.
        The next frame reads: memory features of the last num_maskmem - 1 tracked frames, object pointers
        of the last max_object_pointers_in_encoder - 1 tracked frames, and the conditioning frame(s).
        Everything older is dropped; past pixels are never re-read in streaming.
        """
        s = self._stream
        cfg = self.model.config
        mem_keep = max(cfg.num_maskmem - 1, 0)
        ptr_keep = max(cfg.max_object_pointers_in_encoder - 1, mem_keep)
        for f in [f for f in s.processed_frames or {} if f != idx]:
            del s.processed_frames[f]
        _drop_high_res(s, idx)
        for obj_idx, outputs in s.output_dict_per_obj.items():
            past = outputs["non_cond_frame_outputs"]
            for f in [f for f in past if f <= idx - ptr_keep]:
                del past[f]
            for f in [f for f in past if f <= idx - mem_keep]:
                # only the object pointer is still read from these frames
                past[f] = {"object_pointer": past[f]["object_pointer"]}
            tracked = s.frames_tracked_per_obj[obj_idx]
            for f in [f for f in tracked if f <= idx - ptr_keep]:
                del tracked[f]


class ClipFeatures:
    """SAM2 image features of one clip's frames, each computed at most once and shared by every session.

    The model's own session code computes a frame's features (``_prepare_vision_features``: image
    encoder + the mask decoder's level-0/1 projections) when its cache misses and stores them; a
    session built on a ``view`` of this object reads and writes here instead of in its own
    one-frame cache. Memory: one frame's features (about 17 MB at 1024 px; the positional
    encodings, equal for every frame, are stored once) times the frames encoded so far.
    """

    def __init__(self, segmenter: Sam2Segmenter, frames: Sequence[np.ndarray]) -> None:
        self.segmenter = segmenter
        self.frames = list(frames)
        self._features: dict[int, dict[str, Any]] = {}
        self._pos_embeds: list[torch.Tensor] | None = None

    def view(self, indices: Sequence[int]) -> "FrameView":
        """The frames ``indices`` of the clip, as a frame list whose sessions share these features."""
        return FrameView(self, [int(i) for i in indices])

    def cached(self, index: int) -> dict[str, Any] | None:
        return self._features.get(index)

    def store(self, index: int, features: dict[str, Any]) -> None:
        pos = list(features["vision_pos_embeds"])
        if self._pos_embeds is None:
            self._pos_embeds = pos
        elif len(pos) == len(self._pos_embeds) and all(torch.equal(a, b) for a, b in zip(pos, self._pos_embeds)):
            pos = self._pos_embeds  # a sine encoding of the feature size: one copy serves every frame
        self._features[index] = {**features, "vision_pos_embeds": pos}

    def keep_only(self, indices: Sequence[int]) -> None:
        """Free every frame's features but those of ``indices``."""
        keep = set(indices)
        self._features = {i: f for i, f in self._features.items() if i in keep}

    @property
    def encoded_frames(self) -> list[int]:
        return sorted(self._features)


class FrameView(Sequence):
    """Frames ``indices`` of a ``ClipFeatures`` clip: a frame list (uint8 RGB arrays) that SAM2 sessions
    of ``Sam2Segmenter`` recognise and serve from the shared features."""

    def __init__(self, clip: ClipFeatures, indices: list[int]) -> None:
        if any(not 0 <= i < len(clip.frames) for i in indices):
            raise ValueError(f"frame indices {indices} outside the clip's 0..{len(clip.frames) - 1}")
        self.clip = clip
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return FrameView(self.clip, self.indices[i])
        return self.clip.frames[self.indices[i]]

    def subset(self, positions: Sequence[int]) -> "FrameView":
        """A view of some of this view's frames (positions into this view)."""
        return FrameView(self.clip, [self.indices[p] for p in positions])

    def cached(self, position: int) -> dict[str, Any] | None:
        return self.clip.cached(self.indices[position])


class _SharedFeatureCache:
    """A session's feature cache (``Sam2VideoInferenceCache``'s interface) backed by a ``ClipFeatures``.

    Session frame i is clip frame ``view.indices[i]``. Features live on the inference device already,
    so no device moves happen here; ``clear_all`` (a session reset) leaves the shared features alone.
    """

    def __init__(self, view: FrameView, device: torch.device) -> None:
        self._view = view
        self.inference_device = device

    def get_vision_features(self, frame_idx: int) -> dict[str, Any] | None:
        return self._view.cached(frame_idx)

    def cache_vision_features(self, frame_idx: int, features: dict[str, Any]) -> None:
        self._view.clip.store(self._view.indices[frame_idx], features)

    def clear_all(self) -> None:
        pass


class _LazyPixels(Mapping):
    """A session's ``processed_frames``: frame i's pixels are made when the session asks for them,
    which it does only when frame i's features are not shared yet."""

    def __init__(self, view: FrameView) -> None:
        self._view = view

    def __getitem__(self, frame_idx: int) -> torch.Tensor:
        return self._view.clip.segmenter.frame_pixels(self._view[frame_idx])

    def __len__(self) -> int:
        return len(self._view)

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self._view)))


def _one_frame(frames: Sequence[np.ndarray], frame_idx: int) -> Sequence[np.ndarray]:
    """The session frame list holding only ``frames[frame_idx]`` (a view stays a view)."""
    if isinstance(frames, FrameView):
        return frames.subset([frame_idx])
    return [frames[frame_idx]]


class _capture_iou:
    """Collects the mask decoder's predicted IoUs (already sigmoid) for each decoder call."""

    def __init__(self, model) -> None:
        self._decoder = model.mask_decoder
        self._handle = None
        self.values: list[torch.Tensor] = []

    def __enter__(self) -> list[torch.Tensor]:
        self._handle = self._decoder.register_forward_hook(lambda _m, _i, out: self.values.append(out[1]))
        return self.values

    def __exit__(self, *exc) -> None:
        self._handle.remove()


def fill_small_holes(logits: torch.Tensor, max_area: int) -> torch.Tensor:
    """Turn background islands (8-connected, logits <= 0) of at most ``max_area`` pixels into foreground.

    logits: (K, 1, h, w) low-resolution mask logits. Filled pixels get a small positive logit (0.1), as
    SAM2's own video predictor does with ``fill_hole_area``; transformers' port does not apply it. The
    image border counts like any other pixel, so a small background corner region is filled too.
    """
    if max_area <= 0 or logits.numel() == 0:
        return logits
    out = logits.clone()
    background = (logits[:, 0] <= 0).cpu().numpy().astype(np.uint8)  # (K, h, w)
    for k, plane in enumerate(background):
        count, labels, stats, _ = cv2.connectedComponentsWithStats(plane, connectivity=8)
        small = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] <= max_area]
        if small:
            hole = torch.from_numpy(np.isin(labels, small)).to(out.device)
            out[k, 0][hole] = 0.1
    return out


def _sam2_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.float32  # §7.1: no autocast, fp32 everywhere (the MLLM's "auto" would pick bf16)
    return pick_dtype(dtype, device)


def _obj_ids(k: int) -> list[int]:
    return [OBJ_ID_BASE + i for i in range(k)]


def _ordered(values: torch.Tensor, object_ids: list[int], k: int) -> torch.Tensor:
    """Rows of ``values`` in input order (object id 100 + i at row i)."""
    order = [object_ids.index(OBJ_ID_BASE + i) for i in range(k)]
    if order == list(range(k)):
        return values
    return values[torch.tensor(order, device=values.device)]


def _drop_high_res(session, frame_idx: int) -> None:
    # Full-resolution (image_size^2 fp32) masks are only needed inside the forward that made them;
    # the session would otherwise keep 4 MB per object per frame at 1024 px.
    for outputs in session.output_dict_per_obj.values():
        for kind in ("cond_frame_outputs", "non_cond_frame_outputs"):
            stored = outputs[kind].get(frame_idx)
            if stored is not None:
                stored.pop("high_res_masks", None)


def _check_frames(frames: Sequence[np.ndarray]) -> tuple[int, int]:
    """All frames must be (H, W, 3) uint8 of one size; returns (H, W)."""
    if len(frames) == 0:
        raise ValueError("no frames given")
    shapes = {np.shape(f) for f in frames}
    if len(shapes) > 1:
        raise ValueError(f"frames have mixed sizes {sorted(shapes)}; SAM2 needs one size per video")
    shape = shapes.pop()
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"frames must be (H, W, 3) RGB, got {shape}")
    if any(np.asarray(f).dtype != np.uint8 for f in frames):
        raise ValueError("frames must be uint8")
    return int(shape[0]), int(shape[1])


def _check_index(frame_idx: int, n: int) -> None:
    if not 0 <= frame_idx < n:
        raise ValueError(f"frame_idx {frame_idx} outside 0..{n - 1}")


def _check_points(points_xy: np.ndarray) -> np.ndarray:
    points = np.asarray(points_xy, np.float64).reshape(-1, 2) if np.size(points_xy) else np.zeros((0, 2))
    if np.any(points < 0) or np.any(points > 1):
        raise ValueError("points_xy must be normalised (x, y) in [0, 1]")
    return points


def _check_masks(masks: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.size == 0 and masks.ndim in (1, 3):
        return np.zeros((0, *hw), bool)
    if masks.ndim != 3 or masks.shape[1:] != hw:
        raise ValueError(f"masks must be (K, {hw[0]}, {hw[1]}), got {masks.shape}")
    return masks.astype(bool, copy=False)
