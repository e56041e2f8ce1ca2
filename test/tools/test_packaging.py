"""Packaging checks: package.xml, setup.py, CMakeLists.txt and what the install left in the venv.

The install checks read the venv prefix (sys.prefix), where scripts/setup_env.sh installs both
the generated interfaces and the package.
"""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from distutils.core import run_setup
from importlib import metadata
from pathlib import Path

import pytest
from ament_index_python.packages import get_package_share_directory, get_resource
from catkin_pkg.package import parse_package

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "decaf_ros"
SHARE_GLOBS = {"launch": "*.py", "config": "*.yaml", "rviz": "*.rviz"}
EXECUTABLES = ("decaf_node", "decaf_player")
RERUN_HINT = "the installed decaf_ros is out of date: re-run scripts/setup_env.sh"


@pytest.fixture
def ament_prefix(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Package look-ups (ament index, launch) search AMENT_PREFIX_PATH: the venv here."""
    monkeypatch.setenv("AMENT_PREFIX_PATH", sys.prefix)
    return Path(sys.prefix)


@pytest.fixture(scope="module")
def manifest():
    package = parse_package(str(ROOT / "package.xml"))
    package.validate()
    return package


@pytest.fixture(scope="module")
def setup_dist():
    """setup.py evaluated (not run): its data_files and entry points."""
    cwd = os.getcwd()
    os.chdir(ROOT)  # setup.py globs relative to its folder, as pip runs it
    try:
        return run_setup(str(ROOT / "setup.py"), stop_after="init")
    finally:
        os.chdir(cwd)


def _names(deps) -> set[str]:
    return {dep.name for dep in deps}


def _source_share_files() -> dict[str, list[Path]]:
    return {sub: sorted((ROOT / sub).glob(pattern)) for sub, pattern in SHARE_GLOBS.items()}


# --- package.xml ---------------------------------------------------------------------------


def test_manifest_format_and_build_type(manifest) -> None:
    assert manifest.package_format == 3
    assert manifest.name == PACKAGE
    assert manifest.get_build_type() == "ament_cmake"
    assert "rosidl_interface_packages" in {group.name for group in manifest.member_of_groups}


def test_manifest_declares_dependencies(manifest) -> None:
    assert {"ament_cmake", "ament_cmake_python", "rosidl_default_generators"} <= _names(
        manifest.buildtool_depends)
    runtime = _names(manifest.exec_depends)
    assert {"rclpy", "std_msgs", "sensor_msgs", "geometry_msgs", "visualization_msgs",
            "builtin_interfaces", "cv_bridge", "launch", "launch_ros", "rosidl_default_runtime",
            "python3-numpy", "python3-opencv"} <= runtime
    # Interfaces used in msg/ are needed at build time too.
    assert {"std_msgs", "sensor_msgs", "geometry_msgs", "builtin_interfaces"} <= _names(
        manifest.build_depends)


def test_versions_agree(manifest) -> None:
    assert metadata.version(PACKAGE) == manifest.version, RERUN_HINT


# --- CMakeLists.txt ------------------------------------------------------------------------


def test_cmake_generates_every_message() -> None:
    cmake = (ROOT / "CMakeLists.txt").read_text()
    messages = sorted(path.name for path in (ROOT / "msg").glob("*.msg"))
    assert messages
    for name in messages:
        assert f'"msg/{name}"' in cmake, f"msg/{name} is missing from rosidl_generate_interfaces"
    for exe in EXECUTABLES:
        assert f"scripts/{exe}" in cmake


def test_no_generated_sources_in_tree() -> None:
    """A decaf_ros/msg folder in the sources would collide with the generated package."""
    assert not (ROOT / PACKAGE / "msg").exists()


# --- setup.py ------------------------------------------------------------------------------


def test_setup_data_files(setup_dist) -> None:
    data = {dest: set(files) for dest, files in setup_dist.data_files}
    assert f"resource/{PACKAGE}" in data["share/ament_index/resource_index/packages"]
    assert "package.xml" in data[f"share/{PACKAGE}"]
    assert {f"scripts/{exe}" for exe in EXECUTABLES} <= data[f"lib/{PACKAGE}"]
    for sub, files in _source_share_files().items():
        expected = {str(path.relative_to(ROOT)) for path in files}
        assert expected <= data.get(f"share/{PACKAGE}/{sub}", set()), sub


def test_setup_console_scripts(setup_dist) -> None:
    scripts = {entry.split("=")[0].strip(): entry.split("=")[1].strip()
               for entry in setup_dist.entry_points["console_scripts"]}
    assert scripts["decaf_node"] == "decaf_ros.ros.node:main"
    assert scripts["decaf_player"] == "decaf_ros.ros.player:main"
    assert scripts["decaf-segment"] == "decaf_ros.cli:main"
    assert scripts["decaf-eval"] == "decaf_ros.evaluation.cli:main"
    assert not any(pkg == "test" or pkg.startswith("test.") for pkg in setup_dist.packages)


# --- the install ---------------------------------------------------------------------------


def test_imports_installed_package_with_messages() -> None:
    import decaf_ros
    import decaf_ros.msg

    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    assert Path(decaf_ros.__file__).resolve().parent == site / PACKAGE, (
        "tests must import the installed decaf_ros, not the source folder")
    assert Path(decaf_ros.msg.__file__).resolve().parent == site / PACKAGE / "msg"
    assert str(ROOT) not in {str(Path(p).resolve()) for p in sys.path if p}


def test_installed_copy_matches_source() -> None:
    site = Path(sysconfig.get_paths()["purelib"]) / PACKAGE
    for source in sorted((ROOT / PACKAGE).rglob("*.py")):
        installed = site / source.relative_to(ROOT / PACKAGE)
        assert installed.is_file() and installed.read_bytes() == source.read_bytes(), (
            f"{source.relative_to(ROOT)}: {RERUN_HINT}")


def test_share_directory(ament_prefix: Path) -> None:
    share = Path(get_package_share_directory(PACKAGE))
    assert share == ament_prefix / "share" / PACKAGE
    assert (share / "package.xml").read_bytes() == (ROOT / "package.xml").read_bytes(), RERUN_HINT
    assert (ament_prefix / "share/ament_index/resource_index/packages" / PACKAGE).is_file()
    for sub, files in _source_share_files().items():
        for path in files:
            assert (share / sub / path.name).is_file(), f"{sub}/{path.name}: {RERUN_HINT}"


def test_interfaces_registered(ament_prefix: Path) -> None:
    """`ros2 interface list` and rosidl tooling find the interfaces through this index entry."""
    content, _ = get_resource("rosidl_interfaces", PACKAGE)
    for path in (ROOT / "msg").glob("*.msg"):
        assert f"msg/{path.name}" in content.splitlines()


def test_node_executables_installed(ament_prefix: Path) -> None:
    for exe in EXECUTABLES:
        path = ament_prefix / "lib" / PACKAGE / exe
        assert path.is_file() and os.access(path, os.X_OK), path


def test_child_process_imports_messages() -> None:
    """Child processes inherit the ROS wheels' library path along with their bootstrap guard."""
    result = subprocess.run(
        [sys.executable, "-c", "from decaf_ros.msg import Status, Target, TargetArray"],
        cwd="/", capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
