#!/usr/bin/env python3
"""Print the CMake arguments a build against the PyPI ROS wheels needs, one per line.

Run it with the interpreter whose site-packages hold the ROS wheels (the venv's python). Used by
scripts/setup_env.sh (plain cmake) and by the colcon build test (`colcon build --cmake-args ...`),
so both configure the package the same way:

- Python3_EXECUTABLE: that interpreter, whatever `python3` on PATH is; the interface generators
  and the Python install folder come from it.
- CMAKE_PROJECT_INCLUDE: scripts/pip_wheels_fixup.cmake, which repoints the wheels' exported
  Python/numpy header folders (see that file); DECAF_PYTHON_INCLUDE and DECAF_NUMPY_INCLUDE are
  this interpreter's header folders it repoints them to.

On a ROS 2 machine none of this is needed: `colcon build` alone is right there.

Usage: .venv/bin/python scripts/pip_wheels_cmake_args.py
"""
from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

import numpy

FIXUP = Path(__file__).resolve().with_name("pip_wheels_fixup.cmake")


def cmake_args() -> list[str]:
    return [
        f"-DPython3_EXECUTABLE={sys.executable}",
        f"-DCMAKE_PROJECT_INCLUDE={FIXUP}",
        f"-DDECAF_PYTHON_INCLUDE={sysconfig.get_paths()['include']}",
        f"-DDECAF_NUMPY_INCLUDE={numpy.get_include()}",
    ]


if __name__ == "__main__":
    print("\n".join(cmake_args()))
