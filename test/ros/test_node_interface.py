"""The node's ROS interface as a manipulation stack drives it: Ground action, lifecycle, progressive
results, stable target ids, compressed input, diagnostics, frame counters, CPU threads, Ctrl-C.

In-process over real rclpy with the fake pipeline (test/fake_pipeline.py); the action and lifecycle
contracts are also driven from a second process (test/ros_client.py), as a robot's other nodes would.
"""
from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from diagnostic_msgs.msg import DiagnosticArray
import rclpy
from rclpy.action import ActionClient
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.waitable import NumberOfEntities, Waitable
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String

from decaf_ros.action import Ground
from decaf_ros.msg import Status, TargetArray
from decaf_ros.ros.image_conversion import array_to_image, rgb_to_compressed
from decaf_ros.ros.spin import spin_node
from fake_pipeline import FakePipeline, FakePipelineWithoutCoarse, grown, planted_mask
from node_harness import (RELIABLE, WAIT_S, H, W, Harness, camera_info, depth_image, flat_depth, header_at,
                          make_image, stamp_key, unique_namespace)

TEST_DIR = Path(__file__).resolve().parents[1]  # test/: the child scripts and the fixtures they import
CHILD_TIMEOUT_S = 120
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def child_env() -> dict[str, str]:
    """The pytest process's ROS environment (domain, discovery, the wheels' library path) + test/."""
    env = dict(os.environ)
    # No empty entry: that would put the working directory (the source tree) ahead of the install.
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(TEST_DIR), env.get("PYTHONPATH", "")] if p)
    return env


def run_client(mode: str, namespace: str,
               releases: Sequence[tuple[str, Callable[[], bool]]] = ()) -> list[dict]:
    """Run test/ros_client.py; at each of its sync points, release it once the next predicate holds here."""
    child = subprocess.Popen([sys.executable, str(TEST_DIR / "ros_client.py"), mode, namespace],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=child_env(), cwd="/")
    try:
        for what, ready in releases:
            Harness.wait_for(lambda r=ready: r() or child.poll() is not None, timeout=CHILD_TIMEOUT_S, what=what)
            if child.poll() is not None:
                break  # failed early: its stderr says why
            child.stdin.write("go\n")
            child.stdin.flush()
        stdout, stderr = child.communicate(timeout=CHILD_TIMEOUT_S)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


def mask_array(msg: Image) -> np.ndarray:
    return np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width) == 255


# ============================================================================ defect 1: unusable frames


def test_too_small_frame_while_tracking_is_rejected_and_the_goal_kept(make_harness):
    h = make_harness()
    h.send_frame(1)
    h.goal("left thing")
    h.wait_status(lambda s: s.state == Status.TRACKING, "tracking")
    tiny = Image(header=header_at(2), height=1, width=1, encoding="rgb8", step=3, data=bytes(3))
    h.send_raw(tiny)
    status = h.wait_status(lambda s: s.frames_rejected == 1, "rejected frame counted")
    assert "too small: 1x1" in status.last_error and status.state == Status.TRACKING
    tracked = h.send_frame(3)  # the goal is still served
    h.wait_for(lambda: any(stamp_key(t.header) == stamp_key(tracked) for t in h.got("targets")), what="tracking")
    assert len(h.fake.ground_calls) == 1 and h.node.state == Status.TRACKING


# ============================================================================ defect 2: 3D problems on ~/status


def _depth16(value: int) -> Image:
    mm = np.full((H, W), value, np.uint16)
    return Image(header=header_at(1), height=H, width=W, encoding="16UC1", step=W * 2, data=mm.tobytes())


