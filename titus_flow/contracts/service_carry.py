"""A service job's live tasks as carried across continue-as-new."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import Field, JsonValue

from titus_flow.cluster import agent_task_queue
from titus_flow.contracts.base import Message
from titus_flow.lifecycle import TaskState
from titus_flow.views import AttemptView, Row, TaskView
from titus_flow.views.carried import as_int, as_list


class ServiceTaskRecord(Message):
    """A live service task, as carried across continue-as-new."""

    view: TaskView
    task_queue: str | None = None
    ports: dict[str, int] = Field(default_factory=dict)
    started_at: datetime | None = None
    was_healthy: bool = False  # passed its health check at least once
    moving: bool = False  # its agent is draining: replace it, then stop it
    kill_held: bool = False  # a kill request waits for the disruption budget


SERVICE_ROW_FLAGS = ("was_healthy", "moving", "kill_held")
"""The boolean fields of a :class:`ServiceTaskRecord`, in the order of a carried shape's flags."""


class CarriedService(Message):
    """A service run's live tasks in compact form, carried across continue-as-new.

    About 30 bytes a task instead of ~620 for a :class:`ServiceTaskRecord`, so
    a service of 10,000 live tasks stays below Temporal's 512 KiB payload
    warning. What tasks share is written once: strings in ``texts``, and in
    ``shapes`` what a task is besides its index, agent, times and port numbers:
    ``[revision, state, healthy, message, task queue, attempt, attempt state,
    port names, flags]`` (strings as indexes into ``texts``; the task queue -2
    when it is the agent's own, :func:`agent_task_queue`; flags the bits of
    :data:`SERVICE_ROW_FLAGS`). A task is ``[shape, index, agent, launched,
    started, *ports]``: launched in milliseconds after the previous row's
    launch (the first: after ``base``), started after its launch (after
    ``base`` without one). A live service task has its one attempt at most,
    and no reason, output or log tail yet: the row holds all it has.
    """

    format: Literal["service-1"] = "service-1"
    base: datetime
    texts: list[str] = Field(default_factory=list)
    shapes: list[Row] = Field(default_factory=list)
    rows: list[Row] = Field(default_factory=list)

    @classmethod
    def of(cls, records: list[ServiceTaskRecord], base: datetime) -> CarriedService:
        """``records`` in compact form. Deterministic: workflows call it."""
        texts: dict[str, int] = {}
        shapes: dict[str, int] = {}
        shape_rows: list[Row] = []

        def text(value: str | None) -> int:
            return -1 if value is None else texts.setdefault(value, len(texts))

        def ms(when: datetime, since: datetime) -> int:
            return round((when - since).total_seconds() * 1000)

        # Times are whole milliseconds from a whole-millisecond base, and each delta is
        # taken from the time records() will rebuild, not the exact one: rounding
        # happens once per time, never adds up along the rows or across runs.
        base -= timedelta(microseconds=base.microsecond % 1000)
        rows: list[Row] = []
        previous = base
        for record in records:
            view = record.view
            attempt = view.attempts[-1] if view.attempts else None
            own = view.agent is not None and record.task_queue == agent_task_queue(view.agent)
            shape: Row = [
                view.revision,
                text(view.state.value),
                None if view.healthy is None else int(view.healthy),
                text(view.message),
                -2 if own else text(record.task_queue),
                view.attempt,
                None if attempt is None else text(attempt.state.value),
                [text(name) for name in record.ports],
                sum(1 << n for n, f in enumerate(SERVICE_ROW_FLAGS) if getattr(record, f)),
            ]
            key = repr(shape)
            if key not in shapes:
                shapes[key] = len(shape_rows)
                shape_rows.append(shape)
            launched: int | None = None
            if attempt is not None and attempt.launched_at is not None:
                launched = ms(attempt.launched_at, previous)
                previous += timedelta(milliseconds=launched)
            started = None
            if record.started_at is not None:
                since = base if launched is None else previous
                started = ms(record.started_at, since)
            rows.append(
                [
                    shapes[key],
                    view.index,
                    text(view.agent),
                    launched,
                    started,
                    *record.ports.values(),
                ]
            )
        return cls(base=base, texts=list(texts), shapes=shape_rows, rows=rows)

    def records(self, job_id: str) -> list[ServiceTaskRecord]:
        """The carried tasks as records again (task ids ``<job_id>-<index>``)."""
        texts = self.texts

        def text(n: JsonValue) -> str | None:
            return None if n == -1 else texts[as_int(n)]

        out: list[ServiceTaskRecord] = []
        previous = self.base
        for shape_index, index, agent, launched, started, *port_numbers in self.rows:
            shape = self.shapes[as_int(shape_index)]
            revision, state, healthy, message, queue, attempt, attempt_state, names, flags = shape
            agent_id = text(agent)
            ports = {
                str(text(name)): as_int(port)
                for name, port in zip(as_list(names), port_numbers, strict=True)
            }
            launched_at = None
            if launched is not None:
                launched_at = previous = previous + timedelta(milliseconds=as_int(launched))
            started_at = None
            if started is not None:
                since = self.base if launched_at is None else launched_at
                started_at = since + timedelta(milliseconds=as_int(started))
            attempts = []
            if attempt_state is not None:
                attempts.append(
                    AttemptView(
                        attempt=as_int(attempt),
                        agent=agent_id,
                        state=TaskState(str(text(attempt_state))),
                        launched_at=launched_at,
                        started_at=started_at,
                    )
                )
            view = TaskView(
                id=f"{job_id}-{index}",
                index=as_int(index),
                revision=None if revision is None else as_int(revision),
                state=TaskState(str(text(state))),
                healthy=None if healthy is None else bool(healthy),
                message=text(message) or "",
                agent=agent_id,
                attempt=as_int(attempt),
                attempts=attempts,
                ports=dict(ports),
            )
            bits = as_int(flags)
            out.append(
                ServiceTaskRecord(
                    view=view,
                    task_queue=agent_task_queue(agent_id)
                    if queue == -2 and agent_id is not None
                    else text(queue),
                    ports=ports,
                    started_at=started_at,
                    **{f: bool(bits >> n & 1) for n, f in enumerate(SERVICE_ROW_FLAGS)},
                )
            )
        return out
