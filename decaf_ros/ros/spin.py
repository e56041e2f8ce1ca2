"""One way to run a node as an executable: init, spin until Ctrl-C / shutdown, clean up."""
from __future__ import annotations

import signal
from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node

EXECUTOR_THREADS = 4  # camera, goals/action, reporting and lifecycle transitions side by side


def spin_node(make_node: Callable[[], Node], args: list[str] | None = None) -> int:
    """Create the node after rclpy.init (parameters come from ``args``) and spin it; exit code 0.

    Cleanup runs with SIGINT/SIGTERM ignored: a second Ctrl-C (or launch's escalation) while the
    node releases its models must not turn into a KeyboardInterrupt traceback halfway through.
    """
    rclpy.init(args=args)
    node = None
    executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS)
    try:
        node = make_node()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError:
        # rclpy's signal handler shuts the context down from its own thread: when that lands after the
        # executor checked the context but before it built its wait set, the executor raises RCLError
        # (a RuntimeError) instead of ExternalShutdownException. It is the same Ctrl-C.
        if rclpy.ok():
            raise
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        executor.shutdown(timeout_sec=1.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