@pytest.mark.parametrize("case,reason", [
    ("depth_other_size", "depth 32x24 does not match color 64x48"),
    ("depth_all_nan", "no valid reading"),
    ("depth_all_zero", "no valid reading"),
    ("depth_64fc1", "unsupported depth image encoding '64FC1'"),
    ("camera_info_k_zero", "no valid intrinsics"),
    ("camera_info_other_size", "CameraInfo is for 640x480, image is 64x48"),
])
def test_depth_and_camera_info_problems_reach_status_and_targets(make_harness, case, reason):
    h = make_harness()
    info = {"camera_info_k_zero": camera_info(), "camera_info_other_size": camera_info(640, 480)}.get(case, camera_info())
    if case == "camera_info_k_zero":
        info.k = [0.0] * 9
    h.info_pub.publish(info)
    header = header_at(1)
    if case == "depth_all_zero":
        h.depth_pub.publish(_depth16(0))
    elif case == "depth_64fc1":
        data = np.ones((H, W), np.float64)
        h.depth_pub.publish(Image(header=header, height=H, width=W, encoding="64FC1", step=W * 8,
                                  data=data.tobytes()))
    else:
        size = (32, 24) if case == "depth_other_size" else (W, H)
        h.depth_pub.publish(depth_image(header, flat_depth(np.nan if case == "depth_all_nan" else 1.0, *size)))
    h.wait_for(lambda: h.node._depth_seen, what="depth received")
    h.send_frame(1)
    h.goal("left thing")
    target = h.targets_for("left thing").targets[0]
    assert not target.centroid_3d_valid and reason in target.centroid_3d_reason
    status = h.wait_status(lambda s: reason in s.depth_error, "3D problem on status")
    assert reason in status.last_error and status.state in (Status.GROUNDING, Status.TRACKING)


def test_no_depth_configured_is_not_an_error(make_harness):
    h = make_harness(depth_topic="")
    h.send_frame(1)
    h.goal("left thing")
    target = h.targets_for("left thing").targets[0]
    assert target.centroid_3d_reason == "depth disabled (depth_topic is empty)"
    status = h.wait_status(lambda s: s.state == Status.TRACKING, "tracking")
    assert status.depth_error == "" and status.last_error == ""


# ============================================================================ defect 3: stable target ids


def test_target_ids_survive_grounding_to_tracking_when_a_target_vanishes(make_harness):
    h = make_harness(fake=FakePipeline(two_targets=True))
    for i in range(1, 4):
        h.send_frame(i)
    h.goal("left thing")
    coarse = h.targets_for("left thing", stage=TargetArray.STAGE_COARSE)
    dense = h.targets_for("left thing")
    ids = [(t.target_id, t.area_px > 0) for t in dense.targets]
    assert ids == [(0, False), (1, True)]  # the first target is gone on the last frame
    assert [t.target_id for t in coarse.targets] == [0, 1]
    h.wait_status(lambda s: s.state == Status.TRACKING, "tracking")
    assert h.fake.tracking_started_with == 1  # only the visible target enters the stream
    new = h.send_frame(10)
    tracked = h.wait_for(lambda: next((t for t in h.got("targets") if stamp_key(t.header) == stamp_key(new)), None),
                         what="tracked targets")
    assert tracked.stage == TargetArray.STAGE_TRACKING
    assert [t.target_id for t in tracked.targets] == [1]
    assert tracked.targets[0].area_px == planted_mask(H, W, "left").sum()


def test_target_ids_kept_across_a_regrounding(make_harness):
    h = make_harness(fake=FakePipeline(track_score=0.1), min_track_score=0.5)  # every track step re-grounds
    h.send_frame(1)
    h.goal("right thing")
    first = h.targets_for("right thing")
    h.send_frame(2)
    h.wait_for(lambda: len(h.fake.ground_calls) >= 2, what="re-grounding")
    dense = h.wait_for(lambda: [t for t in h.got("targets") if t.stage == TargetArray.STAGE_DENSE][1:],
                       what="second dense result")[0]
    assert [t.target_id for t in first.targets] == [t.target_id for t in dense.targets] == [0]


# ============================================================================ defect 4: frame counters


def test_frame_counters_separate_buffer_turnover_from_frames_the_node_could_not_use(make_harness):
    fake = FakePipeline(block=True)
    h = make_harness(fake=fake, clip_length=4)
    for i in range(1, 11):
        h.send_frame(i)
    status = h.wait_status(lambda s: s.frames_received == 10, "10 frames")
    assert (status.frames_evicted, status.frames_dropped, status.frames_buffered) == (6, 0, 4)
    h.send_raw(Image(header=header_at(11), height=1, width=1, encoding="rgb8", step=3, data=bytes(3)))
    h.wait_status(lambda s: s.frames_rejected == 1 and s.frames_dropped == 1, "rejected frame")
    h.goal("left thing")
    h.wait_for(fake.entered.is_set, what="grounding started")
    for i in range(12, 20):  # 8 frames while grounding; the 4-frame ring keeps 16..19
        h.send_frame(i)
    fake.gate.set()
    status = h.wait_status(lambda s: s.frames_skipped > 0, "tracking after grounding")
    # Lost: 12..15 left the full ring during the grounding; skipped: 16..18, jumped over by tracking 19.
    assert (status.frames_lost, status.frames_skipped, status.frames_rejected) == (4, 3, 1)
    assert status.frames_dropped == 8 and status.frames_evicted == 14 and status.frames_received == 19


