"""``decaf_node``: language goal in, masks / targets / 3D centroids out.

Threading model (why it looks like this):
* executor callbacks (image, depth, camera_info, goal, status timer) only convert and store; they take
  short locks and never wait for inference, so a slow model can never back up the camera;
* one worker thread owns the pipeline: loads the models, grounds a goal on a snapshot of the clip,
  then tracks the newest frame each time new frames arrive (stale ones are skipped);
* goals are "latest wins": a new goal bumps ``goal_id`` and sets the running grounding's cancel Event;
  whatever the old run returns is discarded because its goal id is no longer current.
Frames arrive into a bounded ring (oldest evicted, evictions counted), so memory stays flat.
"""
from __future__ import annotations

import collections
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy, DurabilityPolicy, qos_profile_sensor_data
from geometry_msgs.msg import PointStamped
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header, String
from visualization_msgs.msg import MarkerArray

from decaf_ros.core.frames import FrameRing
from decaf_ros.core.geometry import centroid_3d
from decaf_ros.core.overlay import draw_overlay
from decaf_ros.msg import Status, TargetArray
from decaf_ros.ros import params as ros_params
from decaf_ros.ros.image_conversion import ImageConversionError, array_to_image, image_to_depth_m, image_to_rgb
from decaf_ros.ros.messages import (STATE_NAMES, TargetInfo, centroid_msg, clear_markers_msg, markers_msg,
                                    target_array_msg)
from decaf_ros.ros.params import DYNAMIC_CORE_FIELDS, NodeParams
from decaf_ros.ros.spin import spin_node

RELIABLE_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
# Results: reliable, shallow (a late subscriber wants the newest result, not a backlog).
RESULT_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
# Status: transient local so `ros2 topic echo` started later still sees the current state.
STATUS_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)
STOP_WORDS = ("stop",)
LOG_THROTTLE_S = 5.0
MAX_LABEL_CHARS = 48  # the model's object name is free text; keep overlays and markers readable

PipelineFactory = Callable[[NodeParams], Any]
DepthPair = tuple["np.ndarray | None", "np.ndarray | None", str]  # depth metres, K, reason when None


