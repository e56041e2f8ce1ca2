#!/usr/bin/env python3
"""Benchmark of ``decaf_node``: image-callback cost, goal → first mask latency, tracking rate.

1. Image callback (conversion + ring push) and depth callback, per frame, in ms:
   * ``direct``: the node's real callbacks called with prepared ``sensor_msgs/Image`` messages;
   * ``dds``: a publisher thread at ``--rate`` Hz over loopback DDS, the callback timed by a subclass
     that wraps it (deserialisation happens in the executor before the callback and is not included;
     ``lat`` is header stamp → callback start, which is);
   each with the worker ``idle``, ``blocked`` (a pipeline whose ground() waits on an Event: the
   worker holds no lock and no GIL) and ``py-busy`` (a ground() that runs Python bytecode: the
   worker competes for the GIL, as the Python parts of real inference do).
2. End to end with the tiny built-in random models on this machine's CPU: goal published → first
   ``~/mask`` received, ``~/targets`` per second while tracking, per-frame ``pipeline.track`` time,
   and how many frames were tracked vs how many re-groundings the random tiny SAM2 forced.
   The image callback is timed again during that run (worker doing real inference).
3. The same with real-size random-weight models (``decaf_ros.core.model_configs``) when CUDA is
   available; otherwise a line says so.
"""
from __future__ import annotations

import os

# Before rclpy is imported: discovery stays on this machine and off domain 0 (a live robot).
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass, field, replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
import torch  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import (DurabilityPolicy, QoSProfile, ReliabilityPolicy,  # noqa: E402
                       qos_profile_sensor_data)
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import Header, String  # noqa: E402

from decaf_ros.core.pipeline import GroundingCancelled  # noqa: E402
from decaf_ros.msg import Status, TargetArray  # noqa: E402
from decaf_ros.ros.image_conversion import image_to_depth_m, rgb_to_compressed  # noqa: E402
from decaf_ros.ros.node import DecafNode  # noqa: E402
from decaf_ros.ros.player import raw_image, sample_messages  # noqa: E402

WORKER_STATES = ("idle", "blocked", "py-busy")
COLOR_ENCODINGS = ("rgb8", "bgr8")
COMPRESSED = {"jpeg90": "jpeg", "png": "png"}  # row label -> codec of the compressed rows
DEPTH_ENCODING = "16UC1"
GOAL = "the astronaut's face"
RECORD_QOS = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
STATUS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)
# Numeric fields of each report row (the test checks these; the other fields are labels).
CALLBACK_FIELDS = ("n", "median_ms", "p90_ms", "max_ms")
DDS_FIELDS = ("published", "received", "lat_median_ms", "lat_p90_ms")
E2E_FIELDS = ("goal_to_mask_ms", "goal_to_mask_p90_ms", "goal_to_ground_start_ms", "ground_ms", "start_tracking_ms", "window_s",
              "targets_per_s", "tracked_fps", "track_ms_median", "track_ms_p90", "track_ms_max",
              "tracked_frames", "regroundings", "planted_prompts", "camera_frames", "goals")
TINY_SETTINGS = {"num_key_frames": 4, "video_max_tokens": 16, "max_new_tokens": 8, "frame_batch_size": 2}


# =========================================================================== statistics
def ms_stats(seconds: Sequence[float]) -> dict[str, float]:
    """n, median, p90 and max in ms; zeros for an empty series (a row stays numeric)."""
    if not len(seconds):
        return {"n": 0, "median_ms": 0.0, "p90_ms": 0.0, "max_ms": 0.0}
    ms = 1e3 * np.asarray(seconds, dtype=np.float64)
    return {"n": int(ms.size), "median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
            "max_ms": float(ms.max())}


