"""A second ROS process for node tests: drives a running decaf node from outside, prints JSON on stdout.

    python ros_client.py actions NAMESPACE   # Ground goals superseded by goals, a topic goal, a cancel
    python ros_client.py lifecycle NAMESPACE # every transition through ~/change_state

The node under test runs in the pytest process with a fake pipeline whose "hold ..." goals ground
until cancelled, so every outcome below is decided by the goal path, not by timing. Where this
script cannot observe what it must wait for (a topic goal has no feedback), it waits for a line on
stdin: the test process writes one once it has seen that state in the fake pipeline.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.action import ActionClient
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from decaf_ros.action import Ground
from decaf_ros.msg import Status

TIMEOUT_S = 60.0
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
STATUS_NAMES = {4: "succeeded", 5: "canceled", 6: "aborted"}  # action_msgs/GoalStatus


class Client:
    def __init__(self, namespace: str) -> None:
        self.node = Node("decaf_test_client", namespace=namespace)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.prefix = f"{namespace}/decaf"
        self._released = threading.Semaphore(0)  # one release per line the test process writes
        threading.Thread(target=self._read_releases, daemon=True).start()

    def _read_releases(self) -> None:
        for _line in sys.stdin:
            self._released.release()

    def until(self, predicate: Any, what: str) -> Any:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {what}")
            self.executor.spin_once(timeout_sec=0.02)

    def released_by_test(self, what: str) -> None:
        """Spin until the test process says (a line on stdin) that it has seen ``what``."""
        print(f"waiting for the test process: {what}", file=sys.stderr, flush=True)
        self.until(lambda: self._released.acquire(blocking=False), f"the test process to see {what}")

    def result_of(self, future: Any, what: str) -> Any:
        self.until(future.done, what)
        return future.result()


def run_actions(client: Client) -> list[dict[str, Any]]:
    ground = ActionClient(client.node, Ground, f"{client.prefix}/ground")
    goal_pub = client.node.create_publisher(String, f"{client.node.get_namespace()}/goal", RELIABLE)
    if not ground.wait_for_server(timeout_sec=TIMEOUT_S):
        raise SystemExit("no Ground action server")
    client.until(lambda: goal_pub.get_subscription_count() > 0, "goal topic subscriber")
    stages: dict[str, list[str]] = {}
    handles: dict[str, Any] = {}

    def send(text: str) -> None:
        stages[text] = []
        future = ground.send_goal_async(Ground.Goal(text=text, track=Ground.Goal.TRACK_OFF),
                                        feedback_callback=lambda fb, t=text: stages[t].append(fb.feedback.stage))
        handles[text] = client.result_of(future, f"acceptance of {text!r}")
        assert handles[text].accepted, text
        # Grounding has started once the pipeline reports its first stage.
        client.until(lambda: "p1_video" in stages[text], f"{text!r} grounding")

    def outcome(text: str, last_stage: str = "") -> dict[str, Any]:
        if last_stage:
            # Feedback and result travel on different channels, unordered, and rclpy's ActionClient drops
            # the feedback of a goal whose result it has received: ask for the result after the last stage.
            client.until(lambda: last_stage in stages[text], f"{text!r} feedback up to {last_stage!r}")
        response = client.result_of(handles[text].get_result_async(), f"result of {text!r}")
        result = response.result
        return {"text": text, "status": STATUS_NAMES.get(response.status, str(response.status)),
                "success": result.success, "error": result.error, "targets": len(result.targets.targets),
                "stage": result.targets.stage, "stages": stages[text]}

    outcomes = []
    send("hold A left")
    send("hold B right")  # supersedes A
    outcomes.append(outcome("hold A left"))
    goal_pub.publish(String(data="hold C topic"))  # supersedes B
    outcomes.append(outcome("hold B right"))
    # Latest wins: a goal superseded while still queued is never grounded. D must supersede the topic
    # goal's running grounding, and a topic goal has no feedback to show it started.
    client.released_by_test("'hold C topic' grounding")
    send("hold D left")  # supersedes the topic goal, then is cancelled by this client
    cancel = client.result_of(handles["hold D left"].cancel_goal_async(), "cancel response")
    assert len(cancel.goals_canceling) == 1
    outcomes.append(outcome("hold D left"))
    stages["E left"] = []
    future = ground.send_goal_async(Ground.Goal(text="E left", track=Ground.Goal.TRACK_OFF),
                                    feedback_callback=lambda fb: stages["E left"].append(fb.feedback.stage))
    handles["E left"] = client.result_of(future, "acceptance of 'E left'")
    outcomes.append(outcome("E left", last_stage="sam2_stage1"))  # the fake's last stage
    return outcomes


def run_lifecycle(client: Client) -> list[dict[str, Any]]:
    change = client.node.create_client(ChangeState, f"{client.prefix}/change_state")
    get = client.node.create_client(GetState, f"{client.prefix}/get_state")
    diagnostics: list[DiagnosticArray] = []
    client.node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, RELIABLE)
    status: list[Status] = []
    client.node.create_subscription(Status, f"{client.prefix}/status", status.append, LATCHED)
    for service in (change, get):
        if not service.wait_for_service(timeout_sec=TIMEOUT_S):
            raise SystemExit(f"no {service.srv_name}")
    name = f"decaf_ros: {client.prefix}"

    def models_loaded_in(state: str, since: int) -> str:
        """models_loaded of the first /diagnostics entry for our node in ``state`` received from index
        ``since`` on: that entry was published after the transition completed, whatever the order in
        which the diagnostics and the service responses arrived."""
        def fresh() -> str | None:
            for array in diagnostics[since:]:
                for entry in array.status:
                    values = {kv.key: kv.value for kv in entry.values}
                    if entry.name == name and values["lifecycle_state"] == state:
                        return values["models_loaded"]
            return None
        return client.until(fresh, f"diagnostics in {state}")

    steps = []
    for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE,
                       Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_CLEANUP,
                       Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE,
                       Transition.TRANSITION_ACTIVE_SHUTDOWN):
        # Each state recurs in the sequence: only messages received from this transition on count.
        diagnostics_since, status_since = len(diagnostics), len(status)
        response = client.result_of(change.call_async(ChangeState.Request(transition=Transition(id=transition))),
                                    f"transition {transition}")
        state = client.result_of(get.call_async(GetState.Request()), "get_state").current_state.label
        step = {"transition": transition, "success": response.success, "state": state}
        if state in ("inactive", "active"):
            step["models_loaded"] = models_loaded_in(state, diagnostics_since)
        step["status_lifecycle"] = client.until(
            lambda s=state: next((m.lifecycle_state for m in status[status_since:] if m.lifecycle_state == s), None),
            f"status in {state}")
        steps.append(step)
    return steps


def main(argv: list[str]) -> int:
    mode, namespace = argv
    rclpy.init()
    client = Client(namespace)
    try:
        report = run_actions(client) if mode == "actions" else run_lifecycle(client)
    finally:
        client.executor.shutdown()
        client.node.destroy_node()
        rclpy.try_shutdown()
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
