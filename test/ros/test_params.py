"""Parameters: the YAML lists exactly the declared ones; bad values are refused with a reason."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from rclpy.node import Node
from rclpy.parameter import Parameter

from decaf_ros.ros import params as ros_params
from decaf_ros.ros.params import PARAMS, params_from_values

CONFIG = Path(__file__).resolve().parents[2] / "config" / "decaf.yaml"


def test_yaml_keys_equal_declared_parameters():
    data = yaml.safe_load(CONFIG.read_text())
    values = data["decaf"]["ros__parameters"]
    assert set(values) == {spec.name for spec in PARAMS}
    params = params_from_values(values)  # the shipped file is valid as is
    assert params.fallback_to_tiny_models is False


def test_yaml_has_a_comment_per_parameter():
    lines = CONFIG.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("    ") and not line.strip().startswith("#") and ":" in line:
            assert lines[i - 1].strip().startswith("#"), f"no comment above {line.strip()!r}"


def test_yaml_types_match_declared_types():
    # rclpy refuses an override whose type differs from the declared default (e.g. 1 for a double).
    values = yaml.safe_load(CONFIG.read_text())["decaf"]["ros__parameters"]
    for spec in PARAMS:
        assert type(values[spec.name]) is type(spec.default), spec.name


def test_defaults_map_onto_core_config():
    params = params_from_values({})
    assert params.core.rollout_start_layer is None  # -1 -> half depth
    assert params_from_values({"rollout_start_layer": 12}).core.rollout_start_layer == 12
    assert params_from_values({"point_threshold": 0.5}).core.point_threshold == 0.5


@pytest.mark.parametrize("values,message", [
    ({"min_depth_m": 5.0, "max_depth_m": 1.0}, "min_depth_m"),
    ({"image_qos": "fast"}, "image_qos must be one of"),
    ({"device": "tpu"}, "device must be"),
    ({"dtype": "int8"}, "dtype must be one of"),
    ({"clip_length": 0}, "clip_length must be in"),
    ({"point_threshold": 1.5}, "point_threshold must be in"),
    ({"prompt_choice_version": 4}, "prompt_choice_version must be in"),
    ({"image_processor_backend": "fast"}, "image_processor_backend must be one of"),
    ({"track": "yes"}, "track must be bool"),
    ({"image_topic": "  "}, "image_topic must not be empty"),
    ({"nonsense": 1}, "unknown parameter"),
    ({"overlay_alpha": float("nan")}, "finite"),
])
def test_invalid_values_rejected_with_message(values, message):
    with pytest.raises(ValueError, match=message):
        params_from_values(values)


@pytest.fixture
def node(rclpy_context):
    node = Node("decaf_params_test", context=rclpy_context)
    ros_params.declare_parameters(node)
    node.add_on_set_parameters_callback(ros_params.make_set_callback(node))
    yield node
    node.destroy_node()


def test_descriptors_carry_ranges_and_read_only(node):
    desc = node.describe_parameter("point_threshold")
    assert desc.floating_point_range[0].to_value == 1.0 and desc.description
    assert node.describe_parameter("clip_length").integer_range[0].from_value == 1
    assert node.describe_parameter("mllm").read_only
    for spec in PARAMS:
        assert node.describe_parameter(spec.name).description


def test_runtime_update_valid_is_applied(node):
    [result] = node.set_parameters([Parameter("min_track_score", value=0.3)])
    assert result.successful
    assert ros_params.load_params(node).min_track_score == 0.3


def test_prompt_versions_change_at_run_time_and_reach_the_core_config(node):
    results = node.set_parameters([Parameter("prompt_object_version", value=2),
                                   Parameter("prompt_background_version", value=3)])
    assert all(r.successful for r in results)
    core = ros_params.load_params(node).core
    assert (core.prompt_object_version, core.prompt_choice_version, core.prompt_background_version) == (2, 0, 3)
    assert {"prompt_object_version", "prompt_choice_version", "prompt_background_version"} <= set(
        ros_params.DYNAMIC_CORE_FIELDS)
    assert "image_processor_backend" not in ros_params.DYNAMIC_CORE_FIELDS  # needs a model reload
    assert core.image_processor_backend == "pil"


def test_sharing_switches_default_on_and_change_at_run_time(node):
    core = ros_params.load_params(node).core
    assert core.share_prompt_prefix and core.share_sam2_features
    results = node.set_parameters([Parameter("share_prompt_prefix", value=False),
                                   Parameter("share_sam2_features", value=False)])
    assert all(r.successful for r in results)
    core = ros_params.load_params(node).core
    assert not core.share_prompt_prefix and not core.share_sam2_features
    assert {"share_prompt_prefix", "share_sam2_features"} <= set(ros_params.DYNAMIC_CORE_FIELDS)


@pytest.mark.parametrize("name,value,reason", [
    ("min_track_score", 3.0, ""),  # out of FloatingPointRange: rclpy refuses it
    ("prompt_object_version", 4, ""),  # out of IntegerRange
    ("image_processor_backend", "torchvision", ""),  # read-only
    ("min_depth_m", 20.0, "min_depth_m"),  # in range, but not < max_depth_m
    ("mllm", "other/model", ""),  # read-only
    ("track", "maybe", ""),  # wrong type
])
def test_runtime_update_invalid_is_refused_not_crashing(node, name, value, reason):
    before = node.get_parameter(name).value
    [result] = node.set_parameters([Parameter(name, value=value)])
    assert not result.successful
    assert result.reason and reason in result.reason
    assert node.get_parameter(name).value == before


def test_invalid_startup_override_raises_with_reason(rclpy_context):
    node = Node("decaf_params_bad", context=rclpy_context, parameter_overrides=[Parameter("min_depth_m", value=9.0),
                                                          Parameter("max_depth_m", value=2.0)])
    try:
        ros_params.declare_parameters(node)
        with pytest.raises(ValueError, match="min_depth_m .* must be < max_depth_m"):
            ros_params.load_params(node)
    finally:
        node.destroy_node()
