"""Launch decaf_node (+ optionally RViz and the sample player).

    ros2 launch decaf_ros decaf.launch.py image_topic:=/camera/color/image_raw \
        depth_topic:=/camera/aligned_depth_to_color/image_raw camera_info_topic:=/camera/color/camera_info
    ros2 launch decaf_ros decaf.launch.py use_player:=true player_goal:="the person" \
        fallback_to_tiny_models:=true use_rviz:=true

Model and device arguments left empty keep the value from params_file, so the YAML stays the one
place for defaults; a non-empty argument overrides it.
"""
import os

import yaml
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
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
    ("goal_topic", "/decaf/goal", "goal (std_msgs/String) topic remapped onto the node's 'goal'"),
]
OTHER_ARGUMENTS = [
    ("params_file", "", "parameter YAML (empty: the installed config/decaf.yaml)"),
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
    remappings = [(name.removesuffix("_topic"), value(name)) for name, _, _ in TOPIC_ARGUMENTS]
    decaf = Node(package=PACKAGE, executable="decaf_node", name="decaf", output="screen",
                 parameters=[params_file, overrides], remappings=remappings)
    player = Node(package=PACKAGE, executable="decaf_player", name="decaf_player", output="screen",
                  parameters=[{"goal": value("player_goal"), "rate_hz": float(value("player_rate_hz"))}],
                  remappings=remappings, condition=IfCondition(value("use_player")))
    rviz = Node(package="rviz2", executable="rviz2", name="rviz2", output="log",
                arguments=["-d", _share_file(RVIZ_FILE)], condition=IfCondition(value("use_rviz")))
    return [decaf, player, rviz]


def generate_launch_description():
    declared = [DeclareLaunchArgument(name, default_value=default, description=description)
                for name, default, description in ARGUMENTS]
    return LaunchDescription([*declared, OpaqueFunction(function=_nodes)])
