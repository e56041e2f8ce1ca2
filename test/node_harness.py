"""Drive a DecafNode over real rclpy in this process: a helper node feeds it and records its outputs.

Deterministic by construction: every wait is on an observed message or state (with generous
timeouts for a loaded machine), and ``close`` stops the executor thread before any node is destroyed.
"""
from __future__ import annotations

import itertools
import os
import threading
import time
from collections import defaultdict
from typing import Any, Callable

import numpy as np
from geometry_msgs.msg import PointStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header, String
from visualization_msgs.msg import MarkerArray

from decaf_ros.msg import Status, TargetArray
from decaf_ros.ros.image_conversion import array_to_image, rgb_to_compressed
from decaf_ros.ros.node import DecafNode
from fake_pipeline import FakePipeline

W, H = 64, 48
FX = FY = 50.0
RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
_namespaces = itertools.count()


def unique_namespace(prefix: str) -> str:
    """A namespace no other test run on this machine uses: concurrent runs may share a ROS domain
    (conftest.py derives it from the process id, 100 values) and would otherwise talk to each other."""
    return f"/{prefix}_{os.getpid()}_{next(_namespaces)}"


def header_at(seq: int, frame_id: str = "cam") -> Header:
    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = 100 + seq // 10, (seq % 10) * 100_000_000
    return header


def stamp_key(header: Header) -> tuple[int, int]:
    return header.stamp.sec, header.stamp.nanosec


def camera_info(width: int = W, height: int = H) -> CameraInfo:
    return CameraInfo(header=header_at(0), width=width, height=height,
                      k=[FX, 0.0, (width - 1) / 2, 0.0, FY, (height - 1) / 2, 0.0, 0.0, 1.0])


def depth_image(header: Header, depth_m: np.ndarray) -> Image:
    data = depth_m.astype(np.float32)
    return Image(header=header, height=data.shape[0], width=data.shape[1], encoding="32FC1",
                 step=data.shape[1] * 4, data=data.tobytes())


def make_image(seq: int, width: int = W, height: int = H) -> np.ndarray:
    rng = np.random.default_rng(seq)
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


