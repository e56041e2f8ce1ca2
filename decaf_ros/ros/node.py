"""``decaf_node``: a managed (lifecycle) node — language goal in, masks / targets / 3D centroids out.

Lifecycle (``rclpy.lifecycle``):
* configure: read and validate the parameters, create the goal inputs (goal topic, ``~/ground``
  action) and the result publishers (lifecycle publishers: silent until active), start the worker;
* activate: load the models (returns when they are loaded; FAILURE, with the reason on ``~/status``,
  when they cannot be), subscribe to the camera, enable the result publishers;
* deactivate: end the goal (an action goal is aborted with the reason), stop tracking, unsubscribe
  the camera, drop the models and hand their memory back (CUDA cache, C heap);
* cleanup / shutdown / error: release everything (worker, goal inputs, publishers, buffers).
With ``autostart`` (the default) the node configures in its constructor and activates on its first
executor turn, which is what ``ros2 run`` and the launch file rely on. ``~/status`` and
``/diagnostics`` are published in every state.

Threading model (why it looks like this):
* executor callbacks (camera, goal topic, action, timers) only convert, store and signal; they take
  short locks and never wait for inference, so a slow model can never back up the camera. They sit
  in separate callback groups so a MultiThreadedExecutor (``spin_node``) runs them side by side;
* one worker thread runs the pipeline: grounds a goal on a snapshot of the clip, publishes the coarse
  result as soon as the pipeline reports it, then the dense one, then tracks the newest frame each
  time new frames arrive (stale ones are skipped and counted);
* goals from the topic and the action share one path, "latest wins": a new goal bumps ``goal_id``,
  aborts the previous action goal with the reason and sets the running grounding's cancel Event;
  whatever the old run returns is discarded because its goal is no longer current.
Frames arrive into a bounded ring (oldest evicted, counted as normal turnover), so memory stays flat.
"""
from __future__ import annotations

import collections
import copy
import inspect
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import numpy as np
from action_msgs.msg import GoalStatus  # noqa: F401  (documents the states the action reports)
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header, String
from visualization_msgs.msg import MarkerArray

from decaf_ros.action import Ground
from decaf_ros.core.frames import MIN_FRAME_SIDE, FrameRing
from decaf_ros.core.geometry import centroid_3d
from decaf_ros.core.overlay import draw_overlay
from decaf_ros.core.result import STAGE_COARSE
from decaf_ros.msg import Status, TargetArray
from decaf_ros.ros import params as ros_params
from decaf_ros.ros.diagnostics import DiagnosticsInput, RateMeter, diagnostics_msg
from decaf_ros.ros.goals import (ABORTED, CANCELED, SOURCE_ACTION, SOURCE_TOPIC, SUCCEEDED, ActionGoal, Goal,
                                 clean_goal_text, goal_text_problem, is_clear_request, track_option)
from decaf_ros.ros.image_conversion import (ImageConversionError, array_to_image, compressed_to_rgb,
                                            image_to_depth_m, image_to_rgb)
from decaf_ros.ros.messages import (STATE_NAMES, TargetInfo, centroid_msg, clear_markers_msg, markers_msg,
                                    target_array_msg)
from decaf_ros.ros.params import DYNAMIC_CORE_FIELDS, NodeParams
from decaf_ros.ros.spin import spin_node
from decaf_ros.ros.target_ids import TargetIds, latest_sightings

__all__ = ["DecafNode", "clean_goal_text", "main"]

RELIABLE_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
# Results: reliable, shallow (a late subscriber wants the newest result, not a backlog).
RESULT_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
# Status: transient local so `ros2 topic echo` started later still sees the current state.
STATUS_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)
DIAGNOSTICS_TOPIC = "/diagnostics"
LOG_THROTTLE_S = 5.0
MAX_LABEL_CHARS = 48  # the model's object name is free text; keep overlays and markers readable
IDLE_WAIT_LOG_S = 10.0  # deactivation waits for the worker's current stage; say so this often
SHUTDOWN_WAIT_S = 10.0  # destroy_node gives a busy worker this long, then abandons it (daemon thread)
EMPTY_MASK = "empty mask"
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE

PipelineFactory = Callable[[NodeParams], Any]


class DepthPair(NamedTuple):
    """Depth (metres) + K paired with a frame, or why there is none; ``problem`` marks reportable reasons."""

    depth: np.ndarray | None
    K: np.ndarray | None
    reason: str = ""
    problem: bool = False  # bad data or set-up (reported on ~/status), not merely "no depth configured/yet"


@dataclass(frozen=True)
class CameraFrame:
    """One buffered color frame with the header it arrived with."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    header: Header
    seq: int  # arrival number since activation, 1-based

    @property
    def stamp_ns(self) -> int:
        return stamp_to_ns(self.header)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])


@dataclass
class GroundingRun:
    """One grounding on the worker: its goal, clip, paired depth and what it has published so far."""

    goal: Goal
    frames: list[CameraFrame]
    depth: DepthPair
    requested: float  # monotonic time of the goal or of the re-grounding decision
    cancel: threading.Event
    coarse_msg: TargetArray | None = None
    ids: list[int] = field(default_factory=list)

    @property
    def last(self) -> CameraFrame:
        return self.frames[-1]


def stamp_to_ns(header: Header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def _qos(choice: str) -> QoSProfile:
    return qos_profile_sensor_data if choice == "sensor_data" else RELIABLE_QOS


def check_frame_size(rgb: np.ndarray) -> None:
    """Reject frames the pipeline cannot use before they reach the ring (and a clip)."""
    height, width = rgb.shape[:2]
    if height < MIN_FRAME_SIDE or width < MIN_FRAME_SIDE:
        raise ImageConversionError(f"frame is too small: {width}x{height} (the pipeline needs at least "
                                   f"{MIN_FRAME_SIDE}x{MIN_FRAME_SIDE})")


def last_frame_targets(result: Any, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(K, H, W) bool masks on the clip's last frame and (K,) scores of a grounding result."""
    target_masks = np.asarray(result.target_masks)
    if target_masks.shape[0] == 0:
        return np.zeros((0, *size), dtype=bool), np.zeros(0, dtype=np.float32)
    return target_masks[:, -1].astype(bool), np.asarray(result.target_scores, dtype=np.float32)


