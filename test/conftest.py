"""Shared test set-up: ROS 2 isolation and an rclpy context.

Keep this file to ROS isolation. Every other fixture (tiny models, sample clips) lives in
``common_fixtures.py``, registered from here with ``pytest_plugins``. Test folders mirror the code:
``method/`` (core DecAF), ``models/`` (model families), ``ros/`` (the ROS shell), ``tools/``
(CLIs, benchmarks, evaluation, packaging).
"""
from __future__ import annotations

import os
from collections.abc import Iterator

# Must happen before rclpy is imported (and before any context is initialised): discovery stays on
# this machine, and the domain id keeps concurrent test runs (and any live robot on domain 0)
# from seeing each other's topics. Override with DECAF_TEST_ROS_DOMAIN_ID.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_DOMAIN_ID"] = os.environ.get("DECAF_TEST_ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
os.environ.pop("ROS_STATIC_PEERS", None)

import pytest  # noqa: E402
import rclpy  # noqa: E402
from rclpy.context import Context  # noqa: E402

# The fixture module (tiny random models, built once per session; shared clips).
pytest_plugins = ["common_fixtures"]


@pytest.fixture(scope="session")
def rclpy_context() -> Iterator[Context]:
    """An initialised rclpy context of its own for the whole session.

    Not the default context, so code under test may call rclpy.init()/shutdown() freely.
    Create nodes with `Node(name, context=rclpy_context)` and executors with
    `SingleThreadedExecutor(context=rclpy_context)`.
    """
    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        rclpy.try_shutdown(context=context)