# ============================================================================ defect 5: masks on request


def test_publish_target_masks_false_sends_targets_without_masks(make_harness):
    h = make_harness(publish_target_masks=False)
    h.send_frame(1)
    h.goal("left thing")
    targets = h.targets_for("left thing")
    target = targets.targets[0]
    assert (target.mask.width, target.mask.height, len(target.mask.data)) == (0, 0, 0)
    assert target.area_px == planted_mask(H, W, "left").sum()
    assert mask_array(h.output_for("mask", targets)).sum() == target.area_px  # ~/mask is unaffected


# ============================================================================ defect 7: CPU threads


def test_cpu_threads_applied_when_the_models_load(make_harness):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        h = make_harness(cpu_threads=1)
        h.send_frame(1)
        h.goal("left thing")
        h.targets_for("left thing")
        assert h.fake.threads_seen == [1]  # what the inference thread runs with
    finally:
        torch.set_num_threads(before)


# ============================================================================ progressive results


def test_coarse_result_is_published_before_dense_then_tracking(make_harness):
    fake = FakePipeline()
    fake.dense_gate.clear()  # ground() waits after reporting its coarse result
    h = make_harness(fake=fake)
    h.send_frame(1, depth_m=flat_depth(1.0), info=camera_info())
    h.goal("left thing")
    coarse = h.targets_for("left thing", stage=TargetArray.STAGE_COARSE)
    assert mask_array(h.output_for("mask", coarse)).sum() == grown(planted_mask(H, W, "left")).sum()
    assert h.output_for("centroid", coarse).point.z == pytest.approx(1.0)
    assert h.output_for("markers", coarse).markers and h.output_for("overlay", coarse)
    status = h.wait_status(lambda s: s.first_result_latency_ms > 0, "first-result latency")
    assert status.dense_result_latency_ms == 0.0
    assert not [t for t in h.got("targets") if t.stage != TargetArray.STAGE_COARSE]
    fake.dense_gate.set()
    dense = h.targets_for("left thing")
    assert [t.target_id for t in dense.targets] == [t.target_id for t in coarse.targets] == [0]
    assert dense.targets[0].area_px == planted_mask(H, W, "left").sum()
    status = h.wait_status(lambda s: s.dense_result_latency_ms > 0, "dense latency")
    assert status.dense_result_latency_ms >= status.first_result_latency_ms
    new = h.send_frame(5)
    tracked = h.wait_for(lambda: next((t for t in h.got("targets") if stamp_key(t.header) == stamp_key(new)), None),
                         what="tracking")
    assert tracked.stage == TargetArray.STAGE_TRACKING


def test_pipeline_without_on_coarse_publishes_dense_only(make_harness):
    fake = FakePipelineWithoutCoarse()
    h = make_harness(fake=fake)
    h.send_frame(1)
    h.goal("left thing")
    h.targets_for("left thing")
    h.wait_status(lambda s: s.state == Status.TRACKING, "tracking")
    assert [t.stage for t in h.got("targets")] == [TargetArray.STAGE_DENSE]
    assert fake.ground_options == [{"coarse_only": False, "on_coarse": False}]
    status = h.wait_status(lambda s: s.dense_result_latency_ms > 0, "latencies")
    assert status.first_result_latency_ms == status.dense_result_latency_ms


# ============================================================================ Ground action (in process)


