"""How an attempt's end is told to its job: finish reason and message (activities/agent_outcome)."""

from __future__ import annotations

from datetime import UTC, datetime

from titus_flow.activities.agent_outcome import exit_message, finish_reason
from titus_flow.contracts import SuperviseInput
from titus_flow.lifecycle import FinishReason
from titus_flow.runtime.base import Exit

REQUEST = SuperviseInput(
    task_id="t-0", attempt=1, started_at=datetime.now(UTC), runtime_limit_seconds=2.5
)


def test_finish_reason_of_an_exit() -> None:
    assert finish_reason(Exit(exit_code=0)) is FinishReason.NORMAL
    assert finish_reason(Exit(exit_code=3)) is FinishReason.FAILED
    assert finish_reason(Exit(exit_code=137, oom_killed=True)) is FinishReason.OOM_KILLED
    # The engine's placeholder exit is the platform's fault, whatever its code.
    assert finish_reason(Exit(exit_code=255, lost_by_engine=True)) is FinishReason.SYSTEM_ERROR
    assert finish_reason(None) is FinishReason.FAILED  # vanished: as if SIGKILLed


def test_exit_message() -> None:
    limit = exit_message(FinishReason.RUNTIME_LIMIT_EXCEEDED, Exit(exit_code=137), REQUEST)
    assert limit == "ran longer than its runtime limit of 2.5s"
    assert exit_message(None, None, REQUEST) == "container did not report an exit"
    lost = exit_message(None, Exit(exit_code=255, lost_by_engine=True), REQUEST)
    assert "relaunched, not charged to retries" in lost
    assert exit_message(None, Exit(exit_code=0), REQUEST) == ""
    assert exit_message(None, Exit(exit_code=2), REQUEST) == "exited with code 2"
