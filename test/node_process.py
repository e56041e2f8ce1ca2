"""decaf_node as its own process, as `ros2 run` starts it, with the fake pipeline instead of models.

    python node_process.py --ros-args -r __ns:=/x -p regrounding_period_s:=0.0
"""
from __future__ import annotations

import sys

from decaf_ros.ros.node import DecafNode
from decaf_ros.ros.spin import spin_node
from fake_pipeline import FakePipeline

if __name__ == "__main__":
    sys.exit(spin_node(lambda: DecafNode(pipeline_factory=lambda _params: FakePipeline()), sys.argv))