class ActionUser:
    """An ActionClient on the harness's io node (spun by the harness executor)."""

    def __init__(self, h) -> None:
        self.h = h
        self.client = ActionClient(h.io, Ground, "decaf/ground")
        assert self.client.wait_for_server(timeout_sec=WAIT_S)
        self.feedback: list[Ground.Feedback] = []

    def send(self, last_stage: str = "", **goal) -> tuple[object, object]:
        """Send a goal and wait for its end: (goal handle, GetResult response with status + result).

        With ``last_stage``, the result is requested only once that feedback has arrived: feedback and
        result are not ordered, and rclpy's ActionClient drops feedback for a goal whose result it has."""
        future = self.client.send_goal_async(Ground.Goal(**goal),
                                             feedback_callback=lambda m: self.feedback.append(m.feedback))
        handle = self.wait(future, "goal response")
        if last_stage:
            self.h.wait_for(lambda: last_stage in self.stages(), what=f"feedback up to {last_stage!r}")
        return handle, self.wait(handle.get_result_async(), "result")

    def wait(self, future, what: str):
        self.h.wait_for(future.done, what=what)
        return future.result()

    def stages(self) -> list[str]:
        return [f.stage for f in self.feedback]


def test_ground_action_returns_dense_targets_with_coarse_feedback(make_harness):
    h = make_harness()
    h.send_frame(1)
    user = ActionUser(h)
    _, response = user.send(text="the left thing", last_stage="sam2_stage1")  # the fake's last stage
    assert response.status == 4 and response.result.success and response.result.error == ""  # SUCCEEDED
    targets = response.result.targets
    assert targets.stage == TargetArray.STAGE_DENSE and targets.goal == "the left thing"
    assert targets.targets[0].area_px == planted_mask(H, W, "left").sum()
    stages = user.stages()
    assert stages[:3] == ["queued", "grounding", "p1_video"] and "coarse" in stages
    coarse_fb = next(f for f in user.feedback if f.stage == "coarse")
    assert coarse_fb.targets.stage == TargetArray.STAGE_COARSE and len(coarse_fb.targets.targets) == 1
    assert stages.index("sam2_stage1") > stages.index("coarse")
    h.wait_status(lambda s: s.state == Status.TRACKING, "tracking after the result (track follows the parameter)")


def test_ground_action_overrides_track_and_coarse_only(make_harness):
    h = make_harness()
    h.send_frame(1)
    user = ActionUser(h)
    _, response = user.send(text="left thing", track=Ground.Goal.TRACK_OFF, coarse_only=True)
    assert response.result.success and response.result.targets.stage == TargetArray.STAGE_COARSE
    assert h.fake.ground_options[-1]["coarse_only"] is True
    h.wait_status(lambda s: s.state == Status.IDLE and s.goal_id == 1, "idle: no tracking requested")
    assert [t.stage for t in h.got("targets")] == [TargetArray.STAGE_COARSE]  # published once


def test_invalid_action_goal_is_aborted_with_the_reason_and_the_current_goal_kept(make_harness):
    h = make_harness(max_goal_length=20)
    h.send_frame(1)
    h.goal("left thing")
    h.wait_status(lambda s: s.state == Status.TRACKING, "tracking")
    user = ActionUser(h)
    _, response = user.send(text="x" * 30)
    assert response.status == 6 and "max_goal_length" in response.result.error  # ABORTED
    _, response = user.send(text="stop")
    assert response.status == 6 and "cancel" in response.result.error
    assert h.node.state == Status.TRACKING and len(h.fake.ground_calls) == 1


# ============================================================================ second process: action + lifecycle


def test_action_goals_from_a_second_process_end_with_the_right_reason(make_harness):
    h = make_harness(track=False)
    h.send_frame(1)
    # The client sends D only once the topic goal's grounding runs here (see ros_client.py).
    topic_goal_grounding = ("'hold C topic' grounding",
                            lambda: [q for q, _ in h.fake.ground_calls][2:] == ["hold C topic"])
    a, b, d, e = run_client("actions", h.ns, releases=[topic_goal_grounding])
    assert (a["status"], b["status"], d["status"], e["status"]) == ("aborted", "aborted", "canceled", "succeeded")
    assert "superseded by goal 2 (Ground action): 'hold B right'" in a["error"]
    assert "superseded by goal 3 (goal topic): 'hold C topic'" in b["error"]
    assert d["error"] == "cancelled by the client" and not d["success"]
    assert e["success"] and e["error"] == "" and e["targets"] == 1 and e["stage"] == TargetArray.STAGE_DENSE
    assert "coarse" in e["stages"]
    assert [q for q, _ in h.fake.ground_calls] == ["hold A left", "hold B right", "hold C topic", "hold D left",
                                                   "E left"]
    assert h.fake.cancelled == 4  # every superseded or cancelled grounding stopped at a stage boundary


