"""A real `colcon build` of decaf_ros against the PyPI ROS wheels of this venv, and its install.

The source tree is symlinked into a temporary workspace (`src/decaf_ros`) and built the way a
ROS 2 user builds it, with the underlay a sourced ROS setup gives (AMENT_PREFIX_PATH and
CMAKE_PREFIX_PATH = the venv prefix) and the CMake arguments the wheels need
(scripts/pip_wheels_cmake_args.py, shared with scripts/setup_env.sh). The install is then checked
from a child process that sources `install/setup.bash`, so it sees what a user's shell sees:

- one `decaf_ros` package in the install holding the hand-written modules and the generated
  interfaces: every msg/*.msg and action/*.action of the source tree is an importable type
  with working type support (serialisation round trip);
- `lib/decaf_ros/<exe>` executables whose imports resolve inside the install;
- share files (package.xml, launch/, config/, rviz/) and the ament index entries, and
  `get_package_share_directory('decaf_ros')` pointing at the install, not at the venv copy.

Run as a script (`python test_colcon_build.py probe REPORT ARGS`), this file is that child-side probe.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "decaf_ros"
# The repository root: the folder above this file that holds package.xml.
ROOT = next(path for path in Path(__file__).resolve().parents if (path / "package.xml").is_file())
INTERFACE_KINDS = ("msg", "action")
EXECUTABLES = ("decaf_node", "decaf_player")
SHARE_DIRS = ("launch", "config", "rviz")
BUILD_TIMEOUT_S = 1200
LOG_TAIL_LINES = 60

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def source(self) -> Path:
        return self.root / "src" / PACKAGE

    @property
    def install(self) -> Path:
        """Install prefix of the package (colcon's default isolated layout)."""
        return self.root / "install" / PACKAGE

    @property
    def site_packages(self) -> Path:
        """Where ament_cmake_python installs Python packages under the prefix."""
        prefix = {"base": str(self.install), "platbase": str(self.install)}
        return Path(sysconfig.get_path("purelib", vars=prefix))

    @property
    def package_log(self) -> Path:
        return self.root / "log" / "latest_build" / PACKAGE / "stdout_stderr.log"


def source_interfaces() -> list[str]:
    """`msg/Target`, `action/Ground`, ...: every interface definition in the source tree."""
    return sorted(f"{kind}/{path.stem}" for kind in INTERFACE_KINDS
                  for path in (ROOT / kind).glob(f"*.{kind}"))


def _underlay_env(workspace: Workspace) -> dict[str, str]:
    """The environment of a shell that sourced the ROS underlay (here: this venv).

    Everything else is inherited, in particular LD_LIBRARY_PATH together with the ROS wheels'
    bootstrap guard (_ROS_WHEELS_BOOTSTRAP_COMPLETE): a child that gets the guard without the
    library path cannot load librcl*.so.
    """
    env = dict(os.environ)
    for name in ("COLCON_PREFIX_PATH", "COLCON_DEFAULTS_FILE", "PYTHONPATH"):
        env.pop(name, None)
    scripts = sysconfig.get_path("scripts")
    env.update(
        AMENT_PREFIX_PATH=sys.prefix,
        CMAKE_PREFIX_PATH=sys.prefix,
        PATH=os.pathsep.join([scripts, env.get("PATH", "")]),
        # An empty colcon home: no user defaults.yaml or mixins can change the build.
        COLCON_HOME=str(workspace.root / "colcon_home"),
    )
    return env


def _wheel_cmake_args() -> list[str]:
    """The CMake arguments scripts/setup_env.sh configures with (one home for them)."""
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "pip_wheels_cmake_args.py")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"pip_wheels_cmake_args.py failed:\n{result.stderr}"
    return result.stdout.splitlines()


def _colcon_build_command() -> list[str]:
    return [
        str(Path(sysconfig.get_path("scripts")) / "colcon"), "--log-base", "log", "build",
        # Only the package root is identified; colcon never crawls into .venv/, build/, ...
        "--paths", f"src/{PACKAGE}", "--packages-select", PACKAGE,
        # Plain line output for the captured log; no desktop notifications or status lines.
        "--event-handlers", "console_direct-", "console_cohesion-", "desktop_notification-",
        "status-", "terminal_title-",
        "--cmake-args", *_wheel_cmake_args(),
    ]