class Harness:
    """A DecafNode plus a helper node that feeds it and records everything it publishes."""

    OUTPUTS = {"mask": Image, "overlay": Image, "targets": TargetArray, "centroid": PointStamped,
               "markers": MarkerArray, "status": Status}

    def __init__(self, context: Any, fake: FakePipeline | None = None, factory: Callable | None = None,
                 **overrides: Any) -> None:
        """Node parameters in ``overrides``; with ``autostart=False`` the node waits unconfigured and
        discovery covers only what exists then (status); ``image_transport="compressed"`` makes
        ``send_frame`` publish JPEG CompressedImage on ``image/compressed``."""
        self.fake = fake or FakePipeline()
        self.ns = unique_namespace("decaf_test")
        params = {"clip_length": 8, "frame_stride": 1, "regrounding_period_s": 0.0, "depth_erosion_px": 1,
                  "min_valid_depth_px": 5, "status_rate_hz": 5.0} | overrides
        self.node = DecafNode(pipeline_factory=factory or (lambda _params: self.fake), namespace=self.ns,
                              context=context,
                              parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        self.io = Node("harness", namespace=self.ns, context=context)
        self.received: dict[str, list[Any]] = defaultdict(list)
        self._lock = threading.Lock()
        self.subs = [self.io.create_subscription(t, f"decaf/{name}", self._recorder(name), RELIABLE)
                     for name, t in self.OUTPUTS.items()]
        self.compressed = params.get("image_transport") == "compressed"
        self.image_pub = (self.io.create_publisher(CompressedImage, "image/compressed", RELIABLE) if self.compressed
                          else self.io.create_publisher(Image, "image", RELIABLE))
        self.depth_pub = self.io.create_publisher(Image, "depth", RELIABLE)
        self.info_pub = self.io.create_publisher(CameraInfo, "camera_info", RELIABLE)
        self.goal_pub = self.io.create_publisher(String, "goal", RELIABLE)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.io)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        self._params = params
        try:
            if params.get("autostart", True):
                self.wait_active()
            else:
                self.wait_for(lambda: self.subs[-1].get_publisher_count() > 0, what="status discovery")
        except BaseException:
            self.close()  # no executor thread may outlive a failed set-up
            raise

    def wait_active(self) -> None:
        """Until the active node's camera and goal subscriptions and all its outputs are matched."""
        pubs = [self.image_pub, self.goal_pub]
        pubs += [self.depth_pub] if self._params.get("depth_topic", "depth") else []
        pubs += [self.info_pub] if self._params.get("camera_info_topic", "camera_info") else []
        self.wait_for(lambda: all(p.get_subscription_count() > 0 for p in pubs)
                      and all(s.get_publisher_count() > 0 for s in self.subs), what="discovery")

    def _recorder(self, name: str) -> Callable[[Any], None]:
        def record(msg: Any) -> None:
            with self._lock:
                self.received[name].append(msg)
        return record

    def got(self, name: str) -> list[Any]:
        with self._lock:
            return list(self.received[name])

    @staticmethod
    def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.005)
        raise AssertionError(f"timed out waiting for {what}")

    def wait_status(self, predicate: Callable[[Status], bool], what: str, timeout: float = 15.0) -> Status:
        return self.wait_for(lambda: next((s for s in reversed(self.got("status")) if predicate(s)), None),
                             timeout, what)

    def send_frame(self, seq: int, image: np.ndarray | None = None, depth_m: np.ndarray | None = None,
                   info: CameraInfo | None = None, wait: bool = True) -> Header:
        header = header_at(seq)
        image = make_image(seq) if image is None else image
        if info is not None:
            self.info_pub.publish(info)
        if depth_m is not None:
            self.depth_pub.publish(depth_image(header, depth_m))
        before = self.node.frames_accepted
        if self.compressed:
            self.image_pub.publish(rgb_to_compressed(image, "jpeg", header))
        else:
            self.image_pub.publish(array_to_image(image, "rgb8", header))
        if wait:
            self.wait_for(lambda: self.node.frames_accepted > before, what=f"frame {seq}")
        return header

    def send_raw(self, msg: Image) -> None:
        self.image_pub.publish(msg)

    def goal(self, text: str) -> None:
        self.goal_pub.publish(String(data=text))

    def targets_for(self, goal_text: str, timeout: float = 15.0,
                    stage: int | None = TargetArray.STAGE_DENSE) -> TargetArray:
        """The first TargetArray for ``goal_text`` of ``stage`` (the dense grounding result by default)."""
        return self.wait_for(lambda: next((t for t in self.got("targets") if t.goal == goal_text
                                           and stage in (None, t.stage)), None),
                             timeout, f"targets for {goal_text!r}")

    def output_for(self, name: str, targets: TargetArray) -> Any:
        """The message on output ``name`` stamped like ``targets`` and published right after it."""
        index = self.got("targets").index(targets)
        header = (lambda m: m.markers[0].header) if name == "markers" else (lambda m: m.header)
        return self.wait_for(lambda: next((m for m in self.got(name)[index:]
                                           if stamp_key(header(m)) == stamp_key(targets.header)), None),
                             what=f"{name} for {targets.goal!r}")

    def stop_spinning(self) -> None:
        """Stop the executor and wait for its thread, so no callback runs on a node being destroyed."""
        self.executor.shutdown()
        self.thread.join(timeout=10.0)
        assert not self.thread.is_alive(), "executor thread still spinning"

    def close(self) -> None:
        self.fake.gate.set()
        self.stop_spinning()
        self.node.destroy_node()
        self.io.destroy_node()


def flat_depth(value: float = 1.0, width: int = W, height: int = H) -> np.ndarray:
    return np.full((height, width), value, dtype=np.float32)
