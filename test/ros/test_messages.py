"""ROS 2 smoke test for the decaf_ros interfaces.

The messages must be rosidl-generated types (not hand-written Python) and must cross a real DDS
link: a publisher in one rclpy context (one DDS participant) and a subscriber in another, over
loopback, every field compared after the round trip.
"""
from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import rclpy
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.type_support import check_is_valid_msg_type
from sensor_msgs.msg import Image, RegionOfInterest
from std_msgs.msg import Header

from decaf_ros.msg import Status, Target, TargetArray

# Reliable + transient-local: a sample published before the DDS endpoints have matched is still
# delivered once they do, so no discovery polling or sleeping is needed.
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
RECEIVE_TIMEOUT_S = 15.0
STAMP = Time(sec=1_700_000_000, nanosec=123_456_789)
FRAME = "camera_color_optical_frame"


@pytest.fixture(scope="module")
def publisher_node(rclpy_context: Context) -> Iterator[Node]:
    node = Node(f"decaf_test_pub_{uuid.uuid4().hex[:6]}", context=rclpy_context)
    yield node
    node.destroy_node()


@pytest.fixture(scope="module")
def subscriber() -> Iterator[tuple[Node, SingleThreadedExecutor]]:
    """A node in a second context, i.e. a second DDS participant, with its own executor."""
    context = Context()
    rclpy.init(context=context)
    node = Node(f"decaf_test_sub_{uuid.uuid4().hex[:6]}", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    yield node, executor
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown(context=context)


def round_trip(publisher_node: Node, subscriber: tuple[Node, SingleThreadedExecutor],
               msg: Any) -> Any:
    """Publish `msg` on a fresh topic and return what the other participant received."""
    sub_node, executor = subscriber
    msg_type = type(msg)
    topic = f"/decaf_test_{uuid.uuid4().hex[:8]}/{msg_type.__name__.lower()}"
    received: list[Any] = []
    sub = sub_node.create_subscription(msg_type, topic, received.append, LATCHED)
    pub = publisher_node.create_publisher(msg_type, topic, LATCHED)
    try:
        pub.publish(msg)
        deadline = time.monotonic() + RECEIVE_TIMEOUT_S
        while not received and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
    finally:
        publisher_node.destroy_publisher(pub)
        sub_node.destroy_subscription(sub)
    assert received, f"no {msg_type.__name__} received on {topic} within {RECEIVE_TIMEOUT_S} s"
    return received[0]


def make_mask(width: int = 6, height: int = 4) -> Image:
    """mono8 mask, 0/255, with the object in the right half."""
    data = bytes(255 if col >= width // 2 else 0 for _ in range(height) for col in range(width))
    return Image(header=Header(stamp=STAMP, frame_id=FRAME), height=height, width=width,
                 encoding="mono8", is_bigendian=0, step=width, data=data)


def make_target(target_id: int = 0) -> Target:
    return Target(
        goal_id=7, goal="the cup the person is about to pick up", target_id=target_id,
        label="cup", score=0.875, centroid_u=4.5, centroid_v=1.5,
        bbox=RegionOfInterest(x_offset=3, y_offset=0, width=3, height=4, do_rectify=False),
        area_px=12, centroid_3d=Point(x=0.125, y=-0.25, z=1.5), centroid_3d_valid=True,
        mask=make_mask())


@pytest.mark.parametrize("msg_type", [Target, TargetArray, Status])
def test_types_are_rosidl_generated(msg_type: type) -> None:
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", msg_type.__name__).lower()
    assert msg_type.__module__ == f"decaf_ros.msg._{snake}"
    assert type(msg_type).__name__ == f"Metaclass_{msg_type.__name__}"
    check_is_valid_msg_type(msg_type)  # raises without rosidl type support
    assert msg_type._TYPE_SUPPORT is not None
    assert msg_type.get_fields_and_field_types()


def test_field_types() -> None:
    target = Target.get_fields_and_field_types()
    assert target["bbox"] == "sensor_msgs/RegionOfInterest"
    assert target["centroid_3d"] == "geometry_msgs/Point"
    assert target["centroid_3d_valid"] == "boolean"
    assert target["mask"] == "sensor_msgs/Image"
    assert (target["goal_id"], target["score"], target["area_px"]) == ("uint32", "float", "uint32")
    assert TargetArray.get_fields_and_field_types()["targets"] == "sequence<decaf_ros/Target>"
    status = Status.get_fields_and_field_types()
    assert status["header"] == "std_msgs/Header" and status["state"] == "uint8"
    assert status["frames_dropped"] == "uint32" and status["grounding_latency_ms"] == "float"


def test_status_constants() -> None:
    assert (Status.IDLE, Status.LOADING, Status.GROUNDING, Status.TRACKING, Status.ERROR) == (
        0, 1, 2, 3, 4)


def test_generated_setters_check_types() -> None:
    # Generated setters validate only when asked (check_fields or ROS_PYTHON_CHECK_FIELDS=1).
    with pytest.raises(AssertionError):
        Target(check_fields=True, goal_id=-1)
    with pytest.raises(AssertionError):
        Target(check_fields=True, label=3)
    assert Target(check_fields=True, goal_id=3, label="cup").goal_id == 3


def test_image_round_trip(publisher_node: Node, subscriber: Any) -> None:
    height, width = 480, 640  # big enough to need DDS fragmentation
    data = bytes((i * 7) % 256 for i in range(height * width * 3))
    sent = Image(header=Header(stamp=STAMP, frame_id=FRAME), height=height, width=width,
                 encoding="rgb8", is_bigendian=0, step=width * 3, data=data)
    got = round_trip(publisher_node, subscriber, sent)
    assert got == sent
    assert bytes(got.data) == data


def test_target_round_trip(publisher_node: Node, subscriber: Any) -> None:
    sent = make_target()
    got = round_trip(publisher_node, subscriber, sent)
    assert got == sent
    assert got.centroid_3d.z == pytest.approx(1.5) and got.centroid_3d_valid
    assert set(bytes(got.mask.data)) == {0, 255} and got.mask.encoding == "mono8"


def test_target_array_round_trip(publisher_node: Node, subscriber: Any) -> None:
    sent = TargetArray(header=Header(stamp=STAMP, frame_id=FRAME), goal_id=7,
                       goal="the cup the person is about to pick up",
                       targets=[make_target(0), make_target(1)])
    got = round_trip(publisher_node, subscriber, sent)
    assert got == sent
    assert [t.target_id for t in got.targets] == [0, 1]
    assert got.header.frame_id == FRAME and got.header.stamp == STAMP


def test_empty_target_array_round_trip(publisher_node: Node, subscriber: Any) -> None:
    sent = TargetArray(header=Header(stamp=STAMP, frame_id=FRAME), goal_id=8, goal="a unicorn")
    got = round_trip(publisher_node, subscriber, sent)
    assert got == sent and got.targets == []


def test_status_round_trip(publisher_node: Node, subscriber: Any) -> None:
    sent = Status(header=Header(stamp=STAMP), state=Status.TRACKING, state_name="TRACKING",
                  goal_id=7, goal="the red mug", last_error="",
                  grounding_latency_ms=1234.5, tracking_latency_ms=42.25,
                  frames_buffered=16, frames_dropped=3,
                  mllm_model="Qwen/Qwen2.5-VL-7B-Instruct", sam2_model="facebook/sam2.1-hiera-large")
    got = round_trip(publisher_node, subscriber, sent)
    assert got == sent
    assert got.state == Status.TRACKING
    assert got.tracking_latency_ms == pytest.approx(42.25)