# =========================================================================== messages
def parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def color_msg(width: int, height: int, encoding: str, seed: int = 0) -> Image:
    """A noise image in ``encoding`` (content does not matter for the conversion cost)."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return raw_image(pixels, encoding, Header())


def sample_rgb(width: int, height: int) -> np.ndarray:
    """A frame of the bundled sample clip: a real photograph (noise would compress unlike a camera image)."""
    from decaf_ros.ros.sample import build_sample_clip

    return build_sample_clip("astronaut", 1, width, height)[0].rgb


def compressed_msgs(width: int, height: int) -> dict[str, Any]:
    """The same sample frame as raw rgb8 and as JPEG (quality 90) / PNG CompressedImage, as a camera sends it."""
    rgb = sample_rgb(width, height)
    return {"rgb8": raw_image(rgb, "rgb8", Header()),
            **{label: rgb_to_compressed(rgb, codec, Header(), quality=90) for label, codec in COMPRESSED.items()}}


def depth_msg(width: int, height: int, seed: int = 0) -> Image:
    mm = np.random.default_rng(seed).integers(300, 5000, size=(height, width), dtype=np.uint16)
    return raw_image(mm, DEPTH_ENCODING, Header())


def stamp_now(msg: Any) -> None:
    stamp_ns = time.time_ns()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)


def stamp_ns(header: Header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


# =========================================================================== pipelines for the worker states
class StubPipeline:
    """DecafPipeline stand-in that keeps the worker inside ground() until cancelled.

    ``python_busy`` False waits on an Event (GIL released); True runs Python bytecode (GIL held
    in 5 ms slices, like the Python side of real inference).
    """

    def __init__(self, python_busy: bool = False) -> None:
        self.python_busy = python_busy
        self.entered = threading.Event()

    def ground(self, frames: list[np.ndarray], query: str, *, cancel: threading.Event | None = None,
               progress: Callable[[str], None] | None = None) -> Any:
        self.entered.set()
        cancel = cancel or threading.Event()
        while not cancel.is_set():
            if self.python_busy:
                sum(i * i for i in range(20_000))
            else:
                cancel.wait(0.05)
        raise GroundingCancelled("benchmark finished")

    def start_tracking(self, frame: np.ndarray, result: Any) -> int:
        return 0

    def stop_tracking(self) -> None:
        pass


@dataclass
class PipelineTimes:
    """(start monotonic, seconds) of every ground / start_tracking / track call."""

    ground: list[tuple[float, float]] = field(default_factory=list)
    start_tracking: list[tuple[float, float]] = field(default_factory=list)
    track: list[tuple[float, float]] = field(default_factory=list)
    planted: list[float] = field(default_factory=list)  # monotonic times a centre box replaced an empty prompt

    def between(self, name: str, t0: float, t1: float) -> list[float]:
        return [d for s, d in getattr(self, name) if t0 <= s < t1]


def centre_box(height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    mask[height // 4: 3 * height // 4, width // 3: 2 * width // 3] = True
    return mask


def plant_if_empty(pipeline: Any, times: PipelineTimes) -> None:
    """Random weights often leave a kept target empty on the clip's last frame, and the node then
    never tracks. So that the tracking path is still measured, such a target is prompted with a
    centre box instead (counted and reported as ``planted_prompts``)."""
    start = pipeline.start_tracking

    def start_tracking(frame: np.ndarray, result: Any) -> int:
        masks = np.asarray(result.target_masks)
        if masks.shape[0] and not masks[:, -1].any():
            masks = masks.copy()
            masks[:, -1] = centre_box(*frame.shape[:2])
            result.target_masks = masks
            times.planted.append(time.monotonic())
        return start(frame, result)

    pipeline.start_tracking = start_tracking


def instrument(pipeline: Any, times: PipelineTimes, plant: bool = False) -> Any:
    """Time the pipeline's live-mode methods in place (instance attributes shadow the methods)."""
    if plant:
        plant_if_empty(pipeline, times)
    for name in ("ground", "start_tracking", "track"):
        method, log = getattr(pipeline, name), getattr(times, name)

        def timed(*args: Any, _method: Callable = method, _log: list = log, **kwargs: Any) -> Any:
            start = time.monotonic()
            try:
                return _method(*args, **kwargs)
            finally:
                _log.append((start, time.monotonic() - start))

        setattr(pipeline, name, timed)
    return pipeline


# =========================================================================== the node, with timed callbacks
class TimedDecafNode(DecafNode):
    """DecafNode whose image/depth callbacks record their duration and stamp → start latency.

    Subclassing (not patching) works because the subscriptions are created with ``self._on_image``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.timing_lock = threading.Lock()
        self.image_s: list[float] = []
        self.depth_s: list[float] = []
        self.image_lat_s: list[float] = []
        self.depth_lat_s: list[float] = []
        super().__init__(*args, **kwargs)

    def _timed(self, callback: Callable[[Image], None], msg: Image, durations: list, latencies: list) -> None:
        received = time.time_ns()
        start = time.perf_counter()
        callback(msg)
        elapsed = time.perf_counter() - start
        with self.timing_lock:
            durations.append(elapsed)
            latencies.append((received - stamp_ns(msg.header)) / 1e9)

    def _on_image(self, msg: Image) -> None:
        self._timed(super()._on_image, msg, self.image_s, self.image_lat_s)

    def _on_depth(self, msg: Image) -> None:
        self._timed(super()._on_depth, msg, self.depth_s, self.depth_lat_s)

    def take_timings(self) -> dict[str, list[float]]:
        """Return and reset what the callbacks recorded."""
        with self.timing_lock:
            out = {"image": self.image_s, "depth": self.depth_s, "image_lat": self.image_lat_s,
                   "depth_lat": self.depth_lat_s}
            self.image_s, self.depth_s, self.image_lat_s, self.depth_lat_s = [], [], [], []
        return out


def make_node(context: Context, factory: Callable[[Any], Any], namespace: str,
              overrides: dict[str, Any]) -> TimedDecafNode:
    params = {"status_rate_hz": 2.0, "regrounding_period_s": 0.0} | overrides
    node = TimedDecafNode(pipeline_factory=factory, namespace=namespace, context=context,
                          parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    # Autostart activates on the first executor turn; the direct-call rows never spin, so activate now.
    if node.lifecycle_state == "inactive" and node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
        raise RuntimeError("the benchmark node did not activate")
    return node


def enter_state(node: TimedDecafNode, stub: StubPipeline, state: str, width: int, height: int) -> None:
    """Put the worker in ``state``: idle, or inside the stub's ground() after a goal."""
    if state == "idle":
        return
    msg = color_msg(width, height, "rgb8")
    stamp_now(msg)
    node._on_image(msg)
    node._on_goal(String(data=GOAL))
    if not stub.entered.wait(10.0):
        raise RuntimeError("the worker did not start grounding")


