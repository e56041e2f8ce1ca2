"""``decaf_demo``: the whole loop on the bundled sample — player → decaf_node → saved outputs.

Runs the sample player, the node and a recorder in one process (what ``decaf.launch.py`` with
``use_player:=true`` does on a ROS machine), publishes a goal, and saves what the node publishes:
overlay frames and video, the targets and 3D centroids as JSON, and the status history.

With the configured models reachable (hub cache or local folders) they are used. When they cannot be
loaded the node says so loudly, on its log and its status topic, and runs the tiny built-in random
models: the plumbing is real, the masks are not.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rclpy
from geometry_msgs.msg import PointStamped
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from decaf_ros.core.config import DecafConfig
from decaf_ros.msg import Status, TargetArray
from decaf_ros.ros.node import DecafNode
from decaf_ros.ros.player import DecafPlayer

RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
STATUS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)


def stamp_seconds(msg: Any) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def target_record(targets: TargetArray) -> dict:
    """A TargetArray as plain JSON data (masks left out; they are in the overlay frames)."""
    return {
        "stamp": stamp_seconds(targets), "frame_id": targets.header.frame_id,
        "goal_id": targets.goal_id, "goal": targets.goal,
        "targets": [{
            "target_id": t.target_id, "label": t.label, "score": round(float(t.score), 4),
            "centroid_px": [round(float(t.centroid_u), 2), round(float(t.centroid_v), 2)],
            "bbox_xywh": [t.bbox.x_offset, t.bbox.y_offset, t.bbox.width, t.bbox.height],
            "area_px": t.area_px,
            "centroid_3d_m": ([round(t.centroid_3d.x, 4), round(t.centroid_3d.y, 4), round(t.centroid_3d.z, 4)]
                              if t.centroid_3d_valid else None),
        } for t in targets.targets],
    }


class Recorder(Node):
    """Collects the node's outputs in memory; ``done`` once enough tracked results arrived."""

    def __init__(self, node_name: str, results_wanted: int, **kwargs: Any) -> None:
        super().__init__("decaf_demo_recorder", **kwargs)
        prefix = f"/{node_name}"
        self.overlays: list[tuple[float, np.ndarray]] = []
        self.targets: list[dict] = []
        self.centroids: list[dict] = []
        self.status: list[dict] = []
        self._wanted = results_wanted
        self.create_subscription(Image, f"{prefix}/overlay", self._on_overlay, RELIABLE)
        self.create_subscription(TargetArray, f"{prefix}/targets", self._on_targets, RELIABLE)
        self.create_subscription(PointStamped, f"{prefix}/centroid", self._on_centroid, RELIABLE)
        self.create_subscription(Status, f"{prefix}/status", self._on_status, STATUS_QOS)

    @property
    def done(self) -> bool:
        return len(self.targets) >= self._wanted

    def _on_overlay(self, msg: Image) -> None:
        rgb = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)[:, :msg.width * 3]
        self.overlays.append((stamp_seconds(msg), rgb.reshape(msg.height, msg.width, 3).copy()))

    def _on_targets(self, msg: TargetArray) -> None:
        self.targets.append(target_record(msg))

    def _on_centroid(self, msg: PointStamped) -> None:
        self.centroids.append({"stamp": stamp_seconds(msg), "frame_id": msg.header.frame_id,
                               "xyz_m": [msg.point.x, msg.point.y, msg.point.z]})

    def _on_status(self, msg: Status) -> None:
        entry = {"state": msg.state_name, "goal": msg.goal, "last_error": msg.last_error,
                 "grounding_ms": round(float(msg.grounding_latency_ms), 1),
                 "tracking_ms": round(float(msg.tracking_latency_ms), 1),
                 "frames_dropped": msg.frames_dropped, "mllm": msg.mllm_model, "sam2": msg.sam2_model}
        key = ("state", "goal", "last_error")
        if not self.status or any(self.status[-1][k] != entry[k] for k in key):
            error = f" — {msg.last_error}" if msg.last_error else ""
            print(f"[decaf_demo] status: {msg.state_name} (goal {msg.goal!r}){error}", flush=True)
            self.status.append({"t": time.monotonic(), **entry})
        else:
            self.status[-1].update(entry)  # same state: keep the newest latencies and counters


