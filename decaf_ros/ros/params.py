"""Every parameter of ``decaf_node``: declaration (with descriptors), loading, validation.

One table (``PARAMS``) is the single source: it declares the ROS parameters, defines the frozen
``NodeParams`` (its fields are derived from the table) and documents the ranges. ``config/decaf.yaml`` lists exactly these names (a test checks).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any, Callable

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult

from decaf_ros.core.config import (DEFAULT_MLLM, DEFAULT_SAM2, IMAGE_PROCESSOR_BACKENDS, PROMPT_VERSION_FIELDS,
                                   SHARING_DOCS, SHARING_FIELDS, VARIANT_DOCS, DecafConfig)

QOS_CHOICES = ("sensor_data", "reliable")
IMAGE_TRANSPORTS = ("raw", "compressed")


@dataclass(frozen=True)
class ParamSpec:
    """One ROS parameter: default, description, range, and whether it can change while running."""

    name: str
    default: Any
    description: str
    low: float | None = None
    high: float | None = None
    read_only: bool = False
    choices: tuple[str, ...] = ()
    core_field: str | None = None  # the DecafConfig field it feeds, when it is a core setting

    def descriptor(self) -> ParameterDescriptor:
        desc = ParameterDescriptor(name=self.name, description=self.description, read_only=self.read_only)
        if self.choices:
            desc.additional_constraints = "one of: " + ", ".join(self.choices)
        if self.low is not None and isinstance(self.default, bool):
            pass  # bools carry no range
        elif self.low is not None and isinstance(self.default, int):
            desc.integer_range = [IntegerRange(from_value=int(self.low), to_value=int(self.high), step=1)]
        elif self.low is not None and isinstance(self.default, float):
            desc.floating_point_range = [
                FloatingPointRange(from_value=float(self.low), to_value=float(self.high), step=0.0)]
        return desc


_C = DecafConfig()
# Read-only where a change would need a model reload or a new subscription (not supported while running).
PARAMS: tuple[ParamSpec, ...] = (
    # --- models (core)
    ParamSpec("mllm", DEFAULT_MLLM, "MLLM hub id or local folder (save_pretrained layout)",
              read_only=True, core_field="mllm"),
    ParamSpec("sam2", DEFAULT_SAM2, "SAM2 hub id or local folder (transformers Sam2VideoModel)",
              read_only=True, core_field="sam2"),
    ParamSpec("device", _C.device, "auto | cpu | cuda | cuda:N", read_only=True, core_field="device"),
    ParamSpec("dtype", _C.dtype, "MLLM dtype", read_only=True, core_field="dtype",
              choices=("auto", "float32", "bfloat16", "float16")),
    ParamSpec("sam2_dtype", _C.sam2_dtype, "SAM2 dtype (reference: float32)", read_only=True,
              core_field="sam2_dtype", choices=("auto", "float32", "bfloat16", "float16")),
    ParamSpec("cpu_threads", 0, "torch CPU threads, set when the models load; 0 = torch's default (one per core)",
              0, 1024, read_only=True),
    ParamSpec("fallback_to_tiny_models", False,
              "when the models cannot be loaded, use tiny RANDOM models (plumbing demo only; masks meaningless)",
              read_only=True),
    # --- grounding (core); thresholds and key frames apply from the next grounding
    ParamSpec("num_key_frames", _C.num_key_frames, "key frames sampled uniformly from the clip", 1, 64,
              core_field="num_key_frames"),
    ParamSpec("video_max_tokens", _C.video_max_tokens, "visual token budget per temporal slot (video path)",
              4, 16384, read_only=True, core_field="video_max_tokens"),
    ParamSpec("frame_resize_scale", _C.frame_resize_scale, "frame path grid = this x video grid per side",
              1, 8, read_only=True, core_field="frame_resize_scale"),
    ParamSpec("frame_batch_size", _C.frame_batch_size, "key frames per frame-path forward pass", 1, 64,
              read_only=True, core_field="frame_batch_size"),
    ParamSpec("rollout_start_layer", -1, "first LLM layer of the attention rollout; -1 = half the depth",
              -1, 512, read_only=True, core_field="rollout_start_layer"),
    ParamSpec("max_new_tokens", _C.max_new_tokens, "greedy generation limit for the MLLM answers", 1, 4096,
              read_only=True, core_field="max_new_tokens"),
    ParamSpec("point_threshold", _C.point_threshold, "fused-attention threshold for SAM2 point prompts",
              0.0, 1.0, core_field="point_threshold"),
    ParamSpec("nms_iou", _C.nms_iou, "mask IoU above which candidate masks are suppressed", 0.0, 1.0,
              core_field="nms_iou"),
    ParamSpec("track_score_threshold", _C.track_score_threshold, "tracklet score needed to keep a target",
              0.0, 2.0, core_field="track_score_threshold"),
    *(ParamSpec(name, getattr(_C, name), VARIANT_DOCS[name], 0, 3, core_field=name)
      for name in PROMPT_VERSION_FIELDS),
    ParamSpec("image_processor_backend", _C.image_processor_backend, VARIANT_DOCS["image_processor_backend"],
              read_only=True, core_field="image_processor_backend", choices=IMAGE_PROCESSOR_BACKENDS),
    *(ParamSpec(name, getattr(_C, name), SHARING_DOCS[name], core_field=name) for name in SHARING_FIELDS),
    # --- clip buffer
    ParamSpec("clip_length", 32, "frames kept in the ring buffer (the clip grounding sees)", 1, 1024,
              read_only=True),
    ParamSpec("frame_stride", 2, "take every n-th buffered frame into the clip", 1, 64),
    # --- topics and QoS (relative names, so namespaces and remaps apply)
    ParamSpec("image_topic", "image", "color image topic (rgb8/bgr8/rgba8/bgra8/mono8)", read_only=True),
    ParamSpec("image_transport", "raw",
              "raw: sensor_msgs/Image on image_topic; compressed: sensor_msgs/CompressedImage (JPEG/PNG) on "
              "<image_topic>/compressed", read_only=True, choices=IMAGE_TRANSPORTS),
    ParamSpec("depth_topic", "depth", "aligned depth topic (16UC1 mm or 32FC1 m); empty = no depth",
              read_only=True),
    ParamSpec("camera_info_topic", "camera_info", "CameraInfo of the color camera; empty = none",
              read_only=True),
    ParamSpec("goal_topic", "goal", "std_msgs/String goals ('' or 'stop' clears)", read_only=True),
    ParamSpec("image_qos", "sensor_data", "QoS of the color subscription", read_only=True, choices=QOS_CHOICES),
    ParamSpec("depth_qos", "sensor_data", "QoS of the depth subscription", read_only=True, choices=QOS_CHOICES),
    ParamSpec("camera_info_qos", "sensor_data", "QoS of the CameraInfo subscription", read_only=True,
              choices=QOS_CHOICES),
    ParamSpec("depth_sync_tolerance_s", 0.05, "max |stamp difference| when pairing depth with color",
              0.0, 10.0),
    ParamSpec("depth_buffer_size", 10, "recent depth images kept for stamp pairing", 1, 100, read_only=True),
    # --- goals and tracking
    ParamSpec("max_goal_length", 256, "longest accepted goal text (characters)", 1, 2000),
    ParamSpec("goal_wait_for_frames_s", 10.0,
              "how long a goal received before any frame stays pending; 0 = wait forever", 0.0, 3600.0),
    ParamSpec("track", True, "after grounding, track the targets frame by frame with SAM2 streaming"),
    ParamSpec("track_every_n_frames", 1, "track one frame out of n new ones (skip the rest)", 1, 100),
    ParamSpec("min_track_score", 0.5, "re-ground when the best tracked score falls below this", 0.0, 1.0),
    ParamSpec("regrounding_period_s", 10.0, "re-ground the active goal this often; 0 = never", 0.0, 3600.0),
    # --- 3D from depth
    ParamSpec("depth_erosion_px", 3, "mask erosion before reading depth (avoids edge pixels)", 0, 50),
    ParamSpec("min_depth_m", 0.1, "ignore depth readings nearer than this", 0.0, 100.0),
    ParamSpec("max_depth_m", 10.0, "ignore depth readings farther than this", 0.0, 1000.0),
    ParamSpec("min_valid_depth_px", 20, "valid depth pixels needed for a 3D centroid", 1, 1000000),
    # --- outputs
    ParamSpec("publish_overlay", True, "publish ~/overlay (costs a copy + drawing per frame)"),
    ParamSpec("publish_target_masks", True, "fill Target.mask in ~/targets (false: empty masks, smaller messages)"),
    ParamSpec("overlay_alpha", 0.45, "tint opacity of the overlay", 0.0, 1.0),
    ParamSpec("marker_scale_m", 0.05, "diameter of the centroid sphere markers", 0.001, 10.0),
    ParamSpec("status_rate_hz", 1.0, "periodic ~/status rate (also published on every state change)",
              0.1, 100.0, read_only=True),
    ParamSpec("diagnostics_rate_hz", 1.0, "diagnostic_msgs/DiagnosticArray rate on /diagnostics; 0 = off",
              0.0, 100.0, read_only=True),
    # --- lifecycle
    ParamSpec("autostart", True, "configure and activate at start (false: wait for `ros2 lifecycle set`)",
              read_only=True),
)
SPECS: dict[str, ParamSpec] = {spec.name: spec for spec in PARAMS}
# Core settings a running node hands to its pipeline; they apply from the next grounding.
DYNAMIC_CORE_FIELDS: tuple[str, ...] = tuple(
    spec.core_field for spec in PARAMS if spec.core_field and not spec.read_only)


def _node_params_class() -> type:
    """``NodeParams``, derived from ``PARAMS``: ``core`` plus one field per node-side parameter.

    Each field has its parameter's name, the type and the default of its ``ParamSpec``; the
    parameters with a ``core_field`` are the frozen ``DecafConfig`` in ``core`` instead.
    """
    node_fields = [(spec.name, type(spec.default), field(default=spec.default))
                   for spec in PARAMS if spec.core_field is None]
    cls = make_dataclass("NodeParams", [("core", DecafConfig, field(default_factory=DecafConfig)), *node_fields],
                         frozen=True)
    cls.__module__ = __name__  # pickling and reprs name this module
    cls.__doc__ = "The node's settings, validated; ``core`` is what the pipeline is built from."
    return cls


NodeParams = _node_params_class()


def _check_types(values: dict[str, Any]) -> list[str]:
    """Type and range checks that the ROS descriptors also enforce, for callers outside ROS."""
    errors = []
    for name, value in values.items():
        spec = SPECS[name]
        expected = type(spec.default)
        ok = isinstance(value, expected) or (expected is float and isinstance(value, int)
                                             and not isinstance(value, bool))
        if not ok:
            errors.append(f"{name} must be {expected.__name__}, got {type(value).__name__}")
            continue
        if isinstance(value, float) and not math.isfinite(value):
            errors.append(f"{name} must be finite")
        elif spec.low is not None and not isinstance(value, bool) and not spec.low <= value <= spec.high:
            errors.append(f"{name} must be in [{spec.low}, {spec.high}], got {value}")
        if spec.choices and value not in spec.choices:
            errors.append(f"{name} must be one of {', '.join(spec.choices)}, got {value!r}")
    return errors


def _check_node(p: NodeParams) -> list[str]:
    """Cross-field rules the per-parameter ranges cannot express."""
    errors = []
    if p.min_depth_m >= p.max_depth_m:
        errors.append(f"min_depth_m ({p.min_depth_m}) must be < max_depth_m ({p.max_depth_m})")
    if not p.image_topic.strip():
        errors.append("image_topic must not be empty")
    if not p.goal_topic.strip():
        errors.append("goal_topic must not be empty")
    return errors


def params_from_values(values: dict[str, Any]) -> NodeParams:
    """Build + validate NodeParams from {parameter name: value}; missing names take defaults.

    Raises ValueError listing every problem (unknown names included).
    """
    unknown = sorted(set(values) - set(SPECS))
    if unknown:
        raise ValueError(f"unknown parameter(s): {', '.join(unknown)}")
    merged = {spec.name: spec.default for spec in PARAMS} | dict(values)
    errors = _check_types(merged)
    if errors:
        raise ValueError("; ".join(errors))
    core_overrides = {spec.core_field: merged[spec.name] for spec in PARAMS if spec.core_field}
    if core_overrides["rollout_start_layer"] < 0:
        core_overrides["rollout_start_layer"] = None  # -1 -> half depth
    node_names = {f.name for f in fields(NodeParams)} - {"core"}
    node_values = {name: merged[name] for name in node_names}
    for name, spec in SPECS.items():  # YAML may give 1 for a float parameter
        if name in node_values and isinstance(spec.default, float):
            node_values[name] = float(node_values[name])
    core = DecafConfig().with_overrides(**{k: (float(v) if isinstance(getattr(_C, k), float) else v)
                                           for k, v in core_overrides.items()})
    params = NodeParams(core=core, **node_values)
    try:
        core.validate()
    except ValueError as exc:
        errors.append(str(exc))
    errors += _check_node(params)
    if errors:
        raise ValueError("; ".join(errors))
    return params


# --------------------------------------------------------------------------- ROS side


def declare_parameters(node: Any) -> None:
    """Declare every parameter on ``node`` with its descriptor (values from overrides/YAML win)."""
    for spec in PARAMS:
        node.declare_parameter(spec.name, spec.default, spec.descriptor())


def current_values(node: Any) -> dict[str, Any]:
    return {spec.name: node.get_parameter(spec.name).value for spec in PARAMS}


def load_params(node: Any) -> NodeParams:
    """Read the declared parameters and validate them; raises ValueError with every problem."""
    return params_from_values(current_values(node))


def make_set_callback(node: Any) -> Callable[[list[Any]], SetParametersResult]:
    """An on-set callback that refuses an update which would make the whole set invalid.

    rclpy already enforces ranges and read_only; this adds choices and cross-field rules, and turns
    any problem into ``successful=False`` with a reason, never an exception in the executor.
    """

    def on_set(parameters: list[Any]) -> SetParametersResult:
        values = current_values(node)
        for parameter in parameters:
            if parameter.name not in SPECS:
                continue  # e.g. use_sim_time: not ours to judge
            values[parameter.name] = parameter.value
        try:
            params_from_values(values)
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    return on_set