def test_lifecycle_transitions_from_a_second_process(make_harness):
    made: list[weakref.ref] = []

    def factory(_params):
        fake = FakePipeline()
        made.append(weakref.ref(fake))
        return fake

    h = make_harness(factory=factory, autostart=False)
    assert h.node.lifecycle_state == "unconfigured"
    steps = run_client("lifecycle", h.ns)
    assert [(s["success"], s["state"]) for s in steps] == [
        (True, "inactive"), (True, "active"), (True, "inactive"), (True, "unconfigured"),
        (True, "inactive"), (True, "active"), (True, "finalized")]
    assert [s.get("models_loaded") for s in steps] == ["False", "True", "False", None, "False", "True", None]
    assert all(s["status_lifecycle"] == s["state"] for s in steps)
    gc.collect()
    assert len(made) == 2 and all(ref() is None for ref in made)  # deactivate dropped each pipeline


def test_goal_sent_once_the_camera_subscription_appears_is_served(make_harness):
    """Other nodes take the camera subscription as the sign of an active node (as the Ctrl-C test does);
    under a MultiThreadedExecutor their goal may run while activation is still finishing."""
    h = make_harness(autostart=False)
    node, create_camera_inputs = h.node, h.node._create_camera_inputs

    def camera_inputs_then_a_goal() -> None:
        create_camera_inputs()
        node._on_goal(String(data="left thing"))  # what another executor thread may run at this moment

    node._create_camera_inputs = camera_inputs_then_a_goal
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    h.wait_active()
    h.send_frame(1)
    assert h.targets_for("left thing").goal_id == 1


def test_deactivate_aborts_the_action_goal_and_stops_tracking(make_harness):
    fake = FakePipeline(block=True)
    h = make_harness(fake=fake)
    h.send_frame(1)
    user = ActionUser(h)
    handle = user.wait(user.client.send_goal_async(Ground.Goal(text="left thing")), "accepted")
    h.wait_for(fake.entered.is_set, what="grounding")
    assert h.node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    result = user.wait(handle.get_result_async(), "result")
    assert result.status == 6 and result.result.error == "node deactivated"
    assert not h.node.pipeline_loaded and h.node.lifecycle_state == "inactive"
    h.goal("right thing")
    h.wait_status(lambda s: "not active" in s.last_error, "goal refused while inactive")
    fake.gate.set()
    assert h.node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    h.wait_active()
    h.send_frame(2)
    h.goal("right thing")
    h.targets_for("right thing")


# ============================================================================ compressed input


def test_compressed_jpeg_input_is_grounded_and_bad_data_rejected(make_harness):
    h = make_harness(image_transport="compressed")
    assert h.node.image_topic == f"{h.ns}/image/compressed"
    for i in range(1, 4):
        h.send_frame(i)
    png = rgb_to_compressed(make_image(4), "png", header_at(4))
    before = h.node.frames_accepted
    h.send_raw(png)
    h.wait_for(lambda: h.node.frames_accepted > before, what="png frame")
    np.testing.assert_array_equal(h.node.ring.latest().frame.image, make_image(4))  # PNG is lossless
    h.send_raw(CompressedImage(header=header_at(5), format="jpeg", data=b"not a jpeg"))
    h.wait_status(lambda s: "cannot decode compressed image" in s.last_error and s.frames_rejected == 1, "bad jpeg")
    h.send_raw(CompressedImage(header=header_at(6), format="16UC1; compressedDepth", data=b"x"))
    h.wait_status(lambda s: "unsupported compressed image format" in s.last_error, "depth format refused")
    h.goal("left thing")
    target = h.targets_for("left thing").targets[0]
    assert (target.mask.width, target.mask.height) == (W, H)
    assert h.fake.ground_calls[0][1] == [(H, W, 3)] * 4


# ============================================================================ diagnostics