def save_outputs(out: Path, recorder: Recorder, fps: float) -> dict:
    """Write overlay frames + video and the JSON records; return the summary."""
    frames_dir = out / "overlay"
    frames_dir.mkdir(parents=True, exist_ok=True)
    for i, (_, rgb) in enumerate(recorder.overlays):
        cv2.imwrite(str(frames_dir / f"{i:05d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if recorder.overlays:
        height, width = recorder.overlays[0][1].shape[:2]
        writer = cv2.VideoWriter(str(out / "overlay.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        for _, rgb in recorder.overlays:
            writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        writer.release()
    (out / "targets.json").write_text(json.dumps(recorder.targets, indent=1))
    (out / "centroids.json").write_text(json.dumps(recorder.centroids, indent=1))
    (out / "status.json").write_text(json.dumps(recorder.status, indent=1))
    summary = {"overlay_frames": len(recorder.overlays), "target_messages": len(recorder.targets),
               "centroids_3d": len(recorder.centroids),
               "models": recorder.status[-1]["mllm"] + " + " + recorder.status[-1]["sam2"] if recorder.status else "",
               "model_warning": next((s["last_error"] for s in recorder.status if "TINY" in s["last_error"]), "")}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def build_parser() -> argparse.ArgumentParser:
    defaults = DecafConfig()
    parser = argparse.ArgumentParser(prog="decaf_demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder")
    parser.add_argument("--goal", default="the astronaut's face", help="goal sentence published to the node")
    parser.add_argument("--photo", default="astronaut", help="sample photograph the camera pans over")
    parser.add_argument("--mllm", default=defaults.mllm, help="MLLM hub id or local folder")
    parser.add_argument("--sam2", default=defaults.sam2, help="SAM2 hub id or local folder")
    parser.add_argument("--device", default=defaults.device)
    parser.add_argument("--no-fallback", action="store_true",
                        help="fail instead of running the tiny random models when the configured ones are missing")
    parser.add_argument("--results", type=int, default=12, help="stop after this many published results")
    parser.add_argument("--rate", type=float, default=5.0, help="camera frame rate (Hz)")
    parser.add_argument("--timeout", type=float, default=1200.0, help="give up after this many seconds")
    return parser


def node_parameters(args: argparse.Namespace) -> list[Parameter]:
    return [Parameter("mllm", value=args.mllm), Parameter("sam2", value=args.sam2),
            Parameter("device", value=args.device), Parameter("autostart", value=True),
            Parameter("fallback_to_tiny_models", value=not args.no_fallback)]


def player_parameters(args: argparse.Namespace) -> list[Parameter]:
    return [Parameter("goal", value=args.goal), Parameter("photo", value=args.photo),
            Parameter("rate_hz", value=args.rate), Parameter("goal_after_frames", value=16),
            Parameter("loop", value=True)]


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM (e.g. `timeout`) ends the demo like Ctrl-C: outputs are still saved


def run(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    context = Context()
    rclpy.init(context=context)
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    nodes: list[Node] = []
    try:
        decaf = DecafNode(context=context, parameter_overrides=node_parameters(args))
        recorder = Recorder(decaf.get_name(), args.results, context=context)
        player = DecafPlayer(context=context, parameter_overrides=player_parameters(args))
        nodes = [decaf, recorder, player]
        for node in nodes:
            executor.add_node(node)
        deadline = time.monotonic() + args.timeout
        try:
            while not recorder.done and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.1)
        except KeyboardInterrupt:
            print("[decaf_demo] interrupted; saving what arrived so far", file=sys.stderr)
        summary = save_outputs(args.out, recorder, args.rate)
    finally:
        for node in reversed(nodes):
            executor.remove_node(node)
            node.destroy_node()
        executor.shutdown()
        rclpy.try_shutdown(context=context)
    print(f"[decaf_demo] {summary['target_messages']} results, {summary['centroids_3d']} 3D centroids, "
          f"{summary['overlay_frames']} overlay frames → {args.out}")
    if summary["model_warning"]:
        print(f"[decaf_demo] WARNING: {summary['model_warning']}", file=sys.stderr)
    if not recorder.done:
        print(f"[decaf_demo] error: only {summary['target_messages']} of {args.results} results within "
              f"{args.timeout:.0f} s; see {args.out / 'status.json'}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