def stub_for(state: str) -> StubPipeline:
    return StubPipeline(python_busy=state == "py-busy")


# =========================================================================== 1a. direct calls
def time_direct(node: TimedDecafNode, msg: Image, callback: Callable[[Image], None], iterations: int) -> list[float]:
    durations = []
    for _ in range(iterations):
        stamp_now(msg)
        start = time.perf_counter()
        callback(msg)
        durations.append(time.perf_counter() - start)
    return durations


def warm_up(sizes: Sequence[tuple[int, int]], iterations: int = 30) -> None:
    """Run every conversion first, so the first measured worker state does not pay one-off costs."""
    from decaf_ros.ros.image_conversion import image_to_rgb

    for width, height in sizes:
        msgs = [color_msg(width, height, e) for e in COLOR_ENCODINGS]
        depth = depth_msg(width, height)
        for _ in range(iterations):
            for msg in msgs:
                image_to_rgb(msg)
            image_to_depth_m(depth)


def direct_rows(context: Context, sizes: Sequence[tuple[int, int]], iterations: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    warm_up(sizes)
    for state in WORKER_STATES:
        stub = stub_for(state)
        node = make_node(context, lambda _p, s=stub: s, f"/bench_direct_{state.replace('-', '_')}", {})
        try:
            enter_state(node, stub, state, *sizes[0])
            for width, height in sizes:
                rows += _direct_size_rows(node, state, width, height, iterations)
        finally:
            node.destroy_node()
    return rows


def _direct_size_rows(node: TimedDecafNode, state: str, width: int, height: int,
                      iterations: int) -> list[dict[str, Any]]:
    label = {"transport": "direct", "worker": state, "size": f"{width}x{height}"}
    rows = []
    for encoding in COLOR_ENCODINGS:
        msg = color_msg(width, height, encoding)
        time_direct(node, msg, node._on_image, 5)  # warm-up: first-call allocations
        rows.append({**label, "callback": "image", "encoding": encoding,
                     **ms_stats(time_direct(node, msg, node._on_image, iterations))})
    # image_transport: compressed, next to raw rgb8 of the same photograph (decode + convert + push).
    for encoding, msg in compressed_msgs(width, height).items():
        callback = node._on_image if encoding == "rgb8" else node._on_compressed_image
        time_direct(node, msg, callback, 5)
        rows.append({**label, "callback": "photo " + ("raw" if encoding == "rgb8" else "compressed"),
                     "encoding": encoding, "bytes": len(msg.data),
                     **ms_stats(time_direct(node, msg, callback, iterations))})
    depth = depth_msg(width, height)
    rows.append({**label, "callback": "depth", "encoding": DEPTH_ENCODING,
                 **ms_stats(time_direct(node, depth, node._on_depth, iterations))})
    # The depth callback only stores the message; the conversion runs on the worker per result.
    time_direct(node, depth, image_to_depth_m, 3)
    rows.append({**label, "callback": "depth->m (worker)", "encoding": DEPTH_ENCODING,
                 **ms_stats(time_direct(node, depth, image_to_depth_m, max(iterations // 4, 3)))})
    node.take_timings()
    return rows


# =========================================================================== 1b. loopback DDS
class Camera:
    """Publishes prepared color (+ depth) messages at a fixed rate from its own thread."""

    def __init__(self, io: Node, qos: QoSProfile) -> None:
        self.image_pub = io.create_publisher(Image, "image", qos)
        self.depth_pub = io.create_publisher(Image, "depth", qos)
        self.info_pub = io.create_publisher(CameraInfo, "camera_info", qos)
        self.published = 0

    def play(self, frames: Sequence[tuple[Image, Image | None]], rate_hz: float, seconds: float,
             info: CameraInfo | None = None, stop: threading.Event | None = None) -> int:
        """Publish for ``seconds`` (or until ``stop``); return how many color frames went out."""
        period, count = 1.0 / rate_hz, 0
        start = time.monotonic()
        while time.monotonic() - start < seconds and not (stop is not None and stop.is_set()):
            image, depth = frames[count % len(frames)]
            self._publish(image, depth, info)
            count += 1
            time.sleep(max(0.0, start + count * period - time.monotonic()))
        self.published += count
        return count

    def _publish(self, image: Image, depth: Image | None, info: CameraInfo | None) -> None:
        stamp_now(image)
        if depth is not None:
            depth.header.stamp = image.header.stamp
            self.depth_pub.publish(depth)
        if info is not None:
            info.header.stamp = image.header.stamp
            self.info_pub.publish(info)
        self.image_pub.publish(image)


class Spinner:
    """An executor in a daemon thread."""

    def __init__(self, context: Context, nodes: Sequence[Node]) -> None:
        self.executor = SingleThreadedExecutor(context=context)
        for node in nodes:
            self.executor.add_node(node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.thread.join(timeout=2.0)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")


def camera_qos(choice: str) -> QoSProfile:
    return qos_profile_sensor_data if choice == "sensor_data" else RECORD_QOS


def dds_rows(context: Context, sizes: Sequence[tuple[int, int]], rate_hz: float, seconds: float,
             qos: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for state in WORKER_STATES:
        stub = stub_for(state)
        ns = f"/bench_dds_{state.replace('-', '_')}"
        node = make_node(context, lambda _p, s=stub: s, ns, {"image_qos": qos, "depth_qos": qos})
        io = Node("bench_camera", namespace=ns, context=context)
        camera = Camera(io, camera_qos(qos))
        spinner = Spinner(context, [node])
        try:
            wait_for(lambda c=camera: c.image_pub.get_subscription_count() and c.depth_pub.get_subscription_count(),
                     10.0, "discovery")
            enter_state(node, stub, state, *sizes[0])
            for width, height in sizes:
                rows += _dds_size_rows(node, camera, state, width, height, rate_hz, seconds)
        finally:
            spinner.stop()
            node.destroy_node()
            io.destroy_node()
    return rows


def _dds_size_rows(node: TimedDecafNode, camera: Camera, state: str, width: int, height: int,
                   rate_hz: float, seconds: float) -> list[dict[str, Any]]:
    rows = []
    for encoding in COLOR_ENCODINGS:
        frames = [(color_msg(width, height, encoding, seed), depth_msg(width, height, seed)) for seed in range(3)]
        settle = min(0.2, seconds)
        camera.play(frames, rate_hz, min(0.3, seconds))  # warm-up: DDS buffers, first-size allocations
        time.sleep(settle)
        node.take_timings()
        published = camera.play(frames, rate_hz, seconds)
        time.sleep(settle)  # let the last messages land
        got = node.take_timings()
        label = {"transport": "dds", "worker": state, "size": f"{width}x{height}", "published": published}
        rows.append({**label, "callback": "image", "encoding": encoding, **ms_stats(got["image"]),
                     **_latency(got["image_lat"])})
        rows.append({**label, "callback": "depth", "encoding": DEPTH_ENCODING, **ms_stats(got["depth"]),
                     **_latency(got["depth_lat"])})
    return rows


def _latency(seconds: list[float]) -> dict[str, float]:
    stats = ms_stats(seconds)
    return {"received": stats["n"], "lat_median_ms": stats["median_ms"], "lat_p90_ms": stats["p90_ms"]}


# =========================================================================== 2/3. end to end
class Recorder(Node):
    """Arrival time (monotonic) of every ~/mask and ~/targets, and the newest status."""

    def __init__(self, namespace: str, context: Context) -> None:
        super().__init__("bench_recorder", namespace=namespace, context=context)
        self.lock = threading.Lock()
        self.masks: list[float] = []
        self.targets: list[tuple[float, int, str, int]] = []  # (t, goal_id, goal, n targets)
        self.status: Status | None = None
        self.create_subscription(Image, "decaf/mask", self._on_mask, RECORD_QOS)
        self.create_subscription(TargetArray, "decaf/targets", self._on_targets, RECORD_QOS)
        self.create_subscription(Status, "decaf/status", self._on_status, STATUS_QOS)
        self.goal_pub = self.create_publisher(String, "goal", RECORD_QOS)

    def _on_mask(self, msg: Image) -> None:
        with self.lock:
            self.masks.append(time.monotonic())

    def _on_targets(self, msg: TargetArray) -> None:
        with self.lock:
            self.targets.append((time.monotonic(), msg.goal_id, msg.goal, len(msg.targets)))

    def _on_status(self, msg: Status) -> None:
        self.status = msg

    def first_mask_after(self, t0: float) -> float | None:
        with self.lock:
            return next((t for t in self.masks if t > t0), None)

    def targets_between(self, goal_id: int, t0: float, t1: float) -> int:
        with self.lock:
            return sum(1 for t, gid, goal, _ in self.targets if gid == goal_id and goal and t0 <= t < t1)


@dataclass
class E2EOptions:
    """What one end-to-end run uses; ``settings`` are the node's core parameters (stated in the report)."""

    name: str
    factory: Callable[[Any], Any]
    settings: dict[str, Any]
    size: tuple[int, int]
    rate_hz: float
    goals: int
    track_seconds: float
    goal_timeout_s: float
    clip_length: int = 16
    frame_stride: int = 1


def sample_frames(width: int, height: int, count: int = 24) -> tuple[list[tuple[Image, Image]], CameraInfo]:
    """The bundled sample clip (a real photo seen by a moving camera) as the player's messages."""
    from decaf_ros.ros.sample import FRAME_ID, build_sample_clip

    prepared = [sample_messages(f, FRAME_ID, DEPTH_ENCODING)
                for f in build_sample_clip("astronaut", count, width, height)]
    frames = [(m.image, m.depth) for m in prepared]
    frames += frames[-2:0:-1]  # forward then backward: no jump when looping
    return frames, prepared[0].info  # one intrinsics for the loop: the 3D path only needs plausible numbers


def run_e2e(context: Context, opts: E2EOptions, times: PipelineTimes) -> dict[str, Any]:
    ns = "/bench_e2e_" + re.sub(r"\W", "_", opts.name)
    overrides = {**opts.settings, "clip_length": opts.clip_length, "frame_stride": opts.frame_stride,
                 "image_qos": "reliable", "depth_qos": "reliable", "camera_info_qos": "reliable"}
    node = make_node(context, opts.factory, ns, overrides)
    recorder = Recorder(ns, context)
    io = Node("bench_camera", namespace=ns, context=context)
    camera = Camera(io, RECORD_QOS)
    spinners = [Spinner(context, [node]), Spinner(context, [recorder])]
    stop = threading.Event()
    try:
        wait_loaded(recorder, opts.goal_timeout_s)
        frames, info = sample_frames(*opts.size)
        player = threading.Thread(target=camera.play, args=(frames, opts.rate_hz, 1e9, info, stop), daemon=True)
        player.start()
        wait_for(lambda: len(node.ring) >= opts.clip_length, 30.0, "a full clip in the ring")
        node.take_timings()
        result = _measure_goals(node, recorder, opts, times)
        timings = node.take_timings()
        result["callback_during_inference"] = ms_stats(timings["image"])
    finally:
        stop.set()
        for spinner in spinners:
            spinner.stop()
        node.destroy_node()
        recorder.destroy_node()
        io.destroy_node()
    return result


def wait_loaded(recorder: Recorder, timeout: float) -> None:
    """Wait for IDLE after loading; a load error ends the run with the node's reason."""
    def loaded() -> bool:
        status = recorder.status
        if status is not None and status.state == Status.ERROR:
            raise RuntimeError(f"the node could not load its models: {status.last_error}")
        return status is not None and status.state == Status.IDLE

    wait_for(loaded, timeout, "models loaded (status IDLE)")


def _measure_goals(node: TimedDecafNode, recorder: Recorder, opts: E2EOptions,
                   times: PipelineTimes) -> dict[str, Any]:
    latencies, waits, grounds, starts, tracks = [], [], [], [], []
    targets = regroundings = camera_frames = 0
    for goal_id in range(1, opts.goals + 1):
        recorder.goal_pub.publish(String(data="stop"))
        time.sleep(0.3)  # in-flight results of the previous goal land before the clock starts
        t0 = time.monotonic()
        recorder.goal_pub.publish(String(data=GOAL))
        t_mask = wait_for(lambda t=t0: recorder.first_mask_after(t), opts.goal_timeout_s,
                          f"first mask of goal {goal_id}")
        latencies.append(t_mask - t0)
        seq1 = node.frames_accepted
        time.sleep(opts.track_seconds)
        t_end = time.monotonic()
        # Read after the window: start_tracking runs after the first results are published.
        grounds += times.between("ground", t0, t_mask)[:1]
        # A grounding still running when the goal arrives is cancelled only between its stages.
        waits += [s - t0 for s, _ in times.ground if t0 <= s < t_mask][:1]
        starts += times.between("start_tracking", t0, t_end)[:1]
        targets += recorder.targets_between(goal_id, t_mask + 1e-6, t_end)
        tracks += times.between("track", t_mask, t_end)
        regroundings += len(times.between("ground", t_mask, t_end))
        camera_frames += node.frames_accepted - seq1
    window = opts.goals * opts.track_seconds
    track = ms_stats(tracks)
    return {
        "models": opts.name, "settings": {**opts.settings, "size": f"{opts.size[0]}x{opts.size[1]}",
                                          "camera_hz": opts.rate_hz, "clip_length": opts.clip_length},
        "goals": opts.goals, "goal_to_mask_ms": ms_stats(latencies)["median_ms"],
        "goal_to_mask_p90_ms": ms_stats(latencies)["p90_ms"], "ground_ms": ms_stats(grounds)["median_ms"],
        "goal_to_ground_start_ms": ms_stats(waits)["median_ms"],
        "start_tracking_ms": ms_stats(starts)["median_ms"], "window_s": window,
        "targets_per_s": targets / window, "tracked_fps": len(tracks) / window,
        "track_ms_median": track["median_ms"], "track_ms_p90": track["p90_ms"], "track_ms_max": track["max_ms"],
        "tracked_frames": len(tracks), "regroundings": regroundings,
        "planted_prompts": len(times.planted), "camera_frames": camera_frames,
    }


def tiny_options(args: argparse.Namespace, times: PipelineTimes) -> E2EOptions:
    from decaf_ros.core.pipeline import DecafPipeline, build_tiny_models

    mllm_dir, sam2_dir = build_tiny_models(Path(args.tiny_dir) if args.tiny_dir else None)
    settings = {"mllm": mllm_dir, "sam2": sam2_dir, "device": "cpu", "dtype": "float32",
                "sam2_dtype": "float32", **TINY_SETTINGS}
    factory = lambda params: instrument(DecafPipeline.from_config(params.core), times,  # noqa: E731
                                        plant=not args.no_plant)
    return E2EOptions("tiny", factory, settings, args.e2e_size, args.rate, args.goals, args.track_seconds,
                      args.goal_timeout)


def without_regrounding(opts: E2EOptions) -> E2EOptions:
    """The same run with min_track_score 0: the random tracker never triggers a re-grounding, so the
    window measures the tracking loop alone (what a confident real tracker gives)."""
    return replace(opts, name=f"{opts.name}, tracking only", settings={**opts.settings, "min_track_score": 0.0})


def real_options(args: argparse.Namespace, times: PipelineTimes) -> E2EOptions:
    """Real-size architectures with random weights, built on the GPU (no download)."""
    from decaf_ros.benchmark import ModelSet, build_pipeline
    from decaf_ros.core.config import DecafConfig

    mllm, _, sam2 = args.real_models.partition(":")
    settings = {"device": "cuda", "dtype": "bfloat16", "sam2_dtype": "float32",
                "num_key_frames": args.real_key_frames, "video_max_tokens": args.real_video_max_tokens,
                "max_new_tokens": args.real_gen_tokens, "frame_batch_size": 4}
    config = DecafConfig(**settings)

    def factory(_params: Any) -> Any:
        return instrument(build_pipeline(ModelSet(mllm, sam2), config, args.tiny_dir), times,
                          plant=not args.no_plant)

    return E2EOptions(args.real_models, factory, settings, args.e2e_size, args.rate, args.goals,
                      args.track_seconds, max(args.goal_timeout, 300.0), clip_length=32, frame_stride=2)


def real_size_available() -> tuple[bool, str]:
    if not torch.cuda.is_available():
        return False, "real-size GPU numbers need a CUDA GPU (none here); skipped"
    try:
        import decaf_ros.core.model_configs  # noqa: F401
    except ImportError:
        return False, "decaf_ros.core.model_configs is missing; real-size run skipped"
    return True, ""


# =========================================================================== report
def _fmt_row(row: dict[str, Any]) -> str:
    dds = (f"{row['received']:>4}/{row['published']:<4} {row['lat_median_ms']:8.2f} {row['lat_p90_ms']:8.2f}"
           if row["transport"] == "dds" else f"{'':>9} {'':>8} {'':>8}")
    return (f"{row['transport']:<6} {row['worker']:<9} {row['size']:>9} {row['callback']:<17} "
            f"{row['encoding']:<6} {row['n']:>5} {row['median_ms']:8.3f} {row['p90_ms']:8.3f} "
            f"{row['max_ms']:8.3f}  {dds}")


def compressed_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median callback cost of each compressed encoding / raw rgb8 of the same photo, same worker and size."""
    out = []
    direct = [r for r in rows if r["transport"] == "direct" and r["callback"].startswith("photo")]
    for raw in (r for r in direct if r["encoding"] == "rgb8"):
        for row in direct:
            if row["encoding"] != "rgb8" and (row["worker"], row["size"]) == (raw["worker"], raw["size"]):
                out.append({"worker": row["worker"], "size": row["size"], "encoding": row["encoding"],
                            "raw_median_ms": raw["median_ms"], "median_ms": row["median_ms"],
                            "ratio": row["median_ms"] / max(raw["median_ms"], 1e-9),
                            "bytes_ratio": row["bytes"] / max(raw["bytes"], 1)})
    return out


def format_ratios(ratios: list[dict[str, Any]]) -> str:
    lines = ["Compressed vs raw image callback (median, same photo, same run)"]
    lines += [f"  {r['worker']:<9} {r['size']:>9} {r['encoding']:<6}: {r['median_ms']:7.3f} ms vs rgb8 "
              f"{r['raw_median_ms']:7.3f} ms = {r['ratio']:5.1f}x the cost, {r['bytes_ratio']:.3f}x the bytes"
              for r in ratios]
    return "\n".join(lines)


# =========================================================================== 4. lifecycle memory
def lifecycle_memory(context: Context, args: argparse.Namespace) -> dict[str, Any]:
    """RSS (and CUDA memory) with the models loaded (active) and after deactivate released them.

    Models: the tiny MLLM with a real-size SAM2.1-hiera-tiny (random weights, ~39M parameters), so
    the released memory is large enough to see next to the process's libraries.
    """
    from decaf_ros.benchmark import ModelSet, build_pipeline
    from decaf_ros.core.config import DecafConfig
    from decaf_ros.devtools.memory import rss_mb

    config = DecafConfig(device="cuda" if torch.cuda.is_available() else "cpu", **TINY_SETTINGS)
    node = make_node(context, lambda _p: build_pipeline(ModelSet("tiny", args.lifecycle_sam2), config,
                                                        args.tiny_dir), "/bench_lifecycle", {})
    try:
        cuda = torch.cuda.is_available()
        loaded = {"rss_mb": rss_mb(), "cuda_mb": torch.cuda.memory_allocated() / 2**20 if cuda else 0.0}
        node.trigger_deactivate()
        released = {"rss_mb": rss_mb(), "cuda_mb": torch.cuda.memory_allocated() / 2**20 if cuda else 0.0}
    finally:
        node.destroy_node()
    result = {"models": f"tiny+{args.lifecycle_sam2}", "active": loaded, "inactive": released,
              "rss_released_mb": loaded["rss_mb"] - released["rss_mb"],
              "cuda_released_mb": loaded["cuda_mb"] - released["cuda_mb"]}
    print(f"\nLifecycle memory ({result['models']}): RSS {loaded['rss_mb']:.0f} MiB active -> "
          f"{released['rss_mb']:.0f} MiB after deactivate ({result['rss_released_mb']:.0f} MiB released)"
          + (f"; CUDA {loaded['cuda_mb']:.0f} -> {released['cuda_mb']:.0f} MiB" if cuda else ""), flush=True)
    return result


def format_callbacks(rows: list[dict[str, Any]]) -> str:
    head = (f"{'via':<6} {'worker':<9} {'size':>9} {'callback':<17} {'enc':<6} {'n':>5} {'med ms':>8} "
            f"{'p90 ms':>8} {'max ms':>8}  {'recv/pub':>9} {'lat med':>8} {'lat p90':>8}")
    return "\n".join(["Per-frame callback cost (conversion + ring push)", head, "-" * len(head),
                      *(_fmt_row(r) for r in rows)])


def format_e2e(run: dict[str, Any]) -> str:
    s = run["settings"]
    cb = run["callback_during_inference"]
    lines = [
        f"End to end: {run['models']} ({s.get('device')}); settings: "
        + ", ".join(f"{k}={v}" for k, v in s.items() if k not in ("mllm", "sam2")),
        f"  goal -> first ~/mask   : median {run['goal_to_mask_ms']:.0f} ms, p90 {run['goal_to_mask_p90_ms']:.0f} ms "
        f"over {run['goals']} goal(s) (worker started grounding after {run['goal_to_ground_start_ms']:.0f} ms; "
        f"pipeline.ground median {run['ground_ms']:.0f} ms, "
        f"start_tracking {run['start_tracking_ms']:.1f} ms)",
        f"  tracking               : {run['targets_per_s']:.1f} ~/targets msg/s, {run['tracked_fps']:.1f} tracked "
        f"frames/s over {run['window_s']:.1f} s; camera delivered {run['camera_frames']} frames",
        f"  pipeline.track         : median {run['track_ms_median']:.1f} ms, p90 {run['track_ms_p90']:.1f} ms, "
        f"max {run['track_ms_max']:.1f} ms",
        f"  tracked vs re-grounded : {run['tracked_frames']} tracked frames, {run['regroundings']} re-grounding(s) "
        f"(score < min_track_score); {run['planted_prompts']} of {run['goals'] + run['regroundings']} groundings "
        f"tracked from a planted centre box (grounded mask empty on the last frame)",
        f"  image callback meanwhile: median {cb['median_ms']:.3f} ms, p90 {cb['p90_ms']:.3f} ms, "
        f"max {cb['max_ms']:.3f} ms (n={cb['n']})",
    ]
    return "\n".join(lines)


def meta(args: argparse.Namespace) -> dict[str, Any]:
    return {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
            "rmw": rclpy.utilities.get_rmw_implementation_identifier(), "argv": sys.argv[1:],
            "iterations": args.iterations, "dds_seconds": args.dds_seconds, "rate_hz": args.rate,
            "qos": args.qos}


# =========================================================================== main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench_node", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--sizes", type=lambda t: [parse_size(s) for s in t.split(",")],
                   default=[(640, 480), (1280, 720)], help="callback sizes WxH,... (default 640x480,1280x720)")
    p.add_argument("--iterations", type=int, default=300, help="direct calls per callback row")
    p.add_argument("--dds-seconds", type=float, default=3.0, help="publishing time per DDS row")
    p.add_argument("--rate", type=float, default=30.0, help="camera rate in Hz (DDS rows and end to end)")
    p.add_argument("--qos", choices=("sensor_data", "reliable"), default="sensor_data",
                   help="camera QoS of the DDS rows (the node's default is sensor_data)")
    p.add_argument("--e2e-size", type=parse_size, default=(640, 480), help="end-to-end frame size")
    p.add_argument("--goals", type=int, default=3, help="goals per end-to-end run")
    p.add_argument("--track-seconds", type=float, default=8.0, help="tracking window per goal")
    p.add_argument("--goal-timeout", type=float, default=120.0, help="seconds to wait for a goal's first mask")
    p.add_argument("--no-plant", action="store_true",
                   help="never replace an empty grounded prompt by a centre box (then random models may not track)")
    p.add_argument("--tiny-dir", default=None, help="folder of the tiny models (default: user cache)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: the tiny models gain nothing from more)")
    p.add_argument("--real-models", default="qwen2.5-vl-3b:sam2.1-hiera-tiny", help="MLLM:SAM2 for the GPU run")
    p.add_argument("--real-key-frames", type=int, default=16)
    p.add_argument("--real-video-max-tokens", type=int, default=400)
    p.add_argument("--real-gen-tokens", type=int, default=4, help="tokens generated per answer (GPU run)")
    p.add_argument("--lifecycle-sam2", default="sam2.1-hiera-tiny",
                   help="SAM2 of the lifecycle-memory part: a model_configs name (real size) or 'tiny'")
    p.add_argument("--skip", default="", help="comma list of parts to skip: direct,dds,tiny,real,lifecycle")
    p.add_argument("--json", default=None, help="write the numbers to this JSON file")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every part of the benchmark; returns the report (also what ``--json`` writes)."""
    torch.set_num_threads(args.threads)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    report: dict[str, Any] = {"meta": meta(args), "callbacks": [], "compressed_ratios": [], "e2e": [],
                              "real_size": {}, "lifecycle": {}}
    context = Context()
    rclpy.init(context=context)
    try:
        if "direct" not in skip:
            report["callbacks"] += direct_rows(context, args.sizes, args.iterations)
        if "dds" not in skip:
            report["callbacks"] += dds_rows(context, args.sizes, args.rate, args.dds_seconds, args.qos)
        print(format_callbacks(report["callbacks"]), flush=True)
        report["compressed_ratios"] = compressed_ratios(report["callbacks"])
        if report["compressed_ratios"]:
            print("\n" + format_ratios(report["compressed_ratios"]), flush=True)
        if "lifecycle" not in skip:
            report["lifecycle"] = lifecycle_memory(context, args)
        if "tiny" not in skip:
            for variant in (lambda o: o, without_regrounding):
                times = PipelineTimes()
                report["e2e"].append(run_e2e(context, variant(tiny_options(args, times)), times))
                print("\n" + format_e2e(report["e2e"][-1]), flush=True)
        report["real_size"] = _run_real(context, args, skip)
    finally:
        rclpy.try_shutdown(context=context)
    return report


def _run_real(context: Context, args: argparse.Namespace, skip: set[str]) -> dict[str, Any]:
    available, reason = real_size_available()
    if "real" in skip or not available:
        reason = reason or "skipped (--skip real)"
        print(f"\nReal-size models: {reason}", flush=True)
        return {"skipped": reason}
    times = PipelineTimes()
    result = run_e2e(context, real_options(args, times), times)
    print("\n" + format_e2e(result), flush=True)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