def _run_build(workspace: Workspace) -> tuple[int | None, str]:
    """Run colcon; (exit code or None on timeout, its output)."""
    # A session of its own, so a timeout stops cmake and the compilers too, not only colcon.
    with subprocess.Popen(_colcon_build_command(), cwd=workspace.root, env=_underlay_env(workspace),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          start_new_session=True) as process:
        try:
            output, _ = process.communicate(timeout=BUILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            return None, process.communicate()[0]
    return process.returncode, output


def _tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _build_failure(workspace: Workspace, why: str, output: str) -> str:
    log = workspace.package_log.read_text(errors="replace") if workspace.package_log.is_file() else ""
    return (f"colcon build {why} in {workspace.root}\n"
            f"--- colcon output ---\n{_tail(output)}\n"
            f"--- {workspace.package_log.relative_to(workspace.root)} (last {LOG_TAIL_LINES} lines) ---\n"
            f"{_tail(log) or '(no package log)'}")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """A colcon workspace with the source tree symlinked in as src/decaf_ros, built."""
    assert shutil.which("cmake"), "colcon needs cmake on PATH"
    workspace = Workspace(tmp_path_factory.mktemp("colcon_ws"))
    workspace.source.parent.mkdir(parents=True)
    workspace.source.symlink_to(ROOT, target_is_directory=True)
    returncode, output = _run_build(workspace)
    if returncode is None:
        pytest.fail(_build_failure(workspace, f"timed out after {BUILD_TIMEOUT_S} s", output), pytrace=False)
    if returncode != 0:
        pytest.fail(_build_failure(workspace, f"failed (exit {returncode})", output), pytrace=False)
    return workspace


@pytest.fixture(scope="module")
def probe(workspace: Workspace) -> dict:
    """What a child process sees after `source install/setup.bash` (see _probe)."""
    executables = [str(workspace.install / "lib" / PACKAGE / exe) for exe in EXECUTABLES]
    report = workspace.root / "probe.json"
    script = 'source install/setup.bash && exec "$@"'
    command = ["bash", "-c", script, "bash", sys.executable, str(Path(__file__).resolve()), "probe",
               str(report), json.dumps({"interfaces": source_interfaces(), "executables": executables})]
    result = subprocess.run(command, cwd=workspace.root, env=_underlay_env(workspace),
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"probe failed (exit {result.returncode}):\n{result.stderr}"
    return json.loads(report.read_text())


def _files_under(folder: Path) -> dict[str, bytes]:
    """Relative path -> content of every file below folder (bytecode caches left out)."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file() and "__pycache__" not in path.parts}


# --- the tests -----------------------------------------------------------------------------


def test_one_package_with_code_and_interfaces(workspace: Workspace, probe: dict) -> None:
    package_dir = workspace.site_packages / PACKAGE
    assert probe["package_path"] == [str(package_dir)], (
        "decaf_ros must be one package in the install, not the venv copy or a namespace split")
    kinds = sorted({name.split("/")[0] for name in source_interfaces()})
    assert "msg" in kinds
    for kind in kinds:
        assert probe["modules"][f"{PACKAGE}.{kind}"] == str(package_dir / kind / "__init__.py")
    # The hand-written modules sit in the same folder as the generated ones. The top-level
    # __init__.py may be the generator's (empty) or ours (a docstring): CMakeLists.txt.
    installed = _files_under(package_dir)
    code = {name: data for name, data in _files_under(ROOT / PACKAGE).items() if name.endswith(".py")}
    assert "__init__.py" in code and "__init__.py" in installed
    wrong = [name for name, data in code.items() if name != "__init__.py" and installed.get(name) != data]
    assert not wrong, f"missing or different in {package_dir}: {wrong}"


def test_every_interface_definition_has_a_working_type(probe: dict) -> None:
    interfaces = source_interfaces()
    assert interfaces, "no msg/*.msg or action/*.action in the source tree"
    assert probe["types"] == {name: "ok" for name in interfaces}


def test_interfaces_registered_in_ament_index(probe: dict) -> None:
    """`ros2 interface list` and rosidl tooling find the interfaces through this entry."""
    registered = set(probe["rosidl_interfaces"])
    for name in source_interfaces():
        kind = name.split("/")[0]
        assert f"{name}.{kind}" in registered, name


def test_node_executables_installed(workspace: Workspace, probe: dict) -> None:
    assert probe["package_prefix"] == str(workspace.install)  # where `ros2 run` looks
    for exe in EXECUTABLES:
        path = workspace.install / "lib" / PACKAGE / exe
        assert path.is_file() and os.access(path, os.X_OK), path
        assert path.read_bytes() == (ROOT / "scripts" / exe).read_bytes()
        # Its imports resolve inside the install (the script runs up to calling main()).
        main_file = Path(probe["executables"][str(path)])
        assert main_file.is_relative_to(workspace.site_packages / PACKAGE), main_file


def test_share_files_installed(workspace: Workspace, probe: dict) -> None:
    share = workspace.install / "share" / PACKAGE
    assert probe["share_directory"] == str(share)
    assert (share / "package.xml").read_bytes() == (ROOT / "package.xml").read_bytes()
    assert (workspace.install / "share/ament_index/resource_index/packages" / PACKAGE).is_file()
    for sub in SHARE_DIRS:
        source = _files_under(ROOT / sub)
        assert source, f"{sub}/ is empty in the source tree"
        assert _files_under(share / sub) == source, f"share/{PACKAGE}/{sub} differs from {sub}/"


# --- child side ----------------------------------------------------------------------------


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _check_type(name: str) -> str:
    """Import one interface type and round-trip it through its C type support."""
    import importlib

    from rclpy.serialization import deserialize_message, serialize_message
    from rclpy.type_support import check_for_type_support

    kind, type_name = name.split("/")
    try:
        interface = getattr(importlib.import_module(f"{PACKAGE}.{kind}"), type_name)
        check_for_type_support(interface)
        parts = [interface.Goal, interface.Result, interface.Feedback] if kind == "action" else [interface]
        for part in parts:
            if deserialize_message(serialize_message(part()), part) != part():
                return f"{part.__name__} changed in a serialisation round trip"
    except Exception as exc:  # reported per type, so one broken type does not hide the others
        return _error(exc)
    return "ok"


def _module_file(name: str) -> str:
    import importlib

    try:
        return importlib.import_module(name).__file__
    except Exception as exc:
        return _error(exc)


def _main_module_file(executable: str) -> str:
    """Run an executable's top level (not main()) and report the file its main() comes from."""
    import inspect
    import runpy

    try:
        return inspect.getfile(runpy.run_path(executable, run_name="decaf_probe")["main"])
    except Exception as exc:
        return _error(exc)


def _probe(interfaces: list[str], executables: list[str]) -> dict:
    import importlib

    from ament_index_python.packages import get_package_prefix, get_package_share_directory, get_resource

    package = importlib.import_module(PACKAGE)
    kinds = sorted({name.split("/")[0] for name in interfaces})
    return {
        "package_path": list(package.__path__),
        "modules": {f"{PACKAGE}.{kind}": _module_file(f"{PACKAGE}.{kind}") for kind in kinds},
        "types": {name: _check_type(name) for name in interfaces},
        "executables": {exe: _main_module_file(exe) for exe in executables},
        "package_prefix": get_package_prefix(PACKAGE),
        "share_directory": get_package_share_directory(PACKAGE),
        "rosidl_interfaces": get_resource("rosidl_interfaces", PACKAGE)[0].splitlines(),
    }


if __name__ == "__main__" and sys.argv[1:2] == ["probe"]:
    Path(sys.argv[2]).write_text(json.dumps(_probe(**json.loads(sys.argv[3]))))
