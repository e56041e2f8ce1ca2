"""decaf_node over real rclpy (in-process, loopback) with a fake pipeline that plants masks.

The fake has the DecafPipeline interface (ground / start_tracking / track / stop_tracking) and can
block on an Event, ignore or honour cancellation, and raise, so threading and failure paths are
exercised deterministically without models.
"""
from __future__ import annotations

import statistics
import time

import numpy as np
import pytest
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from visualization_msgs.msg import Marker

from rclpy.lifecycle import TransitionCallbackReturn

from decaf_ros.core.loading import ModelLoadError
from decaf_ros.msg import Status, TargetArray
from fake_pipeline import FakePipeline, planted_mask
from node_harness import (FX, H, W, Harness, camera_info, depth_image, flat_depth, header_at, make_harness,  # noqa: F401
                          make_image, stamp_key)


# ============================================================================ main path


def test_goal_publishes_every_output_for_the_last_clip_frame(make_harness):
    h = make_harness()
    h.wait_status(lambda s: s.state == Status.IDLE, "models loaded")
    headers = [h.send_frame(i, depth_m=flat_depth(1.0), info=camera_info()) for i in range(1, 7)]
    last = headers[-1]
    h.goal("the box on the right")

    targets = h.targets_for("the box on the right")
    assert stamp_key(targets.header) == stamp_key(last) and targets.header.frame_id == "cam"
    assert targets.goal_id == 1 and len(targets.targets) == 1
    target = targets.targets[0]
    expected = planted_mask(H, W, "right")
    ys, xs = np.nonzero(expected)
    assert target.label == "right" and target.score == pytest.approx(0.9)
    assert (target.bbox.x_offset, target.bbox.y_offset) == (xs.min(), ys.min())
    assert (target.bbox.width, target.bbox.height) == (xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    assert target.area_px == expected.sum()
    assert target.centroid_u == pytest.approx(xs.mean()) and target.centroid_v == pytest.approx(ys.mean())
    assert (target.mask.width, target.mask.height, target.mask.encoding) == (W, H, "mono8")
    assert target.centroid_3d_valid and target.centroid_3d.z == pytest.approx(1.0)

    mask = h.output_for("mask", targets)
    assert (mask.width, mask.height, mask.encoding) == (W, H, "mono8")
    assert stamp_key(mask.header) == stamp_key(last) and mask.header.frame_id == "cam"
    raw = np.frombuffer(bytes(mask.data), np.uint8).reshape(H, W)
    np.testing.assert_array_equal(raw == 255, expected)
    overlay = h.output_for("overlay", targets)
    assert (overlay.width, overlay.height, overlay.encoding) == (W, H, "rgb8")
    assert stamp_key(overlay.header) == stamp_key(last)

    point = h.output_for("centroid", targets)
    assert point.header.frame_id == "cam" and stamp_key(point.header) == stamp_key(last)
    assert point.point.z == pytest.approx(1.0)
    assert point.point.x == pytest.approx((xs.mean() - (W - 1) / 2) / FX, abs=0.02)

    markers = h.output_for("markers", targets).markers
    assert markers[0].action == Marker.DELETEALL
    assert [m.type for m in markers[1:]] == [Marker.SPHERE, Marker.TEXT_VIEW_FACING]
    assert all(m.header.frame_id == "cam" for m in markers)
    assert markers[1].pose.position.z == pytest.approx(1.0)

    query, shapes = h.fake.ground_calls[0]
    assert query == "the box on the right" and len(shapes) == 6 and shapes[0] == (H, W, 3)
    h.wait_status(lambda s: s.state == Status.TRACKING and s.goal_id == 1 and s.goal == query, "tracking")
    assert any(s.state == Status.GROUNDING for s in h.got("status"))


def test_tracking_publishes_for_frames_after_grounding(make_harness):
    h = make_harness()
    for i in range(1, 4):
        h.send_frame(i)
    h.goal("left thing")
    h.targets_for("left thing")
    h.wait_status(lambda s: s.state == Status.TRACKING, "tracking")
    new = [h.send_frame(i) for i in range(10, 14)]
    wanted = {stamp_key(x) for x in new}
    h.wait_for(lambda: wanted & {stamp_key(m.header) for m in h.got("mask")}, what="tracked mask")
    h.wait_for(lambda: h.fake.track_calls >= 1, what="track call")
    tracked = [t for t in h.got("targets") if stamp_key(t.header) in wanted]
    assert tracked and all(t.goal_id == 1 and len(t.targets) == 1 for t in tracked)
    status = h.wait_status(lambda s: s.tracking_latency_ms > 0, "tracking latency")
    assert status.state == Status.TRACKING


def test_low_tracking_score_triggers_regrounding(make_harness):
    h = make_harness(fake=FakePipeline(track_score=0.1), min_track_score=0.5)
    for i in range(1, 4):
        h.send_frame(i)
    h.goal("left thing")
    h.targets_for("left thing")
    h.send_frame(20)
    h.wait_for(lambda: len(h.fake.ground_calls) >= 2, what="re-grounding")


def test_periodic_regrounding(make_harness):
    h = make_harness(regrounding_period_s=0.2, track=False)
    h.send_frame(1)
    h.goal("left thing")
    h.wait_for(lambda: len(h.fake.ground_calls) >= 3, what="periodic re-grounding")


# ============================================================================ latest goal wins


@pytest.mark.parametrize("honour_cancel", [True, False], ids=["cancelled", "finishes_anyway"])
def test_new_goal_mid_grounding_yields_results_for_new_goal_only(make_harness, honour_cancel):
    fake = FakePipeline(block=True, honour_cancel=honour_cancel)
    h = make_harness(fake=fake)
    for i in range(1, 4):
        h.send_frame(i)
    h.goal("old left goal")
    h.wait_for(fake.entered.is_set, what="grounding started")
    h.goal("new right goal")
    h.wait_status(lambda s: s.goal_id == 2, "goal 2 acknowledged")
    # The node must have signalled the running grounding before the gate opens; with honour_cancel the
    # fake must also have acted on it, so the outcome does not hang on thread scheduling.
    h.wait_for(lambda: fake.cancel_events[0] is not None and fake.cancel_events[0].is_set(), what="cancel signalled")
    if honour_cancel:
        h.wait_for(lambda: fake.cancelled == 1, what="cancel observed by the grounding")
    fake.gate.set()
    new = h.targets_for("new right goal")
    assert new.goal_id == 2
    # One worker runs the groundings in order and publishes from that thread over one reliable
    # publisher per topic, so a stale result would have been received before goal 2's: no wait needed.
    assert all(t.goal == "new right goal" and t.goal_id == 2 for t in h.got("targets"))
    assert [q for q, _ in fake.ground_calls] == ["old left goal", "new right goal"]
    assert fake.cancelled == (1 if honour_cancel else 0)


def test_stop_and_empty_goal_clear(make_harness):
    h = make_harness()
    h.send_frame(1, depth_m=flat_depth(), info=camera_info())
    for goal_id, clear in ((1, ""), (2, "  STOP  ")):
        h.goal("left thing")
        h.wait_status(lambda s: s.state == Status.TRACKING and s.goal_id == goal_id, "tracking")
        n_markers = len(h.got("markers"))
        h.goal(clear)
        h.wait_status(lambda s: s.state == Status.IDLE and s.goal == "", "cleared")
        cleared = h.wait_for(lambda: h.got("markers")[n_markers:], what="DELETEALL")[-1]
        assert [m.action for m in cleared.markers] == [Marker.DELETEALL]
        assert h.got("targets")[-1].targets == []


# ============================================================================ threading + memory


def test_image_callback_never_waits_on_inference(make_harness):
    fake = FakePipeline(block=True)
    h = make_harness(fake=fake, clip_length=4)
    for i in range(1, 3):
        h.send_frame(i)
    h.goal("left thing")
    h.wait_for(fake.entered.is_set, what="grounding started")
    # The fake is now blocked inside ground(); frames must keep flowing into the ring.
    for i in range(3, 33):
        h.send_frame(i, image=make_image(0, 640, 480))
        assert len(h.node.ring) <= 4
    assert not fake.gate.is_set()
    assert h.node.ring.dropped >= 20
    durations = list(h.node.image_callback_durations)
    print(f"\nimage callback (640x480 rgb8 -> ring): median {1e3 * statistics.median(durations):.3f} ms, "
          f"max {1e3 * max(durations):.3f} ms over {len(durations)} frames while inference blocked")
    fake.gate.set()
    h.targets_for("left thing")
    status = h.wait_status(lambda s: s.frames_dropped > 0, "drops on status")
    assert status.frames_buffered <= 4


# ============================================================================ robustness: inputs


def test_wrong_encoding_reported_then_serves(make_harness):
    h = make_harness()
    bad = Image(header=header_at(1), height=H, width=W, encoding="yuv422", step=W * 2, data=bytes(W * H * 2))
    h.send_raw(bad)
    status = h.wait_status(lambda s: "yuv422" in s.last_error, "encoding error on status")
    assert "rgb8" in status.last_error and h.node.frames_accepted == 0
    h.send_frame(2)
    h.goal("left thing")
    h.targets_for("left thing")


def test_zero_size_and_odd_sized_images(make_harness):
    h = make_harness()
    h.send_raw(Image(header=header_at(1), height=0, width=0, encoding="rgb8", step=0))
    h.wait_status(lambda s: "zero-size" in s.last_error, "zero-size error")
    short = Image(header=header_at(2), height=H, width=W, encoding="rgb8", step=W * 3, data=bytes(10))
    h.send_raw(short)
    h.wait_status(lambda s: "expected step*height" in s.last_error, "short data error")
    for i in range(3, 6):
        h.send_frame(i, image=make_image(i, 33, 17))
    h.goal("left thing")
    targets = h.targets_for("left thing")
    assert (targets.targets[0].mask.width, targets.targets[0].mask.height) == (33, 17)
    mask = h.wait_for(lambda: h.got("mask"), what="mask")[-1]
    assert (mask.width, mask.height) == (33, 17)


def test_mixed_resolutions_use_newest_size_only(make_harness):
    h = make_harness()
    for i in range(1, 5):
        h.send_frame(i)
    for i in range(5, 8):
        h.send_frame(i, image=make_image(i, 32, 24))
    h.goal("left thing")
    h.targets_for("left thing")
    _, shapes = h.fake.ground_calls[0]
    assert shapes == [(24, 32, 3)] * 3


def test_goal_before_any_frame_stays_pending(make_harness):
    h = make_harness()
    h.goal("left thing")
    status = h.wait_status(lambda s: "no frames received yet" in s.last_error, "pending goal error")
    assert f"{h.ns}/image" in status.last_error and status.goal_id == 1
    assert not h.fake.ground_calls
    h.send_frame(1)
    h.targets_for("left thing")


def test_goal_before_any_frame_times_out(make_harness):
    h = make_harness(goal_wait_for_frames_s=0.3)
    h.goal("left thing")
    h.wait_status(lambda s: s.state == Status.ERROR and "dropped" in s.last_error, "goal timeout")
    h.send_frame(1)
    time.sleep(0.2)
    assert not h.fake.ground_calls


@pytest.mark.parametrize("text,reason", [
    ("x" * 300, "max_goal_length"),
    ("\x01\x02\x7f\x1b", "no letters or digits"),  # (NUL cannot travel in a ROS string)
    ("  \t\n ...!!! ", "no letters or digits"),
])
def test_invalid_goal_rejected_with_status(make_harness, text, reason):
    h = make_harness(max_goal_length=256)
    h.send_frame(1)
    h.goal(text)
    h.wait_status(lambda s: reason in s.last_error, f"rejection: {reason}")
    time.sleep(0.1)
    assert not h.fake.ground_calls


def test_control_characters_stripped_from_goal(make_harness):
    h = make_harness()
    h.send_frame(1)
    h.goal("  the\x07 left\tthing \x1b\n")
    h.targets_for("the left thing")


@pytest.mark.parametrize("case", ["depth_wrong_size", "depth_all_nan", "no_camera_info", "no_depth",
                                  "depth_out_of_sync", "camera_info_other_size"])
def test_depth_problems_give_invalid_3d_not_a_crash(make_harness, case):
    h = make_harness()
    depth = {"depth_wrong_size": flat_depth(1.0, 32, 24), "depth_all_nan": flat_depth(np.nan),
             "no_depth": None}.get(case, flat_depth(1.0))
    info = {"no_camera_info": None, "camera_info_other_size": camera_info(640, 480)}.get(case, camera_info())
    if case == "depth_out_of_sync":
        h.depth_pub.publish(depth_image(header_at(90), depth))
        depth = None
    h.send_frame(1, depth_m=depth, info=info)
    h.goal("left thing")
    target = h.targets_for("left thing").targets[0]
    assert not target.centroid_3d_valid and target.centroid_3d.z == 0.0
    time.sleep(0.1)
    assert not h.got("centroid")
    markers = h.wait_for(lambda: h.got("markers"), what="markers")[-1].markers
    assert [m.action for m in markers] == [Marker.DELETEALL]  # no sphere without 3D
    assert h.node.state == Status.TRACKING


def test_16uc1_depth_gives_valid_3d(make_harness):
    h = make_harness()
    mm = np.full((H, W), 1500, np.uint16)
    mm[:, :5] = 0  # no reading on a strip: ignored
    h.info_pub.publish(camera_info())
    header = header_at(1)
    h.depth_pub.publish(Image(header=header, height=H, width=W, encoding="16UC1", step=W * 2,
                              data=mm.tobytes()))
    h.send_frame(1)
    h.goal("left thing")
    target = h.targets_for("left thing").targets[0]
    assert target.centroid_3d_valid and target.centroid_3d.z == pytest.approx(1.5)


# ============================================================================ robustness: models + inference


def test_model_load_failure_fails_activation_then_a_retry_activates(make_harness):
    calls = []
    fake = FakePipeline()

    def factory(_params):
        calls.append(1)
        if len(calls) == 1:
            raise ModelLoadError("Model 'x/y' is not available on this machine")
        return fake

    h = make_harness(fake=fake, factory=factory, autostart=False)
    assert h.node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert h.node.trigger_activate() == TransitionCallbackReturn.FAILURE
    status = h.wait_status(lambda s: s.state == Status.ERROR and "models not loaded" in s.last_error
                           and s.lifecycle_state == "inactive", "load error on status")
    assert "x/y" in status.last_error and status.lifecycle_state == "inactive"
    h.wait_for(lambda: h.goal_pub.get_subscription_count() > 0, what="goal topic while inactive")
    h.goal("left thing")  # not lost silently: refused with the reason
    h.wait_status(lambda s: "not active" in s.last_error and "inactive" in s.last_error, "goal refused")
    assert h.node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    h.wait_active()
    h.send_frame(1)
    h.goal("left thing")
    h.targets_for("left thing")
    assert len(calls) == 2 and [q for q, _ in fake.ground_calls] == ["left thing"]


def test_model_load_error_mid_run_reloads_on_next_goal(make_harness):
    calls = []
    fake = FakePipeline()

    def factory(_params):
        calls.append(1)
        return fake

    h = make_harness(fake=fake, factory=factory)
    h.send_frame(1)
    fake.ground_error = ModelLoadError("weights vanished")
    h.goal("left thing")
    h.wait_status(lambda s: s.state == Status.ERROR and "weights vanished" in s.last_error, "load error")
    fake.ground_error = None
    h.goal("right thing")
    h.targets_for("right thing")
    assert len(calls) == 2


@pytest.mark.parametrize("where", ["ground", "track"])
def test_exception_in_inference_reported_then_next_goal_served(make_harness, where):
    fake = FakePipeline()
    h = make_harness(fake=fake)
    h.send_frame(1)
    if where == "ground":
        fake.ground_error = RuntimeError("boom in ground")
    else:
        fake.track_error = RuntimeError("boom in track")
    h.goal("left thing")
    if where == "track":
        h.targets_for("left thing")
        h.send_frame(2)
    status = h.wait_status(lambda s: s.state == Status.ERROR, "inference error")
    assert f"RuntimeError: boom in {where}" in status.last_error
    fake.ground_error = fake.track_error = None
    h.goal("right thing")
    h.targets_for("right thing")
    h.wait_status(lambda s: s.state == Status.TRACKING and s.last_error == "", "recovered")


# ============================================================================ parameters + shutdown


def test_runtime_parameter_update_refused_with_reason(make_harness):
    h = make_harness()
    [result] = h.node.set_parameters([Parameter("min_depth_m", value=50.0)])
    assert not result.successful and "max_depth_m" in result.reason
    [result] = h.node.set_parameters([Parameter("min_track_score", value=0.25)])
    assert result.successful and h.node.params.min_track_score == 0.25


def test_destroy_node_stops_a_busy_worker(rclpy_context):
    fake = FakePipeline(block=True)
    h = Harness(rclpy_context, fake=fake)
    h.send_frame(1)
    h.goal("left thing")
    h.wait_for(fake.entered.is_set, what="grounding started")
    h.stop_spinning()
    worker = h.node._worker
    start = time.monotonic()
    h.node.destroy_node()  # the cancel Event ends the blocked grounding
    assert not worker.is_alive() and time.monotonic() - start < 2.0
    h.io.destroy_node()


def test_periodic_regrounding_while_tracking_a_steady_stream(make_harness):
    h = make_harness(regrounding_period_s=0.3)
    h.send_frame(1)
    h.goal("left thing")
    h.targets_for("left thing")
    seq = 2
    deadline = time.monotonic() + 5.0
    while len(h.fake.ground_calls) < 2 and time.monotonic() < deadline:
        h.send_frame(seq)  # a new frame to track every few ms
        seq += 1
    assert len(h.fake.ground_calls) >= 2 and h.fake.track_calls >= 1


def test_depth_paired_when_the_clip_is_taken_not_after_a_long_grounding(make_harness):
    fake = FakePipeline(block=True)
    h = make_harness(fake=fake, depth_buffer_size=2, track=False)
    h.send_frame(1, depth_m=flat_depth(1.0), info=camera_info())
    h.goal("left thing")
    h.wait_for(fake.entered.is_set, what="grounding started")
    for i in range(2, 6):  # newer depth images push frame 1's out of the 2-deep buffer
        h.depth_pub.publish(depth_image(header_at(100 + i), flat_depth(2.0)))
    newest = stamp_key(header_at(105))
    h.wait_for(lambda: h.node._depth_msgs and stamp_key(h.node._depth_msgs[-1].header) == newest,
               what="newer depth images in the node's buffer")
    fake.gate.set()
    target = h.targets_for("left thing").targets[0]
    assert target.centroid_3d_valid and target.centroid_3d.z == pytest.approx(1.0)
