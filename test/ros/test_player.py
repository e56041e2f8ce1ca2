"""Sample clip + decaf_player: real photos, camera motion, aligned depth, consistent stamps."""
from __future__ import annotations

import threading
from collections import defaultdict

import numpy as np
import pytest
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from decaf_ros.ros.image_conversion import image_to_depth_m, image_to_rgb
from decaf_ros.ros.player import DecafPlayer
from decaf_ros.ros.sample import FRAME_ID, build_sample_clip, depth_to_encoding
from node_harness import Harness, unique_namespace

RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


def test_sample_clip_moves_over_a_real_photo():
    clip = build_sample_clip("astronaut", num_frames=6, width=80, height=60)
    assert len(clip) == 6
    first, last = clip[0], clip[-1]
    assert first.rgb.shape == (60, 80, 3) and first.rgb.dtype == np.uint8
    assert first.rgb.std() > 20  # a photo, not a flat color
    assert np.abs(first.rgb.astype(int) - last.rgb.astype(int)).mean() > 10  # the camera moved
    assert first.depth_m.shape == (60, 80) and 0.5 < np.nanmin(first.depth_m) < np.nanmax(first.depth_m) < 3.0
    assert first.K[0, 0] > 0 and first.K[0, 0] == pytest.approx(first.K[1, 1], rel=1e-6)
    assert not np.allclose(first.K, clip[3].K)  # zoom changes the focal length


def test_depth_encodings_roundtrip():
    depth = build_sample_clip("coffee", num_frames=1, width=16, height=12)[0].depth_m
    mm = depth_to_encoding(depth, "16UC1")
    assert mm.dtype == np.uint16
    msg = Image(height=12, width=16, encoding="16UC1", step=32, data=mm.tobytes())
    np.testing.assert_allclose(image_to_depth_m(msg), depth, atol=1e-3)
    with pytest.raises(ValueError):
        depth_to_encoding(depth, "8UC1")


def test_player_publishes_image_depth_info_with_matching_stamps(rclpy_context):
    ns = unique_namespace("player_test")
    player = DecafPlayer(namespace=ns, context=rclpy_context, parameter_overrides=[
        Parameter("width", value=64), Parameter("height", value=48), Parameter("num_frames", value=4),
        Parameter("rate_hz", value=50.0), Parameter("goal", value="the astronaut"),
        Parameter("goal_after_frames", value=3), Parameter("photo", value="chelsea")])
    sink = Node("sink", namespace=ns, context=rclpy_context)
    got: dict[str, list] = defaultdict(list)
    subs = [sink.create_subscription(msg_type, name, lambda m, n=name: got[n].append(m), RELIABLE)
            for name, msg_type in (("image", Image), ("depth", Image), ("camera_info", CameraInfo),
                                   ("goal", String))]
    pubs = [player._image_pub, player._depth_pub, player._info_pub, player._goal_pub]
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(sink)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        # Both ends must have matched before the player ticks: the test reads frames by position and
        # the goal is published once, so a message sent before matching would shift or lose them.
        Harness.wait_for(lambda: all(p.get_subscription_count() > 0 for p in pubs)
                         and all(s.get_publisher_count() > 0 for s in subs), what="player and sink matched")
        executor.add_node(player)
        Harness.wait_for(lambda: len(got["image"]) >= 8 and got["goal"], what="8 frames and the goal")
    finally:
        executor.shutdown()
        thread.join(timeout=10.0)
        player.destroy_node()
        sink.destroy_node()
    assert not thread.is_alive()
    assert len(got["image"]) >= 8 and [g.data for g in got["goal"]] == ["the astronaut"]
    stamp = lambda m: (m.header.stamp.sec, m.header.stamp.nanosec)  # noqa: E731
    depth_by_stamp = {stamp(m): m for m in got["depth"]}
    info_by_stamp = {stamp(m): m for m in got["camera_info"]}
    stamps = [stamp(m) for m in got["image"]]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    for image in got["image"]:
        assert image.header.frame_id == FRAME_ID and image.encoding == "rgb8"
        depth, info = depth_by_stamp[stamp(image)], info_by_stamp[stamp(image)]
        assert depth.header.frame_id == FRAME_ID and depth.encoding == "16UC1"
        assert (depth.width, depth.height, info.width, info.height) == (64, 48, 64, 48)
        assert image_to_rgb(image).shape == (48, 64, 3)
        assert np.nanmedian(image_to_depth_m(depth)) == pytest.approx(1.5, abs=0.4)
        assert info.k[0] > 0 and info.k[8] == 1.0
    # Ping-pong playback: frame 5 repeats frame 3 (indices 0 1 2 3 2 1 0 ...).
    assert bytes(got["image"][4].data) == bytes(got["image"][2].data)
