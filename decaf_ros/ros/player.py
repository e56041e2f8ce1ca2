"""``decaf_player``: publishes the bundled sample clip as a camera (color + aligned depth + CameraInfo).

Every frame's Image, depth Image and CameraInfo share one stamp and frame_id, like a real RGB-D driver
with registered depth, so the node's depth pairing and 3D path are exercised. Optionally publishes one
goal after N frames, which makes a self-contained demo.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header, String

from decaf_ros.ros.spin import spin_node
from decaf_ros.ros.sample import FRAME_ID, PHOTOS, SampleFrame, build_sample_clip, depth_to_encoding

RELIABLE = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)


def _describe(description: str, low: float | None = None, high: float | None = None,
              integer: bool = False) -> ParameterDescriptor:
    desc = ParameterDescriptor(description=description, read_only=True)
    if low is not None and integer:
        desc.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=1)]
    elif low is not None:
        desc.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)]
    return desc


PLAYER_PARAMS = {
    "rate_hz": (10.0, _describe("frames per second", 0.1, 120.0)),
    "photo": ("astronaut", _describe(f"sample photo: {', '.join(PHOTOS)}")),
    "num_frames": (48, _describe("frames in the clip (played forward, then backward)", 1, 1000, True)),
    "width": (640, _describe("image width", 2, 4096, True)),
    "height": (480, _describe("image height", 2, 4096, True)),
    "frame_id": (FRAME_ID, _describe("frame_id of every header")),
    "depth_encoding": ("16UC1", _describe("16UC1 (mm) or 32FC1 (m); empty = no depth")),
    "loop": (True, _describe("keep playing after the clip ends")),
    "goal": ("", _describe("goal published once; empty = none")),
    "goal_after_frames": (16, _describe("publish the goal after this many frames", 0, 100000, True)),
    "qos": ("reliable", _describe("camera publishers: reliable (works with any subscriber) or sensor_data")),
}


def raw_image(array: np.ndarray, encoding: str, header: Header) -> Image:
    """An Image holding ``array``'s bytes as they are (no conversion), labelled ``encoding``."""
    channels = 1 if array.ndim == 2 else array.shape[2]
    return Image(header=header, height=array.shape[0], width=array.shape[1], encoding=encoding,
                 is_bigendian=0, step=array.shape[1] * channels * array.dtype.itemsize, data=array.tobytes())


@dataclass
class SampleMessages:
    """A frame's messages, built once; only the stamps change when published."""

    image: Image
    depth: Image | None
    info: CameraInfo


def sample_messages(frame: SampleFrame, frame_id: str, depth_encoding: str) -> SampleMessages:
    """Color, depth (when ``depth_encoding`` is set) and CameraInfo of one sample frame, one header."""
    header = Header(frame_id=frame_id)
    height, width = frame.rgb.shape[:2]
    depth = (raw_image(depth_to_encoding(frame.depth_m, depth_encoding), depth_encoding, header)
             if depth_encoding else None)
    info = CameraInfo(header=header, height=height, width=width, distortion_model="plumb_bob",
                      d=[0.0] * 5, k=frame.K.reshape(-1).tolist(),
                      r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                      p=[frame.K[0, 0], 0.0, frame.K[0, 2], 0.0, 0.0, frame.K[1, 1], frame.K[1, 2], 0.0,
                         0.0, 0.0, 1.0, 0.0])
    return SampleMessages(image=raw_image(frame.rgb, "rgb8", header), depth=depth, info=info)


class DecafPlayer(Node):
    """Plays the sample clip on ``image``, ``depth``, ``camera_info``; optionally one ``goal``."""

    def __init__(self, **node_kwargs) -> None:
        super().__init__("decaf_player", **node_kwargs)
        for name, (default, descriptor) in PLAYER_PARAMS.items():
            self.declare_parameter(name, default, descriptor)
        get = lambda name: self.get_parameter(name).value  # noqa: E731
        if get("depth_encoding") not in ("", "16UC1", "32FC1"):
            raise ValueError(f"depth_encoding must be '', 16UC1 or 32FC1, got {get('depth_encoding')!r}")
        clip = build_sample_clip(get("photo"), get("num_frames"), get("width"), get("height"))
        self._frames = [sample_messages(f, get("frame_id"), get("depth_encoding")) for f in clip]
        self._loop, self._goal = get("loop"), get("goal")
        self._goal_after = get("goal_after_frames")
        qos = qos_profile_sensor_data if get("qos") == "sensor_data" else RELIABLE
        self._image_pub = self.create_publisher(Image, "image", qos)
        self._depth_pub = self.create_publisher(Image, "depth", qos)
        self._info_pub = self.create_publisher(CameraInfo, "camera_info", qos)
        self._goal_pub = self.create_publisher(String, "goal", RELIABLE)
        self.published = 0
        self._timer = self.create_timer(1.0 / get("rate_hz"), self._tick)
        self.get_logger().info(f"playing {len(self._frames)} frames of '{get('photo')}' at {get('rate_hz')} Hz")

    def _index(self) -> int | None:
        n = len(self._frames)
        if not self._loop and self.published >= n:
            return None
        period = max(2 * n - 2, 1)  # forward then backward: no jump when looping
        i = self.published % period
        return i if i < n else period - i

    def _tick(self) -> None:
        index = self._index()
        if index is None:
            self._timer.cancel()
            return
        frame = self._frames[index]
        stamp = self.get_clock().now().to_msg()
        for msg in (frame.image, frame.depth, frame.info):
            if msg is not None:
                msg.header.stamp = stamp
        self._image_pub.publish(frame.image)
        if frame.depth is not None:
            self._depth_pub.publish(frame.depth)
        self._info_pub.publish(frame.info)
        self.published += 1
        if self._goal and self.published == max(self._goal_after, 1):
            self._goal_pub.publish(String(data=self._goal))
            self.get_logger().info(f"goal published: {self._goal!r}")


def main(args: list[str] | None = None) -> int:
    return spin_node(DecafPlayer, args)