class DecafNode(LifecycleNode):
    """Thin ROS 2 shell around a DecAF pipeline (the pipeline holds all model logic)."""

    def __init__(self, pipeline_factory: PipelineFactory | None = None, node_name: str = "decaf",
                 **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        ros_params.declare_parameters(self)
        self.add_on_set_parameters_callback(ros_params.make_set_callback(self))
        self.add_post_set_parameters_callback(self._on_params_set)
        self._factory = pipeline_factory or self._default_factory
        self._params = NodeParams()  # the validated set replaces it in on_configure
        self._init_state()
        self._init_reporting()
        if self.get_parameter("autostart").value:
            if self.trigger_configure() != SUCCESS:
                raise ValueError(self._last_error)  # invalid startup values: fail fast, with the reason
            # Activation (the model load) runs on the executor, like `ros2 lifecycle set ... activate`:
            # a MultiThreadedExecutor keeps ~/status and /diagnostics flowing meanwhile.
            self._autostart_timer = self.create_timer(0.0, self._autostart_activate)

    # ------------------------------------------------------------------ setup
    def _init_state(self) -> None:
        self._cond = threading.Condition()  # guards goal / frame / worker state; never held during inference
        self._publish_lock = threading.RLock()  # makes "is this goal still current?" + publish atomic
        self._status_lock = threading.Lock()
        self._depth_lock = threading.Lock()
        self._configured = self._active = False
        self._stop = True  # no worker until configure
        self._worker: threading.Thread | None = None
        self._busy = False  # the worker is running a job (deactivation waits for it to end)
        self._grounding_goal: Goal | None = None  # whose grounding the worker is running
        self._goal: Goal | None = None
        self._last_goal: Goal | None = None  # for status after a clear
        self._goal_counter = 0
        self._needs_grounding = self._tracking = False
        self._cancel = threading.Event()
        self._tracked_seq = 0
        self._reground_at: float | None = None
        self._ground_requested_at = 0.0
        self._ids = TargetIds()
        self._label = ""
        self._track_size: tuple[int, int] | None = None
        self._pipeline: Any = None
        self._ground_options: frozenset[str] = frozenset()
        self._load_error = ""
        self._model_warning = ""
        self._changed_core: set[str] = set()  # parameter names changed after start-up
        self._models = (str(self.get_parameter("mllm").value), str(self.get_parameter("sam2").value))
        self._image_topic = str(self.get_parameter("image_topic").value)
        self._reset_frames(int(self.get_parameter("clip_length").value))
        self._state = Status.IDLE
        self._last_error = ""
        self._depth_error = ""
        self._grounding_ms = self._tracking_ms = 0.0
        self._first_result_ms = self._dense_result_ms = 0.0
        self.image_callback_durations: collections.deque[float] = collections.deque(maxlen=1000)
        self._rates = {"image": RateMeter(), "depth": RateMeter(), "camera_info": RateMeter()}
        self._camera_subs: list[Any] = []
        self._depth_sub: Any = None
        self._info_sub: Any = None
        self._goal_sub: Any = None
        self._action_server: ActionServer | None = None
        self._result_pubs: list[Any] = []
        self._autostart_timer: Any = None
        # Separate groups: under a MultiThreadedExecutor the camera never waits for goal handling,
        # reporting or a lifecycle transition (which may be loading a 7B model).
        self._camera_group = ReentrantCallbackGroup()
        self._goal_group = MutuallyExclusiveCallbackGroup()  # topic and action goals, in arrival order
        self._report_group = MutuallyExclusiveCallbackGroup()

    def _reset_frames(self, clip_length: int) -> None:
        with self._cond:
            self._ring = FrameRing(clip_length)
            self._frame_seq = 0  # accepted frames since activation
            self._rejected = self._skipped = self._lost = 0
        with self._depth_lock:
            self._depth_msgs: collections.deque[Image] = collections.deque(
                maxlen=int(self.get_parameter("depth_buffer_size").value))
            self._depth_seen = False
        self._camera_info: CameraInfo | None = None

    def _init_reporting(self) -> None:
        """~/status and /diagnostics exist in every lifecycle state: operators see what the node is doing."""
        self._status_pub = self.create_publisher(Status, "~/status", STATUS_QOS)
        self._status_timer = self.create_timer(1.0 / float(self.get_parameter("status_rate_hz").value),
                                               self.publish_status, callback_group=self._report_group)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, RELIABLE_QOS)
        rate = float(self.get_parameter("diagnostics_rate_hz").value)
        self._diagnostics_timer = (self.create_timer(1.0 / rate, self.publish_diagnostics,
                                                     callback_group=self._report_group) if rate > 0 else None)

    def _create_goal_inputs(self) -> None:
        p = self._params
        self._goal_sub = self.create_subscription(String, p.goal_topic, self._on_goal, RELIABLE_QOS,
                                                  callback_group=self._goal_group)
        self._action_server = ActionServer(
            self, Ground, "~/ground", execute_callback=self._execute_unexpected,
            goal_callback=lambda _request: GoalResponse.ACCEPT, handle_accepted_callback=self._on_action_goal,
            cancel_callback=self._on_action_cancel, callback_group=self._goal_group)

    def _create_result_publishers(self) -> None:
        make = self.create_lifecycle_publisher
        self._mask_pub = make(Image, "~/mask", RESULT_QOS)
        self._overlay_pub = make(Image, "~/overlay", RESULT_QOS)
        self._targets_pub = make(TargetArray, "~/targets", RESULT_QOS)
        self._centroid_pub = make(PointStamped, "~/centroid", RESULT_QOS)
        self._markers_pub = make(MarkerArray, "~/markers", RESULT_QOS)
        self._result_pubs = [self._mask_pub, self._overlay_pub, self._targets_pub, self._centroid_pub,
                             self._markers_pub]

    def _create_camera_inputs(self) -> None:
        p, group = self._params, self._camera_group
        if p.image_transport == "compressed":
            image_sub = self.create_subscription(CompressedImage, self._image_topic, self._on_compressed_image,
                                                 _qos(p.image_qos), callback_group=group)
        else:
            image_sub = self.create_subscription(Image, self._image_topic, self._on_image, _qos(p.image_qos),
                                                 callback_group=group)
        self._depth_sub = (self.create_subscription(Image, p.depth_topic, self._on_depth, _qos(p.depth_qos),
                                                    callback_group=group) if p.depth_topic else None)
        self._info_sub = (self.create_subscription(CameraInfo, p.camera_info_topic, self._on_camera_info,
                                                   _qos(p.camera_info_qos), callback_group=group)
                          if p.camera_info_topic else None)
        self._camera_subs = [s for s in (image_sub, self._depth_sub, self._info_sub) if s is not None]

    def _image_topic_name(self, p: NodeParams) -> str:
        """image_transport convention: the compressed stream is ``<resolved image topic>/compressed``."""
        base = self.resolve_topic_name(p.image_topic)
        return f"{base}/compressed" if p.image_transport == "compressed" else base

    def _default_factory(self, params: NodeParams) -> Any:
        from decaf_ros.devtools.tiny_models import load_pipeline  # heavy (torch/transformers): only when used

        pipeline, warning = load_pipeline(params.core, allow_tiny_fallback=params.fallback_to_tiny_models)
        if warning:
            self.get_logger().warning(warning)
            self._model_warning = warning
        return pipeline

    def _on_params_set(self, parameters: list[Any]) -> None:
        # Already validated by the on-set callback; read-only ones (topics, models, ring) cannot change.
        self._params = ros_params.load_params(self)
        self._changed_core.update(p.name for p in parameters)

    # ------------------------------------------------------------------ lifecycle transitions
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._status_after_transition()
        try:
            params = ros_params.load_params(self)
        except ValueError as exc:
            message = f"invalid parameters: {exc}"
            self.get_logger().error(message)
            self._set_state(Status.ERROR, error=message)
            return FAILURE
        self._params = params
        self._models = (params.core.mllm, params.core.sam2)
        self._image_topic = self._image_topic_name(params)
        self._reset_frames(params.clip_length)
        self._create_goal_inputs()
        self._create_result_publishers()
        self._start_worker()
        self._configured = True
        self._set_state(Status.IDLE, error="")
        self.get_logger().info("configured")
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._status_after_transition()
        if self._pipeline is None and not self._load_pipeline():
            return FAILURE  # the reason is on ~/status and in the log
        self._reset_frames(self._params.clip_length)
        super().on_activate(state)  # enables the lifecycle publishers
        with self._cond:
            self._active = True
            self._cond.notify_all()
        # Last: a camera subscription is what other nodes see of an active node, so goals sent once
        # it is matched must not find the node still refusing them (executor threads run side by side).
        self._create_camera_inputs()
        self._set_state(Status.IDLE, error=self._model_warning)
        self.get_logger().info(f"active: reading {self._image_topic}")
        return SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._status_after_transition()
        self._deactivate("node deactivated")
        super().on_deactivate(state)
        self.get_logger().info("deactivated: camera unsubscribed, models released")
        return SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._status_after_transition()
        self._cleanup()
        self._set_state(Status.IDLE, error="")
        self.get_logger().info("cleaned up")
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._status_after_transition()
        self._release_all("node shutting down")
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._status_after_transition()
        self._release_all("node error")
        return SUCCESS  # back to unconfigured

    def _status_after_transition(self) -> None:
        """Publish ~/status once the running transition has completed (on the next executor turn),
        so subscribers see the new lifecycle state without waiting for the periodic status."""
        def publish_once() -> None:
            self.destroy_timer(timer)
            self.publish_status()

        timer = self.create_timer(0.0, publish_once, callback_group=self._report_group)

    def _autostart_activate(self) -> None:
        timer, self._autostart_timer = self._autostart_timer, None
        if timer is not None:
            self.destroy_timer(timer)
        if self.lifecycle_state == "inactive" and self.trigger_activate() != SUCCESS:
            self.get_logger().error(f"autostart: activation failed ({self._last_error}); retry with "
                                    f"`ros2 lifecycle set {self.get_fully_qualified_name()} activate`")

    def _deactivate(self, reason: str) -> None:
        """Active -> inactive: no more results, the goal ended, camera off, models released."""
        with self._publish_lock, self._cond:
            was_active, self._active = self._active, False
            self._cond.notify_all()
        if not was_active:
            return
        self._clear_goal(reason, publish=True)
        self._wait_worker_idle(timeout=None)
        for sub in self._camera_subs:
            self.destroy_subscription(sub)
        self._camera_subs, self._depth_sub, self._info_sub = [], None, None
        self._stop_tracking()
        self._release_pipeline()
        self._reset_frames(self._params.clip_length)

    def _cleanup(self, worker_timeout: float | None = None) -> None:
        """Inactive -> unconfigured: worker, goal inputs and publishers go."""
        if not self._configured:
            return
        self._configured = False
        self._stop_worker(timeout=worker_timeout)
        self._fail_goal(self._goal, "node cleaned up")
        if self._action_server is not None:
            self._action_server.destroy()
            self._action_server = None
        if self._goal_sub is not None:
            self.destroy_subscription(self._goal_sub)
            self._goal_sub = None
        for pub in self._result_pubs:
            self.destroy_lifecycle_publisher(pub)
        self._result_pubs = []

    def _release_all(self, reason: str) -> None:
        """From any state: what deactivate and cleanup release; safe to call twice."""
        self._deactivate(reason)
        self._cleanup()

    @property
    def lifecycle_state(self) -> str:
        """"unconfigured", "inactive", "active", "finalized", or a transition ("activating", ...)."""
        return str(self._state_machine.current_state[1])

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
    def frames_accepted(self) -> int:
        return self._frame_seq

    @property
    def image_topic(self) -> str:
        return self._image_topic

    @property
    def pipeline_loaded(self) -> bool:
        return self._pipeline is not None

    # ------------------------------------------------------------------ camera callbacks (executor threads)
    def _on_image(self, msg: Image) -> None:
        self._accept_frame(msg, image_to_rgb)

    def _on_compressed_image(self, msg: CompressedImage) -> None:
        self._accept_frame(msg, compressed_to_rgb)

    def _accept_frame(self, msg: Any, convert: Callable[[Any], np.ndarray]) -> None:
        """Convert and push; O(1) in the number of buffered frames and never waits on inference."""
        start = time.perf_counter()
        self._rates["image"].tick()
        try:
            rgb = convert(msg)
            check_frame_size(rgb)
        except ImageConversionError as exc:
            with self._cond:
                self._rejected += 1
            self._report_input_error(f"dropped image on {self._image_topic}: {exc}")
            return
        with self._cond:
            self._frame_seq += 1
            frame = CameraFrame(image=rgb, header=msg.header, seq=self._frame_seq)
            self._ring.push(frame.stamp_ns / 1e9, frame)
            self._cond.notify_all()
        self.image_callback_durations.append(time.perf_counter() - start)

    def _on_depth(self, msg: Image) -> None:
        self._rates["depth"].tick()
        with self._depth_lock:  # bounded deque: the oldest depth image falls out
            self._depth_msgs.append(msg)
            self._depth_seen = True

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._rates["camera_info"].tick()
        self._camera_info = msg  # one reference swap; readers take their own reference

    # ------------------------------------------------------------------ goal inputs (executor threads)
    def _on_goal(self, msg: String) -> None:
        if not self._active:
            self._reject_goal(f"goal ignored: the node is {self.lifecycle_state}, not active")
            return
        if is_clear_request(msg.data):
            self._clear_goal("cleared by an empty or 'stop' goal on the goal topic", publish=True)
            return
        problem = goal_text_problem(msg.data, self._params.max_goal_length)
        if problem:
            self._reject_goal(problem)
            return
        self._set_goal(clean_goal_text(msg.data), track=self._params.track, source=SOURCE_TOPIC)

    def _on_action_goal(self, handle: Any) -> None:
        """Accepted Ground goal: into the goal path, or ended at once with the reason it cannot run."""
        action, request = ActionGoal(handle), handle.request
        problem = ""
        if not self._active:
            problem = f"the node is {self.lifecycle_state}, not active: goals are served only while active"
        elif is_clear_request(request.text):
            problem = "goal rejected: empty text or 'stop' (cancel the goal, or publish 'stop' on the goal topic)"
        else:
            problem = goal_text_problem(request.text, self._params.max_goal_length)
        if problem:
            action.finish(ABORTED, error=problem)
            self._reject_goal(problem)
            return
        self._set_goal(clean_goal_text(request.text), track=track_option(request, self._params.track),
                       coarse_only=bool(request.coarse_only), source=SOURCE_ACTION, action=action)

    def _on_action_cancel(self, handle: Any) -> CancelResponse:
        """Cancel of the current action goal: the grounding stops at its next stage boundary."""
        with self._cond:
            goal = self._goal
            if goal is None or goal.action is None or goal.action.handle != handle or goal.action.done:
                return CancelResponse.REJECT  # not ours to cancel, or already answered (tracking goes on)
            goal.cancelled = True
            running = self._grounding_goal is goal
            self._end_current_goal()
        self.get_logger().info(f"{goal.describe()} cancelled by the client")
        if not running:  # queued or waiting for frames: nothing to stop
            goal.finish(CANCELED, error="cancelled by the client")
        with self._publish_lock:
            if self._active:
                self._publish_clear()
        self._set_state(Status.IDLE, error="")
        return CancelResponse.ACCEPT

    def _execute_unexpected(self, handle: Any) -> Any:
        # Goals are executed through ActionGoal.finish with their own callback; nothing else calls this.
        handle.abort()
        return Ground.Result(success=False, error="internal error: goal executed without an outcome")

    # ------------------------------------------------------------------ goal bookkeeping
    def _set_goal(self, text: str, track: bool, source: str, coarse_only: bool = False,
                  action: ActionGoal | None = None) -> None:
        with self._cond:
            self._goal_counter += 1
            goal = Goal(self._goal_counter, text, time.monotonic(), track=track, coarse_only=coarse_only,
                        source=source, action=action)
            previous = self._goal
            self._end_current_goal()
            self._goal, self._needs_grounding, self._last_goal = goal, True, goal
            self._ground_requested_at = goal.received
            self._ids = TargetIds()
            no_frames = self._frame_seq == 0
            with self._status_lock:  # before the worker can see the goal, so its errors are not overwritten
                self._last_error = self._no_frames_message() if no_frames else ""
                self._first_result_ms = self._dense_result_ms = 0.0
            # Also before the worker can see the goal: its "grounding" feedback must come after this one.
            goal.feedback("waiting_for_frames" if no_frames else "queued")
            self._cond.notify_all()
        if previous is not None:
            previous.finish(ABORTED, error=f"superseded by {goal.describe()}")
        self.get_logger().info(goal.describe())
        self.publish_status()  # acknowledges the new goal id

    def _end_current_goal(self) -> None:
        """With the condition held: no current goal; the running grounding stops at its next stage."""
        self._cancel.set()
        self._goal, self._needs_grounding, self._tracking, self._reground_at = None, False, False, None

    def _no_frames_message(self) -> str:
        return f"no frames received yet on {self._image_topic}; goal pending"

    def _clear_goal(self, reason: str, publish: bool) -> None:
        with self._cond:
            previous = self._goal
            self._end_current_goal()
            self._cond.notify_all()
        if previous is not None:
            previous.finish(ABORTED, error=reason)
            self.get_logger().info(f"{previous.describe()}: {reason}")
        if publish:
            with self._publish_lock:
                if self._result_pubs:
                    self._publish_clear()
        self._set_state(Status.IDLE, error="")

    def _reject_goal(self, reason: str) -> None:
        self.get_logger().warning(reason)
        with self._status_lock:
            self._last_error = reason
        self.publish_status()

    def _is_current(self, goal: Goal) -> bool:
        return self._goal is goal and self._active and not self._stop

    def _drop_goal(self, goal: Goal, error: str) -> None:
        """End a goal on an error: the worker goes idle and waits for the next goal."""
        with self._cond:
            if self._goal is goal:
                self._end_current_goal()
        goal.finish(ABORTED, error=error)
        self._set_state(Status.ERROR, error=error)

    def _fail_goal(self, goal: Goal | None, reason: str) -> None:
        if goal is not None:
            goal.finish(ABORTED, error=reason)

    # ------------------------------------------------------------------ status + diagnostics
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
                         depth_error=self._depth_error, grounding_latency_ms=float(self._grounding_ms),
                         tracking_latency_ms=float(self._tracking_ms if self._state == Status.TRACKING else 0.0),
                         first_result_latency_ms=float(self._first_result_ms),
                         dense_result_latency_ms=float(self._dense_result_ms))
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.lifecycle_state = self.lifecycle_state
        msg.goal_id = last.goal_id if last is not None else 0
        msg.goal = goal.text if goal is not None else ""
        with self._cond:
            ring = self._ring
            msg.frames_received = self._frame_seq + self._rejected
            msg.frames_rejected, msg.frames_skipped, msg.frames_lost = self._rejected, self._skipped, self._lost
        msg.frames_buffered, msg.frames_evicted = len(ring), int(ring.dropped)
        msg.frames_dropped = msg.frames_rejected + msg.frames_skipped + msg.frames_lost
        msg.mllm_model, msg.sam2_model = self._models
        return msg

    def publish_status(self) -> None:
        try:
            self._status_pub.publish(self.status_msg())
        except Exception as exc:  # noqa: BLE001 - the context may be shutting down
            self.get_logger().debug(f"status not published: {exc}")

    def publish_diagnostics(self) -> None:
        core = self._params.core
        mllm = getattr(self._pipeline, "mllm", None)
        device = str(getattr(mllm, "device", "") or core.device)
        info = DiagnosticsInput(name=f"decaf_ros: {self.get_fully_qualified_name()}", status=self.status_msg(),
                                device=device, dtype=core.dtype, model_warning=self._model_warning,
                                input_rates_hz={k: r.rate_hz() for k, r in self._rates.items()},
                                pipeline_loaded=self.pipeline_loaded)
        try:
            self._diagnostics_pub.publish(diagnostics_msg(info, self.get_clock().now().to_msg()))
        except Exception as exc:  # noqa: BLE001 - the context may be shutting down
            self.get_logger().debug(f"diagnostics not published: {exc}")

    # ------------------------------------------------------------------ worker
    def _start_worker(self) -> None:
        with self._cond:
            self._stop = False
        self._worker = threading.Thread(target=self._worker_main, name="decaf_worker", daemon=True)
        self._worker.start()

    def _stop_worker(self, timeout: float | None) -> None:
        with self._publish_lock, self._cond:
            self._stop = True
            self._cancel.set()
            self._cond.notify_all()
        worker, self._worker = self._worker, None
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout=timeout)
            if worker.is_alive():
                self.get_logger().warning("worker still busy in inference; abandoning it")

    def _wait_worker_idle(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._busy and self._worker is not None and self._worker.is_alive():
                left = IDLE_WAIT_LOG_S if deadline is None else min(IDLE_WAIT_LOG_S, deadline - time.monotonic())
                if left <= 0:
                    return False
                if not self._cond.wait(timeout=left) and self._busy and deadline is None:
                    self.get_logger().info("waiting for the worker to finish its current stage")
        return True

    def _worker_main(self) -> None:
        while True:
            job = self._next_job()
            if job is None:
                return
            kind, goal, cancel = job
            try:
                self._apply_cpu_threads()
                if kind == "ground":
                    self._ground(goal, cancel)
                else:
                    self._track(goal)
            except Exception as exc:  # noqa: BLE001 - any inference failure must leave the node serving
                if self._stop or not self.context.ok():
                    return  # shutting down (e.g. Ctrl-C): the publishers' context is gone, nothing to report
                self._inference_failed(goal, exc)
            finally:
                with self._cond:
                    self._busy, self._grounding_goal = False, None
                    self._cond.notify_all()

    def _load_pipeline(self) -> bool:
        self._set_state(Status.LOADING)
        self._apply_cpu_threads()
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
        self._ground_options = frozenset(inspect.signature(self._pipeline.ground).parameters)
        if "on_coarse" not in self._ground_options:
            self.get_logger().info("this pipeline's ground() reports no coarse result (no on_coarse): "
                                   "results are published after SAM2 only")
        self.get_logger().info(f"models loaded: {self._models[0]}, {self._models[1]}")
        # A goal that arrived during loading keeps its "no frames yet" report unless there is a model warning.
        with self._cond:
            waiting = self._goal is not None and self._frame_seq == 0
        error = self._model_warning or (self._no_frames_message() if waiting else "")
        self._set_state(Status.IDLE, error=error)
        return True

    def _apply_cpu_threads(self) -> None:
        """torch's CPU thread count is per calling thread (OpenMP), so it is set on the thread that
        loads the models and on the worker before each job; a no-op once it matches."""
        threads = self._params.cpu_threads
        if threads <= 0:
            return
        import torch  # the node's process is where torch runs

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
            self.get_logger().info(f"torch CPU threads: {threads}", once=True)

    def _release_pipeline(self) -> None:
        if self._pipeline is None:
            return
        self._pipeline = None
        from decaf_ros.core.loading import return_freed_memory

        return_freed_memory()

    def _next_job(self) -> tuple[str, Goal, threading.Event] | None:
        """Block until there is something to do: a grounding, a tracking step, or stop (None)."""
        with self._cond:
            while not self._stop:
                timeout = self._due_job_or_timeout()
                if isinstance(timeout, tuple):
                    self._busy = True
                    if timeout[0] == "ground":
                        self._grounding_goal = timeout[1]
                    return timeout
                self._cond.wait(timeout=timeout)
        return None

    def _due_job_or_timeout(self) -> tuple[str, Goal, threading.Event] | float | None:
        """Called with the condition held: a job to run now, or how long to wait (None = until notified)."""
        goal, p, now = self._goal, self._params, time.monotonic()
        if goal is None or not self._active:
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
            self._reground_at, self._needs_grounding, self._ground_requested_at = None, True, now
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
        self._end_current_goal()
        message = f"goal {goal.goal_id} dropped: no frames received on {self._image_topic} within {wait_s:g} s"
        self.get_logger().error(message)
        goal.finish(ABORTED, error=message)
        self._set_state(Status.ERROR, error=message)
        return None

    def _inference_failed(self, goal: Goal, exc: BaseException) -> None:
        from decaf_ros.core.loading import ModelLoadError

        self.get_logger().error(f"inference failed for {goal.describe()}: {exc}\n{traceback.format_exc()}")
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
        run = GroundingRun(goal, frames, self._depth_for(frames[-1]), self._ground_requested_at, cancel)
        self._set_state(Status.GROUNDING, error="")
        goal.feedback("grounding")
        start = time.perf_counter()
        result = self._run_grounding(run)
        if result is None or not self._is_current(goal) or cancel.is_set():
            self._grounding_abandoned(goal)
            return
        self._grounding_ms = 1000.0 * (time.perf_counter() - start)
        final = self._publish_final(run, result)
        if final is None:
            self._grounding_abandoned(goal)
            return
        self.get_logger().info(f"goal {goal.goal_id}: {len(final.targets)} target(s) '{self._label}' in "
                               f"{self._grounding_ms:.0f} ms on {len(frames)} frames")
        goal.finish(SUCCEEDED, targets=final)
        self._after_grounding(run, result)

    def _grounding_abandoned(self, goal: Goal) -> None:
        self.get_logger().info(f"goal {goal.goal_id}: grounding result discarded (goal no longer current)")
        if goal.cancelled:  # superseded, cleared or deactivated goals were ended with their reason already
            goal.finish(CANCELED, error="cancelled by the client")

    def _run_grounding(self, run: GroundingRun) -> Any:
        from decaf_ros.core.pipeline import GroundingCancelled

        goal = run.goal

        def progress(stage: str) -> None:
            self.get_logger().debug(f"goal {goal.goal_id}: {stage}")
            goal.feedback(stage)

        def on_coarse(result: Any) -> None:
            run.coarse_msg = self._publish_grounding(run, result, TargetArray.STAGE_COARSE)
            if run.coarse_msg is not None:
                goal.feedback("coarse", run.coarse_msg)

        options: dict[str, Any] = {"cancel": run.cancel, "progress": progress}
        if "on_coarse" in self._ground_options:
            options["on_coarse"] = on_coarse
        if goal.coarse_only:
            if "coarse_only" not in self._ground_options:
                raise ValueError("this pipeline's ground() has no coarse_only option")
            options["coarse_only"] = True
        try:
            return self._pipeline.ground([f.image for f in run.frames], goal.text, **options)
        except GroundingCancelled:
            return None

    def _publish_final(self, run: GroundingRun, result: Any) -> TargetArray | None:
        """The grounding's final result: dense, or coarse (coarse_only / no SAM2), published once."""
        result_stage = getattr(result, "stage", None)
        coarse = result_stage == STAGE_COARSE if result_stage else bool(getattr(result, "coarse_only", False))
        if coarse and run.coarse_msg is not None:
            self._record_latency(run, dense=True)
            return run.coarse_msg  # on_coarse published this very result already
        stage = TargetArray.STAGE_COARSE if coarse else TargetArray.STAGE_DENSE
        return self._publish_grounding(run, result, stage, dense=True)

    def _publish_grounding(self, run: GroundingRun, result: Any, stage: int, dense: bool = False
                           ) -> TargetArray | None:
        """Publish a grounding result (coarse or dense) on the clip's last frame; None when superseded."""
        self._label = clean_goal_text(getattr(result, "obj_name", "") or run.goal.text)[:MAX_LABEL_CHARS]
        masks, scores = last_frame_targets(result, run.last.size)
        sightings = latest_sightings(result.target_masks) if len(masks) else masks
        with self._cond:
            if not self._is_current(run.goal):
                return None
            run.ids = self._ids.assign(sightings)
        msg = self._publish_if_current(run.goal, run.last, masks, scores, run.ids, stage, run.depth)
        if msg is not None:
            self._record_latency(run, dense)
        return msg

    def _record_latency(self, run: GroundingRun, dense: bool) -> None:
        elapsed_ms = 1000.0 * (time.monotonic() - run.requested)
        with self._status_lock:
            if not self._first_result_ms:
                self._first_result_ms = elapsed_ms
            if dense:
                self._dense_result_ms = elapsed_ms
        self.publish_status()

    def _after_grounding(self, run: GroundingRun, result: Any) -> None:
        """Start tracking the targets still visible on the last frame, keeping their ids."""
        goal, last = run.goal, run.last
        masks, _ = last_frame_targets(result, last.size)
        visible = [k for k in range(len(masks)) if masks[k].any()]
        tracked_ids: list[int] = []
        if goal.track and visible:
            count = int(self._pipeline.start_tracking(last.image, self._subset(result, visible)) or 0)
            if count != len(visible):
                self.get_logger().warning(f"start_tracking took {count} of {len(visible)} targets")
            tracked_ids = [run.ids[k] for k in visible[:count]]
        p = self._params
        with self._cond:
            if not self._is_current(goal):
                return
            self._count_frames_lost_while_grounding(last.seq)
            self._ids.tracked = tracked_ids
            self._tracking = bool(tracked_ids)
            self._track_size = last.size
            self._reground_at = time.monotonic() + p.regrounding_period_s if p.regrounding_period_s > 0 else None
            self._cond.notify_all()
        self._set_state(Status.TRACKING if self._tracking else Status.IDLE)

    @staticmethod
    def _subset(result: Any, keep: list[int]) -> Any:
        """The result restricted to ``keep`` targets, in that order (the tracking stream's order)."""
        subset = copy.copy(result)
        subset.target_masks = np.asarray(result.target_masks)[keep]
        subset.target_scores = np.asarray(result.target_scores)[keep]
        return subset

    def _count_frames_lost_while_grounding(self, last_seq: int) -> None:
        """With the condition held: frames newer than the clip that the full ring evicted meanwhile."""
        items = self._ring.snapshot(1)
        oldest = items[0].frame.seq if items else self._frame_seq + 1
        self._lost += max(0, oldest - last_seq - 1)
        # Tracking counts the frames still buffered as skipped when it jumps to the newest.
        self._tracked_seq = max(last_seq, oldest - 1)

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
            self._skipped += max(0, frame.seq - self._tracked_seq - 1)
            self._tracked_seq = frame.seq
        if frame.size != self._track_size:
            self.get_logger().warning(f"image size changed to {frame.size[1]}x{frame.size[0]}; re-grounding")
            self._request_reground(goal)
            return
        result = self._pipeline.track(frame.image)
        self._tracking_ms = 1000.0 * float(getattr(result, "timing_s", 0.0))
        masks = np.asarray(result.target_masks).astype(bool)
        scores = np.asarray(result.scores, dtype=np.float32)
        ids = self._ids.tracked[:len(masks)]
        if self._publish_if_current(goal, frame, masks, scores, ids, TargetArray.STAGE_TRACKING) is None:
            return
        self._ids.remember(ids, masks)
        best = float(scores.max()) if scores.size else 0.0
        if best < self._params.min_track_score:
            self.get_logger().info(f"goal {goal.goal_id}: tracking score {best:.2f} < "
                                   f"{self._params.min_track_score:.2f}; re-grounding")
            self._request_reground(goal)

    def _request_reground(self, goal: Goal) -> None:
        with self._cond:
            if self._is_current(goal):
                self._tracking, self._needs_grounding = False, True
                self._ground_requested_at = time.monotonic()
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
                            ids: list[int], stage: int, depth: DepthPair | None = None) -> TargetArray | None:
        """Compute per-target info, then publish everything atomically unless the goal was replaced."""
        if depth is None or depth.depth is None:
            depth = self._depth_for(frame)
        targets = self._target_infos(masks, scores, ids, depth)
        self._report_depth(targets, depth)
        with self._publish_lock:
            if not self._is_current(goal):
                return None
            return self._publish_results(goal, frame, masks, targets, stage)

    def _publish_results(self, goal: Goal, frame: CameraFrame, masks: np.ndarray,
                         targets: list[TargetInfo], stage: int) -> TargetArray:
        p, header = self._params, frame.header
        union = masks.any(axis=0) if len(masks) else np.zeros(frame.size, dtype=bool)
        self._mask_pub.publish(array_to_image(union, "mono8", header))
        if p.publish_overlay:
            labels = [f"{self._label} {t.score:.2f}" for t in targets]
            overlay = draw_overlay(frame.image, masks.astype(bool), labels, alpha=p.overlay_alpha)
            self._overlay_pub.publish(array_to_image(overlay, "rgb8", header))
        msg = target_array_msg(targets, header, goal.goal_id, goal.text, self._label, stage,
                               with_masks=p.publish_target_masks)
        self._targets_pub.publish(msg)
        point = centroid_msg(targets, header)
        if point is not None:
            self._centroid_pub.publish(point)
        self._markers_pub.publish(markers_msg(targets, header, self._label, p.marker_scale_m))
        return msg

    def _publish_clear(self) -> None:
        header = Header(frame_id=self._last_frame_id())
        header.stamp = self.get_clock().now().to_msg()
        self._targets_pub.publish(TargetArray(header=header, goal_id=self._goal_counter, goal=""))
        self._markers_pub.publish(clear_markers_msg(header))

    def _last_frame_id(self) -> str:
        latest = self._ring.latest()
        return latest.frame.header.frame_id if latest is not None else ""

    # ------------------------------------------------------------------ 3D
    def _target_infos(self, masks: np.ndarray, scores: np.ndarray, ids: list[int],
                      depth_pair: DepthPair) -> list[TargetInfo]:
        infos = []
        for target_id, mask, score in zip(ids, masks.astype(bool), scores):
            xyz, why = None, depth_pair.reason
            if depth_pair.depth is not None and mask.any():
                xyz, why = self._centroid_3d(mask, depth_pair.depth, depth_pair.K)
            elif depth_pair.depth is not None:
                why = EMPTY_MASK
            infos.append(TargetInfo(target_id=int(target_id), score=float(score), mask=mask,
                                    xyz=None if xyz is None else tuple(float(v) for v in xyz),
                                    reason_3d="" if xyz is not None else why))
        return infos

    def _report_depth(self, targets: list[TargetInfo], depth_pair: DepthPair) -> None:
        """A 3D problem goes on ~/status (depth_error and last_error) when it appears or changes."""
        if depth_pair.depth is None:
            problem = depth_pair.reason if depth_pair.problem else ""
        else:
            problem = next((t.reason_3d for t in targets if t.xyz is None and t.reason_3d != EMPTY_MASK), "")
        with self._status_lock:
            changed = problem != self._depth_error
            self._depth_error = problem
            if changed and problem:
                self._last_error = f"3D centroid unavailable: {problem}"
        if changed:
            if problem:
                self.get_logger().warning(f"3D centroid unavailable: {problem}")
            self.publish_status()

    def _centroid_3d(self, mask: np.ndarray, depth: np.ndarray, K: np.ndarray) -> tuple[Any, str]:
        p = self._params
        return centroid_3d(mask, depth, K, erosion_px=p.depth_erosion_px, min_depth=p.min_depth_m,
                           max_depth=p.max_depth_m, min_valid_px=p.min_valid_depth_px)

    def _depth_for(self, frame: CameraFrame) -> DepthPair:
        """The depth image paired with ``frame`` (nearest stamp within tolerance) + intrinsics, or why not."""
        if self._depth_sub is None:
            return DepthPair(None, None, "depth disabled (depth_topic is empty)")
        with self._depth_lock:
            candidates, seen = list(self._depth_msgs), self._depth_seen
        if not seen:
            return DepthPair(None, None, f"no depth received on {self._depth_sub.topic_name}")
        stamp = frame.stamp_ns
        nearest = min(candidates, key=lambda m: abs(stamp_to_ns(m.header) - stamp))
        gap_s = abs(stamp_to_ns(nearest.header) - stamp) / 1e9
        if gap_s > self._params.depth_sync_tolerance_s:
            return DepthPair(None, None, f"no depth within {self._params.depth_sync_tolerance_s:g} s of the "
                                         f"frame (nearest {gap_s:.3f} s)", problem=True)
        K, reason = self._intrinsics(frame)
        if K is None:
            return DepthPair(None, None, reason, problem=True)
        try:
            depth = image_to_depth_m(nearest)
        except ImageConversionError as exc:
            return DepthPair(None, None, f"depth image unusable: {exc}", problem=True)
        if depth.shape != frame.size:
            return DepthPair(None, None, f"depth {depth.shape[1]}x{depth.shape[0]} does not match color "
                                         f"{frame.size[1]}x{frame.size[0]} (needs a registered/aligned depth)",
                             problem=True)
        with np.errstate(invalid="ignore"):
            if not np.any(np.isfinite(depth) & (depth > 0)):
                return DepthPair(None, None, "depth image has no valid reading (all NaN, zero or negative)",
                                 problem=True)
        return DepthPair(depth, K)

    def _intrinsics(self, frame: CameraFrame) -> tuple[np.ndarray | None, str]:
        info = self._camera_info
        if self._info_sub is None:
            return None, "camera_info disabled (camera_info_topic is empty)"
        if info is None:
            return None, f"no CameraInfo received on {self._info_sub.topic_name}"
        K = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
        if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
            return None, "CameraInfo has no valid intrinsics (fx or fy <= 0)"
        if (info.width, info.height) not in ((0, 0), (frame.size[1], frame.size[0])):
            return None, (f"CameraInfo is for {info.width}x{info.height}, image is "
                          f"{frame.size[1]}x{frame.size[0]}")
        return K, ""

    # ------------------------------------------------------------------ shutdown
    def destroy_node(self) -> None:
        """Release everything from any state (the worker first, so it never publishes through a
        destroyed node), never raising: this runs on Ctrl-C, possibly with the context already gone."""
        with self._publish_lock, self._cond:
            self._stop = True  # the worker ends at its next check; a busy one is waited for below
            self._active = False
            self._cancel.set()
            self._cond.notify_all()
        self._fail_goal(self._goal, "node shutting down")
        if not self._wait_worker_idle(timeout=SHUTDOWN_WAIT_S):
            self.get_logger().warning("worker still busy in inference at shutdown; abandoning it")
        for step in (self._stop_tracking, lambda: self._cleanup(worker_timeout=SHUTDOWN_WAIT_S),
                     self._release_pipeline):
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - best effort on the way out
                self.get_logger().debug(f"shutdown step failed: {exc}")
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return spin_node(DecafNode, args)
