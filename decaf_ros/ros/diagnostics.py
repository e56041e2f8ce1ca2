"""``/diagnostics`` for decaf_node (the ROS convention ``rqt_robot_monitor`` and aggregators read).

One ``DiagnosticStatus`` per node, named after the node, hardware_id = the device: level OK while
active and healthy, WARN when not active, running tiny random models or with a 3D problem, ERROR
in the ERROR state. Values: lifecycle and node state, goal, models, device, latencies, input rates,
frame counters, last error.
"""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from decaf_ros.msg import Status

RATE_WINDOW_S = 5.0  # input rates average over the last few seconds
RATE_SAMPLES = 256  # arrival times kept per input (bounded: O(1) per message)


class RateMeter:
    """Arrival rate of one input over the last ``RATE_WINDOW_S``; ``tick`` is O(1)."""

    def __init__(self) -> None:
        self._times: collections.deque[float] = collections.deque(maxlen=RATE_SAMPLES)
        self._lock = threading.Lock()

    def tick(self) -> None:
        with self._lock:
            self._times.append(time.monotonic())

    def rate_hz(self) -> float:
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._times if now - t <= RATE_WINDOW_S]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-9)


@dataclass(frozen=True)
class DiagnosticsInput:
    """What the node knows, at the moment of publishing."""

    name: str
    status: Status
    device: str
    dtype: str
    model_warning: str
    input_rates_hz: dict[str, float]
    pipeline_loaded: bool


def _level(d: DiagnosticsInput) -> tuple[bytes, str]:
    s = d.status
    if s.state == Status.ERROR:
        return DiagnosticStatus.ERROR, f"{s.state_name}: {s.last_error}"
    if s.lifecycle_state != "active":
        return DiagnosticStatus.WARN, f"{s.lifecycle_state} (not processing images)"
    if d.model_warning:
        return DiagnosticStatus.WARN, f"{s.state_name}: tiny random models in use"
    if s.depth_error:
        return DiagnosticStatus.WARN, f"{s.state_name}: no 3D ({s.depth_error})"
    return DiagnosticStatus.OK, s.state_name


def diagnostics_msg(d: DiagnosticsInput, stamp: object) -> DiagnosticArray:
    s = d.status
    level, message = _level(d)
    values = {
        "lifecycle_state": s.lifecycle_state, "state": s.state_name,
        "goal_id": str(s.goal_id), "goal": s.goal,
        "mllm_model": s.mllm_model, "sam2_model": s.sam2_model, "models_loaded": str(d.pipeline_loaded),
        "device": d.device, "dtype": d.dtype, "model_warning": d.model_warning,
        "grounding_latency_ms": f"{s.grounding_latency_ms:.1f}",
        "first_result_latency_ms": f"{s.first_result_latency_ms:.1f}",
        "dense_result_latency_ms": f"{s.dense_result_latency_ms:.1f}",
        "tracking_latency_ms": f"{s.tracking_latency_ms:.1f}",
        **{f"{name}_rate_hz": f"{rate:.2f}" for name, rate in d.input_rates_hz.items()},
        "frames_buffered": str(s.frames_buffered), "frames_received": str(s.frames_received),
        "frames_rejected": str(s.frames_rejected), "frames_skipped": str(s.frames_skipped),
        "frames_lost": str(s.frames_lost), "frames_evicted": str(s.frames_evicted),
        "frames_dropped": str(s.frames_dropped),
        "depth_error": s.depth_error, "last_error": s.last_error,
    }
    status = DiagnosticStatus(level=level, name=d.name, message=message[:256], hardware_id=d.device,
                              values=[KeyValue(key=k, value=v) for k, v in values.items()])
    array = DiagnosticArray(status=[status])
    array.header.stamp = stamp
    return array