def test_diagnostics_report_state_models_device_rates_and_counters(make_harness):
    h = make_harness(diagnostics_rate_hz=10.0)
    arrays: list[DiagnosticArray] = []
    h.io.create_subscription(DiagnosticArray, "/diagnostics", arrays.append, RELIABLE)
    name = f"decaf_ros: {h.ns}/decaf"

    def entry(predicate):
        def find():
            for array in reversed(list(arrays)):
                for status in array.status:
                    values = {kv.key: kv.value for kv in status.values}
                    if status.name == name and predicate(status, values):
                        return status, values
            return None
        return h.wait_for(find, what="diagnostics entry")

    for i in range(1, 6):
        h.send_frame(i)
    h.send_raw(Image(header=header_at(9), height=0, width=0, encoding="rgb8"))
    status, values = entry(lambda s, v: v["frames_rejected"] == "1" and float(v["image_rate_hz"]) > 0)
    assert status.level == b"\x00" and status.hardware_id == "auto"  # OK; the configured device
    assert values["lifecycle_state"] == "active" and values["models_loaded"] == "True"
    assert values["mllm_model"] == "Qwen/Qwen2.5-VL-7B-Instruct" and values["frames_received"] == "6"
    assert "zero-size" in values["last_error"]
    assert {"first_result_latency_ms", "dense_result_latency_ms", "tracking_latency_ms", "depth_rate_hz",
            "camera_info_rate_hz", "frames_lost", "frames_skipped", "frames_evicted"} <= set(values)
    assert h.node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    status, values = entry(lambda s, v: v["lifecycle_state"] == "inactive")
    assert status.level == b"\x01" and values["models_loaded"] == "False"  # WARN: not processing images


# ============================================================================ defect 6: Ctrl-C in its own process


def test_sigint_while_tracking_exits_cleanly_without_a_traceback(make_harness):
    h = make_harness(autostart=False)  # only the io node's publishers and recorders are used
    namespace = f"{h.ns}_proc"
    child = subprocess.Popen([sys.executable, str(TEST_DIR / "node_process.py"), "--ros-args",
                              "-r", f"__ns:={namespace}", "-p", "regrounding_period_s:=0.0"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(), cwd="/")
    try:
        status: list[Status] = []
        h.io.create_subscription(Status, f"{namespace}/decaf/status", status.append, LATCHED)
        image_pub = h.io.create_publisher(Image, f"{namespace}/image", RELIABLE)
        goal_pub = h.io.create_publisher(String, f"{namespace}/goal", RELIABLE)
        h.wait_for(lambda: image_pub.get_subscription_count() and goal_pub.get_subscription_count(),
                   timeout=60.0, what="node process subscribed")
        image_pub.publish(array_to_image(make_image(1), "rgb8", header_at(1)))
        goal_pub.publish(String(data="left thing"))
        seq = 1
        while not any(s.state == Status.TRACKING for s in status):  # a frame per status update until tracking
            if child.poll() is not None or seq > 60:
                raise AssertionError(f"node process not tracking: {child.communicate()[1][-3000:]}")
            seq += 1
            image_pub.publish(array_to_image(make_image(seq), "rgb8", header_at(seq)))
            h.wait_for(lambda n=len(status): len(status) > n, timeout=30.0, what="node process status")
        for seq in range(seq + 1, seq + 4):  # frames to track while the signal arrives
            image_pub.publish(array_to_image(make_image(seq), "rgb8", header_at(seq)))
        child.send_signal(signal.SIGINT)
        child.send_signal(signal.SIGINT)  # an impatient second Ctrl-C during shutdown
        _, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]


class ShutdownWhileTheWaitSetIsBuilt(Waitable):
    """Shuts rclpy down from inside the executor's wait-set construction: where Ctrl-C's shutdown (run by
    rclpy's signal-handling thread) lands when it comes right after the executor checked the context."""

    def __init__(self) -> None:
        super().__init__(ReentrantCallbackGroup())

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc_info) -> None:
        pass

    def get_num_entities(self) -> NumberOfEntities:
        rclpy.try_shutdown()
        return NumberOfEntities()

    def is_ready(self, wait_set) -> bool:
        return False

    def take_data(self) -> None:
        return None

    async def execute(self, taken_data) -> None:
        pass

    def add_to_wait_set(self, wait_set) -> None:
        pass


def test_sigint_racing_the_executors_wait_set_still_exits_cleanly():
    def make_node() -> Node:  # in the default context, which spin_node initialises
        node = Node("decaf", namespace=unique_namespace("spin_race"))
        node.add_waitable(ShutdownWhileTheWaitSetIsBuilt())
        return node

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert spin_node(make_node, []) == 0  # not rclpy's "failed to initialize wait set" RCLError
    finally:
        for signum, handler in handlers.items():  # spin_node ignores both on its way out
            signal.signal(signum, handler)