@dataclass(frozen=True)
class CameraFrame:
    """One buffered color frame with the header it arrived with."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    header: Header
    seq: int  # arrival number, 1-based

    @property
    def stamp_ns(self) -> int:
        return stamp_to_ns(self.header)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])


@dataclass(frozen=True)
class Goal:
    goal_id: int
    text: str
    received: float  # time.monotonic()


def stamp_to_ns(header: Header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def _qos(choice: str) -> QoSProfile:
    return qos_profile_sensor_data if choice == "sensor_data" else RELIABLE_QOS


def clean_goal_text(raw: str) -> str:
    """Drop control / non-printable characters and collapse whitespace."""
    printable = "".join(ch if ch.isprintable() else " " for ch in raw)
    return " ".join(printable.split())


class DecafNode(Node):
    """Thin ROS 2 shell around a DecAF pipeline (the pipeline holds all model logic)."""

    def __init__(self, pipeline_factory: PipelineFactory | None = None, node_name: str = "decaf",
                 **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        ros_params.declare_parameters(self)
        self._params = ros_params.load_params(self)  # invalid startup values: fail fast, with the reason
        self.add_on_set_parameters_callback(ros_params.make_set_callback(self))
        self.add_post_set_parameters_callback(self._on_params_set)
        self._factory = pipeline_factory or self._default_factory

        self._init_state()
        self._init_io()
        self._worker = threading.Thread(target=self._worker_main, name="decaf_worker", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------ setup
    def _init_state(self) -> None:
        p = self._params
        self._ring = FrameRing(p.clip_length)
        self._cond = threading.Condition()  # guards goal / frame counters below; never held during inference
        self._publish_lock = threading.RLock()  # makes "is this goal still current?" + publish atomic
        self._stop = False
        self._frame_seq = 0
        self._goal: Goal | None = None
        self._goal_counter = 0
        self._needs_grounding = False
        self._cancel = threading.Event()
        self._tracking = False
        self._tracked_seq = 0
        self._reground_at: float | None = None
        self._label = ""
        self._track_size: tuple[int, int] | None = None
        self._pipeline: Any = None
        self._load_error = ""
        self._changed_core: set[str] = set()  # parameter names changed after start-up
        self._models = (self._params.core.mllm, self._params.core.sam2)  # configured until loaded
        self._last_goal: Goal | None = None  # for status after a clear
        self._model_warning = ""

        self._status_lock = threading.Lock()
        self._state = Status.LOADING
        self._last_error = ""
        self._grounding_ms = 0.0
        self._tracking_ms = 0.0
        self._frames_skipped = 0  # new frames the tracker never looked at (it was busy)
        self._conversion_errors = 0
        self.image_callback_durations: collections.deque[float] = collections.deque(maxlen=1000)

        self._depth_lock = threading.Lock()
        self._depth_msgs: collections.deque[Image] = collections.deque(maxlen=p.depth_buffer_size)
        self._camera_info: CameraInfo | None = None

    def _init_io(self) -> None:
        p = self._params
        self._image_sub = self.create_subscription(Image, p.image_topic, self._on_image, _qos(p.image_qos))
        self._depth_sub = (self.create_subscription(Image, p.depth_topic, self._on_depth, _qos(p.depth_qos))
                           if p.depth_topic else None)
        self._info_sub = (self.create_subscription(CameraInfo, p.camera_info_topic, self._on_camera_info,
                                                   _qos(p.camera_info_qos)) if p.camera_info_topic else None)
        self._goal_sub = self.create_subscription(String, p.goal_topic, self._on_goal, RELIABLE_QOS)
        self._mask_pub = self.create_publisher(Image, "~/mask", RESULT_QOS)
        self._overlay_pub = self.create_publisher(Image, "~/overlay", RESULT_QOS)
        self._targets_pub = self.create_publisher(TargetArray, "~/targets", RESULT_QOS)
        self._centroid_pub = self.create_publisher(PointStamped, "~/centroid", RESULT_QOS)
        self._markers_pub = self.create_publisher(MarkerArray, "~/markers", RESULT_QOS)
        self._status_pub = self.create_publisher(Status, "~/status", STATUS_QOS)
        self._status_timer = self.create_timer(1.0 / p.status_rate_hz, self.publish_status)

    def _default_factory(self, params: NodeParams) -> Any:
        from decaf_ros.core.pipeline import load_pipeline  # heavy (torch/transformers): only when used

        pipeline, warning = load_pipeline(params.core, allow_tiny_fallback=params.fallback_to_tiny_models)
        if warning:
            self.get_logger().warning(warning)
            self._model_warning = warning
        return pipeline

    def _on_params_set(self, parameters: list[Any]) -> None:
        # Already validated by the on-set callback; read-only ones (topics, models, ring) cannot change.
        self._params = ros_params.load_params(self)
        self._changed_core.update(p.name for p in parameters)

    # ------------------------------------------------------------------ properties for tests / tools
    @property
    def params(self) -> NodeParams:
        return self._params

    @property
    def ring(self) -> FrameRing:
        return self._ring

    @property
    def state(self) -> int:
        return self._state

    @property
    def frames_received(self) -> int:
        return self._frame_seq

    @property
    def image_topic(self) -> str:
        return self._image_sub.topic_name

    # ------------------------------------------------------------------ callbacks (executor threads)
    def _on_image(self, msg: Image) -> None:
        """Convert and push; O(1) in the number of buffered frames and never waits on inference."""
        start = time.perf_counter()
        try:
            rgb = image_to_rgb(msg)
        except ImageConversionError as exc:
            self._conversion_errors += 1
            self._report_input_error(f"dropped image on {self.image_topic}: {exc}")
            return
        with self._cond:
            self._frame_seq += 1
            frame = CameraFrame(image=rgb, header=msg.header, seq=self._frame_seq)
            self._ring.push(frame.stamp_ns / 1e9, frame)
            self._cond.notify_all()
        self.image_callback_durations.append(time.perf_counter() - start)

    def _on_depth(self, msg: Image) -> None:
        with self._depth_lock:  # bounded deque: the oldest depth image falls out
            self._depth_msgs.append(msg)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg  # one reference swap; readers take their own reference

    def _on_goal(self, msg: String) -> None:
        text = clean_goal_text(msg.data)
        if not msg.data.strip() or text.lower() in STOP_WORDS:
            self._clear_goal()  # control characters alone are not "empty": they are rejected below
            return
        if len(text) > self._params.max_goal_length:
            self._reject_goal(f"goal rejected: {len(text)} characters, max_goal_length is "
                              f"{self._params.max_goal_length}")
            return
        if not any(ch.isalnum() for ch in text):
            self._reject_goal(f"goal rejected: no letters or digits in {msg.data[:40]!r}")
            return
        self._set_goal(text)

    # ------------------------------------------------------------------ goal bookkeeping
    def _set_goal(self, text: str) -> None:
        with self._cond:
            self._goal_counter += 1
            goal = Goal(self._goal_counter, text, time.monotonic())
            self._cancel.set()  # the running grounding (if any) stops at its next stage
            self._goal, self._needs_grounding, self._tracking = goal, True, False
            self._last_goal = goal
            no_frames = self._frame_seq == 0
            with self._status_lock:  # before the worker can see the goal, so its errors are not overwritten
                self._last_error = self._no_frames_message() if no_frames else ""
            self._cond.notify_all()
        self.get_logger().info(f"goal {goal.goal_id}: {text!r}")
        self.publish_status()  # acknowledges the new goal id

    def _no_frames_message(self) -> str:
        return f"no frames received yet on {self.image_topic}; goal pending"

    def _clear_goal(self) -> None:
        with self._cond:
            self._cancel.set()  # with _goal = None, whatever the worker computes is no longer current
            self._goal, self._needs_grounding, self._tracking = None, False, False
            self._cond.notify_all()
        self.get_logger().info("goal cleared")
        with self._publish_lock:
            if not self._stop:
                self._publish_clear()
        self._set_state(Status.IDLE, error="")

    def _reject_goal(self, reason: str) -> None:
        self.get_logger().warning(reason)
        with self._status_lock:
            self._last_error = reason
        self.publish_status()

    def _is_current(self, goal: Goal) -> bool:
        return self._goal is not None and self._goal.goal_id == goal.goal_id and not self._stop

    def _drop_goal(self, goal: Goal, error: str) -> None:
        """End a goal on an error: the worker goes idle and waits for the next goal."""
        with self._cond:
            if self._is_current(goal):
                self._goal, self._needs_grounding, self._tracking = None, False, False
        self._set_state(Status.ERROR, error=error)

    # ------------------------------------------------------------------ status
    def _set_state(self, state: int, error: str | None = None) -> None:
        with self._status_lock:
            changed = state != self._state or (error is not None and error != self._last_error)
            self._state = state
            if error is not None:
                self._last_error = error
        if changed:
            self.publish_status()

    def _report_input_error(self, message: str) -> None:
        """Bad input data: throttled log + status error, never an exception in the executor."""
        self.get_logger().error(message, throttle_duration_sec=LOG_THROTTLE_S)
        with self._status_lock:
            changed = message != self._last_error
            self._last_error = message
        if changed:
            self.publish_status()

    def status_msg(self) -> Status:
        goal, last = self._goal, self._last_goal
        with self._status_lock:
            msg = Status(state=self._state, state_name=STATE_NAMES[self._state], last_error=self._last_error,
                         grounding_latency_ms=float(self._grounding_ms),
                         tracking_latency_ms=float(self._tracking_ms if self._state == Status.TRACKING else 0.0))
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.goal_id = last.goal_id if last is not None else 0
        msg.goal = goal.text if goal is not None else ""
        msg.frames_buffered = len(self._ring)
        msg.frames_dropped = int(self._ring.dropped + self._frames_skipped)
        msg.mllm_model, msg.sam2_model = self._models
        return msg

    def publish_status(self) -> None:
        if self._stop:
            return
        try:
            self._status_pub.publish(self.status_msg())
        except Exception as exc:  # noqa: BLE001 - the context may be shutting down
            self.get_logger().debug(f"status not published: {exc}")

    # ------------------------------------------------------------------ worker
    def _worker_main(self) -> None:
        self._load_pipeline()
        while True:
            job = self._next_job()
            if job is None:
                return
            kind, goal, cancel = job
            try:
                if kind == "ground":
                    self._ground(goal, cancel)
                else:
                    self._track(goal)
            except Exception as exc:  # noqa: BLE001 - any inference failure must leave the node serving
                self._inference_failed(goal, exc)

    def _load_pipeline(self) -> bool:
        self._set_state(Status.LOADING)
        try:
            self._pipeline = self._factory(self._params)
        except Exception as exc:  # noqa: BLE001 - ModelLoadError or anything the loader raises
            self._pipeline, self._load_error = None, f"{type(exc).__name__}: {exc}"
            self.get_logger().error(f"model loading failed: {exc}\n{traceback.format_exc()}")
            self._set_state(Status.ERROR, error=f"models not loaded: {exc}")
            return False
        # The pipeline's own config names what was really loaded (differs with the tiny fallback).
        config = getattr(self._pipeline, "config", None)
        self._models = (str(getattr(config, "mllm", self._params.core.mllm)),
                        str(getattr(config, "sam2", self._params.core.sam2)))
        self.get_logger().info(f"models loaded: {self._models[0]}, {self._models[1]}")
        # A goal that arrived during loading keeps its "no frames yet" report unless there is a model warning.
        with self._cond:
            waiting = self._goal is not None and self._frame_seq == 0
        error = self._model_warning or (self._no_frames_message() if waiting else "")
        self._set_state(Status.IDLE, error=error)
        return True

    def _next_job(self) -> tuple[str, Goal, threading.Event] | None:
        """Block until there is something to do: a grounding, a tracking step, or stop (None)."""
        with self._cond:
            while not self._stop:
                timeout = self._due_job_or_timeout()
                if isinstance(timeout, tuple):
                    return timeout
                self._cond.wait(timeout=timeout)
        return None

    def _due_job_or_timeout(self) -> tuple[str, Goal, threading.Event] | float | None:
        """Called with the condition held: a job to run now, or how long to wait (None = until notified)."""
        goal, p, now = self._goal, self._params, time.monotonic()
        if goal is None:
            return None
        if self._needs_grounding:
            if self._frame_seq == 0:
                return self._pending_goal_timeout(goal, now)
            self._needs_grounding, self._tracking = False, False
            self._cancel = threading.Event()
            return ("ground", goal, self._cancel)
        # The re-grounding deadline is checked before tracking: with a steady stream there is always
        # a new frame to track, which would otherwise starve the periodic re-grounding.
        if self._reground_at is not None and now >= self._reground_at:
            self._reground_at, self._needs_grounding = None, True
            return 0.0
        if self._tracking and self._frame_seq - self._tracked_seq >= p.track_every_n_frames:
            return ("track", goal, self._cancel)
        return None if self._reground_at is None else self._reground_at - now

    def _pending_goal_timeout(self, goal: Goal, now: float) -> float | None:
        wait_s = self._params.goal_wait_for_frames_s
        if wait_s <= 0:
            return None  # wait for frames forever
        if now - goal.received < wait_s:
            return goal.received + wait_s - now
        self._goal, self._needs_grounding = None, False
        message = f"goal {goal.goal_id} dropped: no frames received on {self.image_topic} within {wait_s:g} s"
        self.get_logger().error(message)
        self._set_state(Status.ERROR, error=message)
        return None

    def _inference_failed(self, goal: Goal, exc: BaseException) -> None:
        from decaf_ros.core.loading import ModelLoadError

        self.get_logger().error(f"inference failed for goal {goal.goal_id} ({goal.text!r}): {exc}\n"
                                f"{traceback.format_exc()}")
        if isinstance(exc, ModelLoadError):
            self._pipeline = None  # reload on the next goal
        self._stop_tracking()
        self._drop_goal(goal, f"{type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ grounding
    def _ground(self, goal: Goal, cancel: threading.Event) -> None:
        if self._pipeline is None and not self._load_pipeline():
            self._drop_goal(goal, f"models not loaded: {self._load_error}")
            return
        self._stop_tracking()
        self._apply_dynamic_core()
        frames = self._clip_frames()
        # Pair depth now: after a long grounding the clip's last depth image has left the small buffer.
        depth = self._depth_for(frames[-1])
        self._set_state(Status.GROUNDING, error="")
        start = time.perf_counter()
        result = self._run_grounding(frames, goal, cancel)
        if result is None or not self._is_current(goal) or cancel.is_set():
            self.get_logger().info(f"goal {goal.goal_id}: grounding result discarded (superseded)")
            return
        self._grounding_ms = 1000.0 * (time.perf_counter() - start)
        last = frames[-1]
        self._label = clean_goal_text(getattr(result, "obj_name", "") or goal.text)[:MAX_LABEL_CHARS]
        scores = np.asarray(result.target_scores, dtype=np.float32)
        masks = np.asarray(result.target_masks)[:, -1] if result.target_masks.shape[0] else \
            np.zeros((0, *last.size), dtype=bool)
        self.get_logger().info(f"goal {goal.goal_id}: {len(scores)} target(s) '{self._label}' in "
                               f"{self._grounding_ms:.0f} ms on {len(frames)} frames")
        if not self._publish_if_current(goal, last, masks, scores, depth):
            return
        self._after_grounding(goal, last, result, len(scores))

    def _run_grounding(self, frames: list[CameraFrame], goal: Goal, cancel: threading.Event) -> Any:
        from decaf_ros.core.pipeline import GroundingCancelled

        def progress(stage: str) -> None:
            self.get_logger().debug(f"goal {goal.goal_id}: {stage}")

        try:
            return self._pipeline.ground([f.image for f in frames], goal.text, cancel=cancel, progress=progress)
        except GroundingCancelled:
            return None

    def _after_grounding(self, goal: Goal, last: CameraFrame, result: Any, num_targets: int) -> None:
        p = self._params
        tracked = 0
        if p.track and num_targets:
            tracked = int(self._pipeline.start_tracking(last.image, result) or 0)
        with self._cond:
            if not self._is_current(goal):
                return
            self._tracking = tracked > 0
            self._tracked_seq = last.seq
            self._track_size = last.size
            self._reground_at = time.monotonic() + p.regrounding_period_s if p.regrounding_period_s > 0 else None
            self._cond.notify_all()
        self._set_state(Status.TRACKING if self._tracking else Status.IDLE)

    def _clip_frames(self) -> list[CameraFrame]:
        """The clip to ground on: a strided snapshot, restricted to the newest frame's size."""
        frames: list[CameraFrame] = [item.frame for item in self._ring.snapshot(self._params.frame_stride)]
        newest = frames[-1].size
        same = [f for f in frames if f.size == newest]
        if len(same) < len(frames):
            self.get_logger().warning(
                f"clip has mixed resolutions (camera reconfigured?): using the {len(same)} of {len(frames)} "
                f"frames that match the newest {newest[1]}x{newest[0]}", throttle_duration_sec=LOG_THROTTLE_S)
        return same

    def _apply_dynamic_core(self) -> None:
        """Thresholds and key-frame count may change at run time; hand them to the pipeline's config."""
        config = getattr(self._pipeline, "config", None)
        if config is None or not hasattr(config, "with_overrides"):
            return
        core = self._params.core
        # Only values set at run time: the pipeline may have been loaded with other settings on purpose
        # (the tiny-model fallback reduces the key-frame count).
        overrides = {n: getattr(core, n) for n in DYNAMIC_CORE_FIELDS
                     if n in self._changed_core and getattr(config, n) != getattr(core, n)}
        if overrides:
            self._pipeline.config = config.with_overrides(**overrides)

    # ------------------------------------------------------------------ tracking
    def _track(self, goal: Goal) -> None:
        item = self._ring.latest()
        if item is None:
            return
        frame: CameraFrame = item.frame
        with self._cond:
            self._frames_skipped += max(0, frame.seq - self._tracked_seq - 1)
            self._tracked_seq = frame.seq
        if frame.size != self._track_size:
            self.get_logger().warning(f"image size changed to {frame.size[1]}x{frame.size[0]}; re-grounding")
            self._request_reground(goal)
            return
        result = self._pipeline.track(frame.image)
        self._tracking_ms = 1000.0 * float(getattr(result, "timing_s", 0.0))
        scores = np.asarray(result.scores, dtype=np.float32)
        if not self._publish_if_current(goal, frame, np.asarray(result.target_masks), scores):
            return
        best = float(scores.max()) if scores.size else 0.0
        if best < self._params.min_track_score:
            self.get_logger().info(f"goal {goal.goal_id}: tracking score {best:.2f} < "
                                   f"{self._params.min_track_score:.2f}; re-grounding")
            self._request_reground(goal)

    def _request_reground(self, goal: Goal) -> None:
        with self._cond:
            if self._is_current(goal):
                self._tracking, self._needs_grounding = False, True
                self._cond.notify_all()

    def _stop_tracking(self) -> None:
        stop = getattr(self._pipeline, "stop_tracking", None)
        if stop is not None:
            try:
                stop()
            except Exception as exc:  # noqa: BLE001 - closing a stream must not mask the real error
                self.get_logger().warning(f"stop_tracking failed: {exc}")

    # ------------------------------------------------------------------ publishing
    def _publish_if_current(self, goal: Goal, frame: CameraFrame, masks: np.ndarray, scores: np.ndarray,
                            depth: DepthPair | None = None) -> bool:
        """Compute per-target info, then publish everything atomically unless the goal was replaced."""
        if depth is None or depth[0] is None:
            depth = self._depth_for(frame)
        targets = self._target_infos(masks, scores, depth)
        with self._publish_lock:
            if not self._is_current(goal):
                return False
            self._publish_results(goal, frame, masks, targets)
        return True

    def _publish_results(self, goal: Goal, frame: CameraFrame, masks: np.ndarray,
                         targets: list[TargetInfo]) -> None:
        p, header = self._params, frame.header
        union = masks.any(axis=0) if len(masks) else np.zeros(frame.size, dtype=bool)
        self._mask_pub.publish(array_to_image(union, "mono8", header))
        if p.publish_overlay:
            labels = [f"{self._label} {t.score:.2f}" for t in targets]
            overlay = draw_overlay(frame.image, masks.astype(bool), labels, alpha=p.overlay_alpha)
            self._overlay_pub.publish(array_to_image(overlay, "rgb8", header))
        self._targets_pub.publish(target_array_msg(targets, header, goal.goal_id, goal.text, self._label))
        point = centroid_msg(targets, header)
        if point is not None:
            self._centroid_pub.publish(point)
        self._markers_pub.publish(markers_msg(targets, header, self._label, p.marker_scale_m))

    def _publish_clear(self) -> None:
        header = Header(frame_id=self._last_frame_id())
        header.stamp = self.get_clock().now().to_msg()
        self._targets_pub.publish(TargetArray(header=header, goal_id=self._goal_counter, goal=""))
        self._markers_pub.publish(clear_markers_msg(header))

    def _last_frame_id(self) -> str:
        latest = self._ring.latest()
        return latest.frame.header.frame_id if latest is not None else ""

    # ------------------------------------------------------------------ 3D
    def _target_infos(self, masks: np.ndarray, scores: np.ndarray, depth_pair: DepthPair) -> list[TargetInfo]:
        depth, K, reason = depth_pair
        infos = []
        for k, (mask, score) in enumerate(zip(masks.astype(bool), scores)):
            xyz, why = None, reason
            if depth is not None and mask.any():
                xyz, why = self._centroid_3d(mask, depth, K)
            elif depth is not None:
                why = "empty mask"
            infos.append(TargetInfo(target_id=k, score=float(score), mask=mask,
                                    xyz=None if xyz is None else tuple(float(v) for v in xyz), reason_3d=why or ""))
        unavailable = [t.reason_3d for t in infos if t.xyz is None and t.reason_3d]
        if unavailable and self._depth_sub is not None:
            self.get_logger().warning(f"3D centroid unavailable: {unavailable[0]}",
                                      throttle_duration_sec=LOG_THROTTLE_S)
        return infos

    def _centroid_3d(self, mask: np.ndarray, depth: np.ndarray, K: np.ndarray) -> tuple[Any, str]:
        p = self._params
        return centroid_3d(mask, depth, K, erosion_px=p.depth_erosion_px, min_depth=p.min_depth_m,
                           max_depth=p.max_depth_m, min_valid_px=p.min_valid_depth_px)

    def _depth_for(self, frame: CameraFrame) -> DepthPair:
        """The depth image paired with ``frame`` (nearest stamp within tolerance) + intrinsics, or why not."""
        if self._depth_sub is None:
            return None, None, "depth disabled (depth_topic is empty)"
        with self._depth_lock:
            candidates = list(self._depth_msgs)
        if not candidates:
            return None, None, f"no depth received on {self._depth_sub.topic_name}"
        stamp = frame.stamp_ns
        nearest = min(candidates, key=lambda m: abs(stamp_to_ns(m.header) - stamp))
        gap_s = abs(stamp_to_ns(nearest.header) - stamp) / 1e9
        if gap_s > self._params.depth_sync_tolerance_s:
            return None, None, (f"no depth within {self._params.depth_sync_tolerance_s:g} s of the frame "
                                f"(nearest {gap_s:.3f} s)")
        K, reason = self._intrinsics(frame)
        if K is None:
            return None, None, reason
        try:
            depth = image_to_depth_m(nearest)
        except ImageConversionError as exc:
            return None, None, f"depth image unusable: {exc}"
        if depth.shape != frame.size:
            return None, None, (f"depth {depth.shape[1]}x{depth.shape[0]} does not match color "
                                f"{frame.size[1]}x{frame.size[0]} (needs a registered/aligned depth)")
        return depth, K, ""

    def _intrinsics(self, frame: CameraFrame) -> tuple[np.ndarray | None, str]:
        info = self._camera_info
        if self._info_sub is None:
            return None, "camera_info disabled (camera_info_topic is empty)"
        if info is None:
            return None, f"no CameraInfo received on {self._info_sub.topic_name}"
        K = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
        if K[0, 0] <= 0 or K[1, 1] <= 0:
            return None, "CameraInfo has no valid intrinsics (fx or fy <= 0)"
        if (info.width, info.height) not in ((0, 0), (frame.size[1], frame.size[0])):
            return None, (f"CameraInfo is for {info.width}x{info.height}, image is "
                          f"{frame.size[1]}x{frame.size[0]}")
        return K, ""

    # ------------------------------------------------------------------ shutdown
    def destroy_node(self) -> None:
        """Stop the worker first so it never publishes through a destroyed node."""
        with self._publish_lock:
            with self._cond:
                self._stop = True
                self._cancel.set()
                self._cond.notify_all()
        self._worker.join(timeout=10.0)
        if self._worker.is_alive():
            self.get_logger().warning("worker still busy in inference at shutdown; abandoning it")
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return spin_node(DecafNode, args)
