"""Structured logs: one JSON object per line, with the job, task and Temporal context.

Every titus-flow process logs through :func:`configure_logging`: each line is
``{"time", "level", "logger", "message", ...}`` plus whichever of these are
known where the line was logged:

* ``job_id``, ``task_id``, ``attempt``: from ``extra=`` of the call, else from
  :func:`log_context` (the agent's activities set it from their input through
  :class:`TaskContextInterceptor`, so the driver's lines carry it too);
* ``workflow_id``, ``run_id``, ``workflow_type``, ``activity_id``,
  ``activity_type``, ``activity_attempt``: from temporalio's workflow and
  activity loggers (their ``temporal_workflow`` / ``temporal_activity`` extra),
  or from the running activity.

Only these keys are ever written: other ``extra`` values (a request, a key)
never reach the log. Lines go to stderr; ``titus-flow up`` sends each
process's stderr to its file under ``<home>/logs`` (``titus-flow status``
lists them).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from temporalio import activity, workflow
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from titus_flow.errors import UserError
from titus_flow.ids import split_task_id

TASK_KEYS = ("job_id", "task_id", "attempt")
"""Context keys of titus-flow's own (from ``extra=`` or :func:`log_context`)."""
_TEMPORAL_KEYS = {
    # (extra dict, its key) -> our key
    ("temporal_workflow", "workflow_id"): "workflow_id",
    ("temporal_workflow", "run_id"): "run_id",
    ("temporal_workflow", "workflow_type"): "workflow_type",
    ("temporal_activity", "workflow_id"): "workflow_id",
    ("temporal_activity", "workflow_run_id"): "run_id",
    ("temporal_activity", "workflow_type"): "workflow_type",
    ("temporal_activity", "activity_id"): "activity_id",
    ("temporal_activity", "activity_type"): "activity_type",
    ("temporal_activity", "attempt"): "activity_attempt",
}
JOB_WORKFLOW_TYPES = frozenset({"BatchJob", "ServiceJob"})
"""Workflow types whose workflow id is the job id (but for a large job's partitions)."""
_PARTITION_ID = re.compile(r".+-p[0-9]+")
"""A partition of a large batch job runs as ``<job id>-p<n>``: its lines keep only that
``workflow_id`` (a job id of that shape is possible too, so none is guessed)."""

_context: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "titus_flow_log_context", default=None
)


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` (``job_id``, ``task_id``, ``attempt``) to every line logged in the block.

    Context variables follow asyncio tasks, so concurrent activities keep theirs apart.
    """
    token = _context.set(
        {**(_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}}
    )
    try:
        yield
    finally:
        _context.reset(token)


def _activity_context() -> dict[str, Any]:
    """The running activity's ids, for lines logged by plain loggers inside it."""
    if not activity.in_activity():
        return {}
    info = activity.info()
    return {
        "workflow_id": info.workflow_id,
        "run_id": info.workflow_run_id,
        "workflow_type": info.workflow_type,
        "activity_id": info.activity_id,
        "activity_type": info.activity_type,
        "activity_attempt": info.attempt,
    }


def _is_job_id(found: Mapping[str, Any]) -> bool:
    """Whether the job workflow's id in ``found`` is a job id (not a partition's)."""
    workflow_id = found.get("workflow_id")
    return workflow_id is not None and not _PARTITION_ID.fullmatch(str(workflow_id))


def record_context(record: logging.LogRecord) -> dict[str, Any]:
    """The context keys of ``record``: extra first, then the block's and activity's."""
    found: dict[str, Any] = {**_activity_context(), **(_context.get() or {})}
    for (source, key), ours in _TEMPORAL_KEYS.items():
        details = getattr(record, source, None)
        if isinstance(details, Mapping) and details.get(key) is not None:
            found[ours] = details[key]
    for key in TASK_KEYS:
        value = getattr(record, key, None)
        if value is not None:
            found[key] = value
    if "job_id" not in found:
        if "task_id" in found:
            with contextlib.suppress(UserError):
                found["job_id"] = split_task_id(str(found["task_id"]))[0]
        elif found.get("workflow_type") in JOB_WORKFLOW_TYPES and _is_job_id(found):
            found["job_id"] = found["workflow_id"]
    return found


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object (see the module doc for its keys)."""

    def format(self, record: logging.LogRecord) -> str:
        """One line of JSON: time, level, logger, message, context, exception."""
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **record_context(record),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class _JsonHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`configure_logging` installs (found again by its class).

    Without a stream of its own it writes to whatever ``sys.stderr`` is at each
    line, so a command run in-process (tests) never leaves it a closed stream.
    """

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__(stream or sys.stderr)
        self._own_stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        """Write ``record`` to the stream, or to the current stderr."""
        self.stream = self._own_stream or sys.stderr
        super().emit(record)


def configure_logging(level: str, stream: TextIO | None = None) -> None:
    """Log JSON lines at ``level`` and above to ``stream`` (stderr), replacing earlier setups.

    Also stops temporalio's loggers from appending their context to the message:
    it is in its own keys here.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _JsonHandler)]:
        root.removeHandler(handler)
    handler = _JsonHandler(stream)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    try:
        root.setLevel(level.upper())
    except ValueError as err:
        raise UserError(
            f"log level {level!r}: use DEBUG, INFO, WARNING, ERROR or CRITICAL"
        ) from err
    activity.logger.activity_info_on_message = False
    workflow.logger.workflow_info_on_message = False


class TaskContextInterceptor(Interceptor):
    """Runs each activity inside :func:`log_context` of its input's job, task and attempt."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        """Wrap ``next`` so the activity's lines carry its task."""
        return _TaskContextInbound(next)


class _TaskContextInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        request = input.args[0] if input.args else None
        fields = {key: getattr(request, key, None) for key in TASK_KEYS}
        with log_context(**fields):
            return await super().execute_activity(input)
