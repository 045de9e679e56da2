"""How big workflow histories and their payloads grow: the numbers Temporal warns at.

Temporal warns past 10,240 events in one run's history and past 512 KiB in one
payload (and fails at 50 K events and 2 MB). :func:`history_stats` reads the
histories of a set of workflows (by id, following continue-as-new back through
earlier runs, or by a visibility query) and returns the largest history, the
largest single payload, with where it was, and the longest workflow task.

Cheap by construction: histories are paged, an event's size comes from its
encoded protobuf, and only events bigger than the largest payload found so far
are searched for payloads (a payload is never bigger than its event).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from google.protobuf.message import Message
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

HISTORY_EVENTS_WARN = 10_240
"""Temporal's warning for the events of one run's history."""
PAYLOAD_BYTES_WARN = 512 * 1024
"""Temporal's warning for one payload (a workflow input, a signal's, a result...)."""

_WORKFLOW_TASK_ENDS = frozenset(
    {
        EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
        EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
        EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
    }
)
_PAYLOAD_TYPES = frozenset({"temporal.api.common.v1.Payloads", "temporal.api.common.v1.Payload"})


@dataclass(frozen=True)
class RunRef:
    """One run of one workflow."""

    workflow_id: str
    run_id: str


@dataclass(frozen=True)
class PayloadSize:
    """One payload: its encoded size and where it was found."""

    bytes: int
    run: RunRef
    event_id: int
    event_type: str  # e.g. "WorkflowExecutionContinuedAsNew"
    field: str  # e.g. "workflow_execution_continued_as_new_event_attributes.input"

    def __str__(self) -> str:
        return f"{self.bytes} B in {self.run.workflow_id} event {self.event_id} ({self.event_type})"


@dataclass(frozen=True)
class HistorySize:
    """One run's history: its events and their encoded bytes."""

    run: RunRef
    events: int
    bytes: int
    longest_task: float = 0.0
    """Seconds of its longest workflow task (started to completed, failed or timed out)."""


@dataclass
class HistoryStats:
    """The largest history and payload over the runs read."""

    runs: int = 0
    events: int = 0  # over all runs
    largest_history: HistorySize | None = None  # by events
    largest_payload: PayloadSize | None = None
    histories: list[HistorySize] = field(default_factory=list)

    @property
    def max_events(self) -> int:
        """Events of the longest history (0 if none was read)."""
        return self.largest_history.events if self.largest_history else 0

    @property
    def slowest(self) -> HistorySize | None:
        """The run with the longest workflow task (None if none was read)."""
        return max(self.histories, key=lambda h: h.longest_task, default=None)

    @property
    def longest_workflow_task(self) -> float:
        """Seconds of the longest workflow task of any run read."""
        return self.slowest.longest_task if self.slowest else 0.0

    @property
    def max_payload_bytes(self) -> int:
        """Bytes of the largest payload (0 if none was found)."""
        return self.largest_payload.bytes if self.largest_payload else 0

    def problems(
        self, max_events: int = HISTORY_EVENTS_WARN, max_payload: int = PAYLOAD_BYTES_WARN
    ) -> list[str]:
        """What passes the bounds, one line each (empty when all is within)."""
        found = [
            f"{h.run.workflow_id} run {h.run.run_id}: {h.events} events (> {max_events})"
            for h in self.histories
            if h.events > max_events
        ]
        if self.largest_payload and self.largest_payload.bytes > max_payload:
            found.append(f"payload of {self.largest_payload} (> {max_payload} B)")
        return found


async def history_stats(
    client: Client,
    workflow_ids: Iterable[str] = (),
    *,
    query: str | None = None,
    all_runs: bool = True,
    concurrency: int = 8,
) -> HistoryStats:
    """Read the histories of ``workflow_ids`` and of the workflows ``query`` lists.

    ``all_runs``: for a workflow given by id, also read the runs it continued
    from (a query lists every run itself). ``concurrency``: histories read at once.
    """
    stats = HistoryStats()
    seen: set[RunRef] = set()
    gate = asyncio.Semaphore(concurrency)

    async def read(run: RunRef, follow: bool) -> None:
        if run in seen:
            return
        seen.add(run)
        async with gate:
            size, previous = await _read_run(client, run, stats)
        stats.runs += 1
        stats.events += size.events
        stats.histories.append(size)
        if stats.largest_history is None or size.events > stats.largest_history.events:
            stats.largest_history = size
        if follow and previous:
            await read(RunRef(run.workflow_id, previous), follow)

    reads = [read(RunRef(workflow_id, ""), all_runs) for workflow_id in workflow_ids]
    if query is not None:
        async for execution in client.list_workflows(query):
            reads.append(read(RunRef(execution.id, execution.run_id), False))
    await asyncio.gather(*reads)
    return stats


async def _read_run(client: Client, run: RunRef, stats: HistoryStats) -> tuple[HistorySize, str]:
    """Page through one run; return its size and the run it continued from ("" if none).

    Updates ``stats.largest_payload`` as it goes.
    """
    handle = client.get_workflow_handle(run.workflow_id, run_id=run.run_id or None)
    events = size = 0
    previous = ""
    run_id = run.run_id
    task_started = longest = 0.0  # workflow tasks of one run never overlap
    async for event in handle.fetch_history_events():
        events += 1
        event_bytes = event.ByteSize()
        size += event_bytes
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            started = event.workflow_execution_started_event_attributes
            previous = started.continued_execution_run_id
            run_id = run_id or started.original_execution_run_id
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            task_started = event.event_time.ToMicroseconds() / 1e6
        elif kind in _WORKFLOW_TASK_ENDS and task_started:
            longest = max(longest, event.event_time.ToMicroseconds() / 1e6 - task_started)
            task_started = 0.0
        if event_bytes > stats.max_payload_bytes:
            _largest_payload_of(event, RunRef(run.workflow_id, run_id), stats)
    return HistorySize(RunRef(run.workflow_id, run_id), events, size, longest), previous


def _largest_payload_of(event: HistoryEvent, run: RunRef, stats: HistoryStats) -> None:
    for path, nbytes in _payload_sizes(event, ""):
        if nbytes > stats.max_payload_bytes:
            stats.largest_payload = PayloadSize(
                bytes=nbytes,
                run=run,
                event_id=event.event_id,
                event_type=_camel(EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")),
                field=path,
            )


def _camel(name: str) -> str:
    """WORKFLOW_EXECUTION_STARTED -> WorkflowExecutionStarted (as the Web UI names events)."""
    return "".join(word.title() for word in name.split("_"))


def _payload_sizes(message: Message, path: str) -> Iterator[tuple[str, int]]:
    """(field path, encoded bytes) of every Payloads or Payload inside ``message``.

    A Payloads (all arguments of one call) counts as one: Temporal bounds it whole.
    """
    for descriptor, value in message.ListFields():
        kind = descriptor.message_type
        if kind is None:  # a scalar field
            continue
        name = f"{path}.{descriptor.name}" if path else descriptor.name
        children: Iterable[Message]
        if kind.GetOptions().map_entry:
            if kind.fields_by_name["value"].message_type is None:
                continue  # a map of scalars
            children = value.values()
        elif descriptor.is_repeated:
            children = value
        else:
            children = [value]
        for child in children:
            if child.DESCRIPTOR.full_name in _PAYLOAD_TYPES:
                yield name, child.ByteSize()
            else:
                yield from _payload_sizes(child, name)
