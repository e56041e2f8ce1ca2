"""pip install path for decaf_ros (colcon builds the package with CMakeLists.txt instead).

The ROS interfaces (decaf_ros.msg) are not built here: scripts/setup_env.sh generates them
with CMake into the same site-packages/decaf_ros folder before running `pip install .`.
"""
from glob import glob
from pathlib import Path
from xml.etree import ElementTree

from setuptools import find_namespace_packages, setup

PACKAGE = "decaf_ros"
HERE = Path(__file__).resolve().parent


def _version() -> str:
    """Single source of truth for the version: package.xml."""
    return ElementTree.parse(HERE / "package.xml").getroot().findtext("version").strip()


def _share(subdir: str, pattern: str) -> list[tuple[str, list[str]]]:
    """data_files entry for share/decaf_ros/<subdir>; nothing when the folder is absent."""
    files = sorted(glob(f"{subdir}/{pattern}"))
    return [(f"share/{PACKAGE}/{subdir}", files)] if files else []


DATA_FILES = [
    # The ament index marker + package.xml make get_package_share_directory() and launch
    # find the package when AMENT_PREFIX_PATH contains the install prefix.
    ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
    (f"share/{PACKAGE}", ["package.xml"]),
    # Same executables colcon installs: `ros2 run decaf_ros decaf_node` and launch_ros
    # look in <prefix>/lib/<package>/, never in bin/.
    (f"lib/{PACKAGE}", ["scripts/decaf_node", "scripts/decaf_player"]),
    *_share("launch", "*.py"),
    *_share("config", "*.yaml"),
    *_share("rviz", "*.rviz"),
]

setup(
    name=PACKAGE,
    version=_version(),
    description="Language-guided video segmentation (DecAF + SAM2) for ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    # Namespace-aware so that a subpackage folder without __init__.py is still installed,
    # exactly as the CMake install (which copies the whole folder) does.
    packages=find_namespace_packages(include=[PACKAGE, f"{PACKAGE}.*"], exclude=["*.__pycache__"]),
    data_files=DATA_FILES,
    # Runtime dependencies are deliberately not declared: pip users get them from
    # requirements.txt + constraints.txt, ROS users from package.xml (rosdep). Declaring them
    # here would make pip replace the ROS distribution's numpy/OpenCV.
    install_requires=[],
    zip_safe=False,
    entry_points={
        "console_scripts": [
            "decaf_node = decaf_ros.ros.node:main",
            "decaf_player = decaf_ros.ros.player:main",
            "decaf_demo = decaf_ros.ros.demo:main",
            "decaf-segment = decaf_ros.cli:main",
            "decaf-eval = decaf_ros.evaluation.cli:main",
            "decaf-bench = decaf_ros.benchmark:main",
        ],
    },
)
