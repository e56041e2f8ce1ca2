"""launch/decaf.launch.py: structural checks everywhere, a real build where launch_ros exists.

`launch` / `launch_ros` are not obtainable from PyPI, so without a ROS distribution the file is
parsed with `ast`; on a ROS machine the LaunchDescription is built for real.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from decaf_ros.ros.params import SPECS

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "launch" / "decaf.launch.py"
TREE = ast.parse(LAUNCH.read_text())


def _assigned(name: str):
    for node in TREE.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return node.value
    raise AssertionError(f"{name} not assigned at module level in {LAUNCH.name}")


def _literal(name: str):
    return ast.literal_eval(_assigned(name))


def _arguments() -> dict[str, tuple[str, str]]:
    names = [elt.id for elt in ast.walk(_assigned("ARGUMENTS")) if isinstance(elt, ast.Name)]
    return {n: (d, desc) for group in names for n, d, desc in _literal(group)}


def _node_calls() -> list[dict[str, object]]:
    calls = []
    for node in ast.walk(TREE):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Node":
            calls.append({kw.arg: ast.literal_eval(kw.value) if isinstance(kw.value, ast.Constant) else kw.value
                          for kw in node.keywords})
    return calls


def test_declares_the_required_launch_arguments():
    arguments = _arguments()
    required = {"mllm", "sam2", "device", "dtype", "params_file", "image_topic", "depth_topic",
                "camera_info_topic", "goal_topic", "use_rviz", "use_player"}
    assert required <= set(arguments)
    assert all(description for _, description in arguments.values())
    assert "DeclareLaunchArgument" in LAUNCH.read_text()


def test_override_arguments_are_real_parameters():
    for name, _, _ in _literal("OVERRIDE_ARGUMENTS"):
        assert name in SPECS, f"launch argument {name} overrides no declared parameter"


def test_topic_arguments_remap_the_node_topics():
    config = yaml.safe_load((ROOT / "config" / "decaf.yaml").read_text())["decaf"]["ros__parameters"]
    for name, default, _ in _literal("TOPIC_ARGUMENTS"):
        if name == "goal_topic":
            # Goals go to /decaf/goal by default, the documented public topic of a launched node.
            # Relative, so a namespace argument moves it along with the node.
            assert (config[name], default) == ("goal", "decaf/goal")
            continue
        assert config[name] == default, f"{name}: remap source must be the node's default topic name"


def test_starts_decaf_node_of_this_package():
    calls = _node_calls()
    assert _literal("PACKAGE") == "decaf_ros"
    decaf = [c for c in calls if c.get("executable") == "decaf_node"]
    assert len(decaf) == 1 and isinstance(decaf[0]["package"], ast.Name)  # package=PACKAGE
    assert any(c.get("executable") == "decaf_player" for c in calls)
    assert any(c.get("executable") == "rviz2" and c.get("package") == "rviz2" for c in calls)


@pytest.mark.parametrize("name", ["PARAMS_FILE", "RVIZ_FILE"])
def test_named_share_files_exist_and_are_installed(name):
    subdir, filename = _literal(name)
    assert (ROOT / subdir / filename).is_file()
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert re.search(rf"foreach\(\s*\w+\s+[^)]*\b{subdir}\b", cmake) or f"DIRECTORY {subdir}" in cmake
    setup = (ROOT / "setup.py").read_text()
    assert f'_share("{subdir}"' in setup or f"share/decaf_ros/{subdir}" in setup
    assert '_share("launch"' in setup or "share/decaf_ros/launch" in setup


def test_rviz_config_shows_overlay_and_markers():
    rviz = yaml.safe_load((ROOT / "rviz" / "decaf.rviz").read_text())
    displays = rviz["Visualization Manager"]["Displays"]
    shown = {(d["Class"], d.get("Topic", {}).get("Value")) for d in displays if d.get("Enabled")}
    assert ("rviz_default_plugins/Image", "/decaf/overlay") in shown
    assert ("rviz_default_plugins/MarkerArray", "/decaf/markers") in shown
    assert rviz["Visualization Manager"]["Global Options"]["Fixed Frame"] == "camera_color_optical_frame"


def test_builds_a_launch_description_on_a_ros_machine(monkeypatch):
    pytest.importorskip("launch_ros")
    import importlib.util

    from launch import LaunchContext, LaunchDescription
    from launch.actions import DeclareLaunchArgument

    spec = importlib.util.spec_from_file_location("decaf_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "get_package_share_directory", lambda _pkg: str(ROOT))
    description = module.generate_launch_description()
    assert isinstance(description, LaunchDescription)
    declared = {a.name for a in description.entities if isinstance(a, DeclareLaunchArgument)}
    assert set(_arguments()) == declared
    context = LaunchContext()
    for action in description.entities:
        if isinstance(action, DeclareLaunchArgument):
            action.visit(context)
    context.launch_configurations.update({"mllm": "/models/qwen", "use_player": "true"})
    nodes = module._nodes(context)
    assert [n.node_executable for n in nodes] == ["decaf_node", "decaf_player"]


class _Recorded:
    """Stand-in for a launch action: keeps its constructor arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def _load_with_stub_launch(monkeypatch, installed: set[str]):
    """The launch file against minimal stand-ins of launch/launch_ros (not installable here), with
    ``installed`` the packages the ament index knows."""
    import importlib.util
    import sys
    import types

    from ament_index_python.packages import PackageNotFoundError

    def share(package):
        if package not in installed:
            raise PackageNotFoundError(package)
        return str(ROOT)

    class Config:
        def __init__(self, name):
            self.name = name

        def perform(self, context):
            return context[self.name]

    modules = {
        "launch": types.SimpleNamespace(LaunchDescription=_Recorded),
        "launch.actions": types.SimpleNamespace(DeclareLaunchArgument=_Recorded, LogInfo=_Recorded,
                                                OpaqueFunction=_Recorded),
        "launch.conditions": types.SimpleNamespace(IfCondition=_Recorded),
        "launch.substitutions": types.SimpleNamespace(LaunchConfiguration=Config),
        "launch_ros.actions": types.SimpleNamespace(Node=_Recorded),
        "launch_ros": types.SimpleNamespace(),
    }
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("decaf_launch_stubbed", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "get_package_share_directory", share)
    return module


def _context(**values):
    return {name: default for name, (default, _) in _arguments().items()} | values


def test_use_rviz_without_rviz2_warns_instead_of_failing(monkeypatch):
    module = _load_with_stub_launch(monkeypatch, installed={"decaf_ros"})
    actions = module._nodes(_context(use_rviz="true"))
    executables = [a.kwargs.get("executable") for a in actions]
    assert executables[:2] == ["decaf_node", "decaf_player"] and "rviz2" not in executables
    assert "rviz2 is not installed" in actions[-1].kwargs["msg"]
    with_rviz = _load_with_stub_launch(monkeypatch, installed={"decaf_ros", "rviz2"})
    assert [a.kwargs.get("executable") for a in with_rviz._nodes(_context(use_rviz="true"))][-1] == "rviz2"


def test_namespace_and_autostart_reach_the_node(monkeypatch):
    module = _load_with_stub_launch(monkeypatch, installed={"decaf_ros"})
    decaf = module._nodes(_context(namespace="/robot1", autostart="false"))[0]
    assert decaf.kwargs["namespace"] == "/robot1" and decaf.kwargs["name"] == "decaf"
    assert decaf.kwargs["parameters"][1]["autostart"] is False
    assert ("goal", "decaf/goal") in decaf.kwargs["remappings"]  # -> /robot1/decaf/goal
