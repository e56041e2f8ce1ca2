"""Launch decaf_node (+ optionally RViz and the sample player).

    ros2 launch decaf_ros decaf.launch.py image_topic:=/camera/color/image_raw \
        depth_topic:=/camera/aligned_depth_to_color/image_raw camera_info_topic:=/camera/color/camera_info
    ros2 launch decaf_ros decaf.launch.py use_player:=true player_goal:="the person" \
        fallback_to_tiny_models:=true use_rviz:=true

Model and device arguments left empty keep the value from params_file, so the YAML stays the one
place for defaults; a non-empty argument overrides it. ``namespace:=/robot1`` puts the node and all
its topics under that namespace (/robot1/decaf/..., goals on /robot1/decaf/goal). ``autostart:=false``
starts the managed node unconfigured (bring it up with ``ros2 lifecycle set``). ``use_rviz:=true``
on a machine without rviz2 logs a warning instead of failing the launch.
"""
import os

import yaml
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from ament_index_python.packages import PackageNotFoundError
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "decaf_ros"
PARAMS_FILE = ("config", "decaf.yaml")
RVIZ_FILE = ("rviz", "decaf.rviz")

# (name, default, description). Empty default = "use params_file".
OVERRIDE_ARGUMENTS = [
    ("mllm", "", "MLLM hub id or local folder (empty: from params_file)"),
    ("sam2", "", "SAM2 hub id or local folder (empty: from params_file)"),
    ("device", "", "auto | cpu | cuda | cuda:N (empty: from params_file)"),
    ("dtype", "", "auto | float32 | bfloat16 | float16 (empty: from params_file)"),
    ("fallback_to_tiny_models", "", "true: use tiny random models when the real ones are missing"),
]
TOPIC_ARGUMENTS = [
    ("image_topic", "image", "color image topic remapped onto the node's 'image'"),
    ("depth_topic", "depth", "aligned depth topic remapped onto 'depth'"),
    ("camera_info_topic", "camera_info", "CameraInfo topic remapped onto 'camera_info'"),
    ("goal_topic", "decaf/goal", "goal (std_msgs/String) topic remapped onto the node's 'goal' "
     "(relative: /decaf/goal, or <namespace>/decaf/goal)"),
]
OTHER_ARGUMENTS = [
    ("params_file", "", "parameter YAML (empty: the installed config/decaf.yaml)"),
    ("namespace", "", "namespace of the node and its topics (empty: none)"),
    ("autostart", "true", "configure and activate the managed node at start (false: use `ros2 lifecycle set`)"),
    ("use_rviz", "false", "start RViz with rviz/decaf.rviz (overlay image + markers)"),
    ("use_player", "false", "play the bundled sample clip (decaf_player) as the camera"),
    ("player_goal", "", "goal the sample player publishes after a few frames (empty: none)"),
    ("player_rate_hz", "10.0", "sample player frame rate"),
]
ARGUMENTS = OVERRIDE_ARGUMENTS + TOPIC_ARGUMENTS + OTHER_ARGUMENTS


def _share_file(parts):
    return os.path.join(get_package_share_directory(PACKAGE), *parts)


def _nodes(context):
    """Built at launch time so empty override arguments can be left out (the YAML value then wins)."""
    value = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    params_file = value("params_file") or _share_file(PARAMS_FILE)
    overrides = {name: yaml.safe_load(value(name)) for name, _, _ in OVERRIDE_ARGUMENTS if value(name)}
    overrides["autostart"] = yaml.safe_load(value("autostart"))
    remappings = [(name.removesuffix("_topic"), value(name)) for name, _, _ in TOPIC_ARGUMENTS]
    namespace = value("namespace")
    decaf = Node(package=PACKAGE, executable="decaf_node", name="decaf", namespace=namespace, output="screen",
                 parameters=[params_file, overrides], remappings=remappings)
    player = Node(package=PACKAGE, executable="decaf_player", name="decaf_player", namespace=namespace,
                  output="screen",
                  parameters=[{"goal": value("player_goal"), "rate_hz": float(value("player_rate_hz"))}],
                  remappings=remappings, condition=IfCondition(value("use_player")))
    return [decaf, player, *_rviz(value("use_rviz"), namespace)]


def _rviz(use_rviz, namespace):
    """RViz when asked for and installed; otherwise a warning (a missing rviz2 must not fail the launch
    and leave decaf_node running as an orphan)."""
    if str(use_rviz).lower() not in ("true", "1", "yes"):
        return []
    try:
        get_package_share_directory("rviz2")
    except PackageNotFoundError:
        return [LogInfo(msg="WARNING: use_rviz:=true but rviz2 is not installed; starting without RViz")]
    return [Node(package="rviz2", executable="rviz2", name="rviz2", namespace=namespace, output="log",
                 arguments=["-d", _share_file(RVIZ_FILE)])]


def generate_launch_description():
    declared = [DeclareLaunchArgument(name, default_value=default, description=description)
                for name, default, description in ARGUMENTS]
    return LaunchDescription([*declared, OpaqueFunction(function=_nodes)])
