"""How an attempt ended, as its job hears it: the finish reason and the message.

Pure functions of the driver's :class:`~titus_flow.runtime.base.Exit` (and why
supervise stopped the container, if it did).
"""

from __future__ import annotations

from titus_flow.contracts import SuperviseInput
from titus_flow.lifecycle import FinishReason, reason_for_exit
from titus_flow.runtime.base import Exit


def finish_reason(exit_: Exit | None) -> FinishReason:
    """The finish reason of an attempt whose container ended on its own (or vanished)."""
    if exit_ is None:
        return reason_for_exit(137, False)
    if exit_.lost_by_engine:
        return FinishReason.SYSTEM_ERROR
    return reason_for_exit(exit_.exit_code, exit_.oom_killed)


def exit_message(reason: FinishReason | None, exit_: Exit | None, request: SuperviseInput) -> str:
    """What the attempt's message says about how it ended ("" for a clean exit)."""
    if reason is FinishReason.RUNTIME_LIMIT_EXCEEDED:
        return f"ran longer than its runtime limit of {request.runtime_limit_seconds:g}s"
    if exit_ is None:
        return "container did not report an exit"
    if exit_.lost_by_engine:
        return (
            "the container engine restarted as the container ended and kept no exit code"
            f" ({exit_.exit_code} is its placeholder): relaunched, not charged to retries"
        )
    if exit_.oom_killed and exit_.exit_code == 0:
        # The engine only says a process of the container hit the limit; the
        # main one exited 0, so it was a child of it (e.g. a command of a shell).
        return (
            "a child process (not the main one, which exited 0) was killed for exceeding"
            " the memory limit: its work may be incomplete"
        )
    if exit_.oom_killed:
        return (
            f"killed for exceeding its memory limit (the main process exited with code"
            f" {exit_.exit_code})"
        )
    return "" if exit_.exit_code == 0 else f"exited with code {exit_.exit_code}"
