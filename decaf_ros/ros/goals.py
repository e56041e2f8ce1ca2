"""One goal path for the goal topic and the Ground action: goal records, text checks, action outcomes.

A goal from either source becomes a ``Goal``; an action goal also carries an ``ActionGoal`` that
ends the ROS action exactly once (succeeded, aborted or canceled, with a reason) from whichever
thread decides it: the worker (result, error, cancelled grounding) or an executor callback (a newer
goal, a cancel request, deactivation).

Why the action's execute callback runs only at the end: an rclpy execute callback must return the
result, so waiting for the grounding inside it would either block an executor thread for the whole
grounding or busy-poll a coroutine (rclpy re-runs pending coroutines on every executor turn). The
node instead keeps the accepted goal handle, publishes feedback from the worker, and calls
``execute`` once the outcome is known; the callback then only sets the terminal state.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from decaf_ros.action import Ground
from decaf_ros.msg import TargetArray

STOP_WORDS = ("stop",)
SOURCE_TOPIC = "goal topic"
SOURCE_ACTION = "Ground action"
SUCCEEDED, ABORTED, CANCELED = "succeeded", "aborted", "canceled"
# How long the terminal step waits for rclpy to record a cancel request our callback has accepted.
# rclpy does it right after the callback returns, so this only bounds a failure: it must outlast a
# busy machine's scheduling delays, or a cancelled goal would be reported as aborted.
CANCEL_SETTLE_S = 30.0


def clean_goal_text(raw: str) -> str:
    """Drop control / non-printable characters and collapse whitespace."""
    printable = "".join(ch if ch.isprintable() else " " for ch in raw)
    return " ".join(printable.split())


def is_clear_request(raw: str) -> bool:
    """``""`` (or whitespace) and "stop" clear the current goal on the goal topic."""
    return not raw.strip() or clean_goal_text(raw).lower() in STOP_WORDS


def goal_text_problem(raw: str, max_length: int) -> str:
    """Why ``raw`` cannot be a goal ("" when it can); the same rules for the topic and the action."""
    text = clean_goal_text(raw)
    if not text:
        return f"goal rejected: no letters or digits in {raw[:40]!r}"
    if len(text) > max_length:
        return f"goal rejected: {len(text)} characters, max_goal_length is {max_length}"
    if not any(ch.isalnum() for ch in text):
        return f"goal rejected: no letters or digits in {raw[:40]!r}"
    return ""


@dataclass(frozen=True)
class Outcome:
    status: str  # SUCCEEDED | ABORTED | CANCELED
    targets: TargetArray
    error: str


class _OneExecutorTurn:
    """Awaitable that gives the executor back for one turn (rclpy resumes the task on the next)."""

    def __await__(self):  # type: ignore[no-untyped-def]
        yield


class ActionGoal:
    """An accepted Ground goal handle; feedback while it runs, one terminal outcome."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self._lock = threading.Lock()
        self._outcome: Outcome | None = None
        self._coarse = TargetArray()

    @property
    def request(self) -> Any:
        return self.handle.request

    @property
    def done(self) -> bool:
        with self._lock:
            return self._outcome is not None

    @property
    def outcome(self) -> Outcome | None:
        with self._lock:
            return self._outcome

    def feedback(self, stage: str, coarse: TargetArray | None = None) -> None:
        """Publish the stage (and, from the coarse result on, the coarse targets)."""
        with self._lock:
            if self._outcome is not None:
                return
            if coarse is not None:
                self._coarse = coarse
            msg = Ground.Feedback(stage=stage, targets=self._coarse)
        try:
            self.handle.publish_feedback(msg)
        except Exception:  # noqa: BLE001 - the client or the context may be gone; feedback is best effort
            pass

    def finish(self, status: str, targets: TargetArray | None = None, error: str = "") -> bool:
        """Decide the outcome (first call wins) and let the action server report it."""
        with self._lock:
            if self._outcome is not None:
                return False
            self._outcome = Outcome(status, targets if targets is not None else TargetArray(), error)
        try:
            self.handle.execute(self._report)
        except Exception:  # noqa: BLE001 - the server is being destroyed; nobody is left to tell
            return False
        return True

    async def _report(self, handle: Any) -> Any:
        """Execute callback (executor thread): set the terminal state and return the result."""
        outcome = self._outcome
        assert outcome is not None
        if outcome.status == CANCELED:
            # A cancel accepted by our cancel callback is recorded by rclpy right after it returns,
            # possibly on another executor thread: give it those few turns.
            deadline = time.monotonic() + CANCEL_SETTLE_S
            while not handle.is_cancel_requested and time.monotonic() < deadline:
                await _OneExecutorTurn()
        if outcome.status == SUCCEEDED:
            handle.succeed()
        elif outcome.status == CANCELED and handle.is_cancel_requested:
            handle.canceled()
        else:
            handle.abort()
        return Ground.Result(targets=outcome.targets, success=outcome.status == SUCCEEDED, error=outcome.error)


@dataclass
class Goal:
    """One goal, from the topic or the action, with its per-request options."""

    goal_id: int
    text: str
    received: float  # time.monotonic()
    track: bool
    coarse_only: bool = False
    source: str = SOURCE_TOPIC
    action: ActionGoal | None = field(default=None, repr=False)
    cancelled: bool = False  # the action client asked to cancel it

    def describe(self) -> str:
        return f"goal {self.goal_id} ({self.source}): {self.text!r}"

    def feedback(self, stage: str, coarse: TargetArray | None = None) -> None:
        if self.action is not None:
            self.action.feedback(stage, coarse)

    def finish(self, status: str, targets: TargetArray | None = None, error: str = "") -> None:
        if self.action is not None:
            self.action.finish(status, targets, error)


def track_option(request: Any, default: bool) -> bool:
    """The action goal's ``track`` field against the node's ``track`` parameter."""
    if request.track == Ground.Goal.TRACK_ON:
        return True
    if request.track == Ground.Goal.TRACK_OFF:
        return False
    return default
