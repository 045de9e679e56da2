"""`titus-flow replay`: replay a recorded workflow history against changed code."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import click
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent, WorkflowExecutionStartedEventAttributes
from temporalio.client import WorkflowHistory
from temporalio.runtime import Runtime, TelemetryConfig
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from titus_flow.cli.app import EXIT_FAILED, EXIT_OK, Context, cli, pass_context, run_async
from titus_flow.codec import ENCODING, KEY_ID_METADATA, CodecError, EncryptionCodec, codec_for
from titus_flow.converter import worker_data_converter
from titus_flow.errors import UserError
from titus_flow.userflows import find_workflow, workflow_name

# The workflow id a replay runs under when the history does not record one and
# nothing in it depends on the id (no child workflows).
_ANY_WORKFLOW_ID = "replay"


@cli.command()
@click.argument("history_file", metavar="HISTORY.json", type=click.Path(path_type=Path))
@click.argument("target", metavar="PATH:WORKFLOW")
@click.option(
    "--workflow-id",
    metavar="ID",
    help="Id of the recorded run, for a history whose first event does not hold it"
    " (older servers); job ids derive from it. [default: read from the history]",
)
@pass_context
def replay(ctx: Context, history_file: Path, target: str, workflow_id: str | None) -> None:
    """Replay a recorded workflow history against your (changed) workflow code.

    The workflow runs under the recorded run's workflow id, so job ids that
    `run_job` and friends derive from it match the history. Exit 0 when the code
    reproduces the history, 1 when it is non-deterministic (the message names
    the event), 2 for bad input. Record a history with
    `temporal workflow show -w ID -o json > HISTORY.json`. A history of encrypted
    payloads needs the key ring that wrote it (TITUS_FLOW_CODEC_KEY_FILE or
    TITUS_FLOW_CODEC_KEYS), as the control worker does.

    Example: titus-flow replay pipeline-history.json examples/pipeline.py:Pipeline
    """
    from titus_flow.worker import SANDBOX

    cls = find_workflow(target)
    name = workflow_name(cls)
    history = _read_history(history_file, workflow_id)
    recorded = _started(history).workflow_type.name
    if recorded != name:
        raise UserError(
            f"{history_file}: the history is of workflow {recorded!r}, not {name!r} ({target})"
        )
    codec = codec_for(ctx.settings)
    _check_decryptable(history_file, history, codec)

    async def go() -> int:
        replayer = Replayer(
            workflows=[cls],
            data_converter=worker_data_converter(codec),  # the control worker's, codec included
            workflow_runner=SANDBOX,
            runtime=_quiet_runtime(),
        )
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        failure = result.replay_failure
        if failure is None:
            click.echo(f"ok: {target} replays {history_file} deterministically")
            return EXIT_OK
        kind = "non-determinism" if isinstance(failure, NondeterminismError) else "replay failure"
        click.echo(f"{kind}: {_replay_message(str(failure), history)}", err=True)
        return EXIT_FAILED

    raise click.exceptions.Exit(run_async(go()))


def _quiet_runtime() -> Runtime:
    """A Temporal runtime whose core logs nothing.

    The default runtime prints the core's own warnings (ANSI-coloured Rust log
    lines) on stderr; for a replay they repeat the failure that ``replay``
    prints itself, in one readable line.
    """
    return Runtime(telemetry=TelemetryConfig(logging=None), worker_heartbeat_interval=None)


# How the event that recorded a child workflow or activity start carries its id.
_RECORDED_ID: dict[str, Callable[[HistoryEvent], str]] = {
    "Child workflow id": lambda e: (
        e.start_child_workflow_execution_initiated_event_attributes.workflow_id
    ),
    "Activity id": lambda e: e.activity_task_scheduled_event_attributes.activity_id,
}


def _replay_message(text: str, history: WorkflowHistory) -> str:
    """The core's message without its Rust debug wrapping, led by the event it names.

    The core names an event by number (``HistoryEvent(id: 10, ...)``), or, when a
    child workflow or activity differs from the recorded one, by the id the
    recorded event carries (``Child workflow id of scheduled event
    'pipeline-1-split-1' does not match ...``): that event is found in the history.
    """
    inner = re.search(r'message: "(.*?)", source', text)
    message = inner.group(1) if inner else text
    event = re.search(r"HistoryEvent\(id: (\d+), (\w+)", message)
    if event:
        return f"at event {event.group(1)} ({event.group(2)}): {message}"
    recorded = re.search(r"(Child workflow id|Activity id) of scheduled event '([^']+)'", message)
    if recorded:
        kind, command_id = recorded.groups()
        for found in history.events:
            if _RECORDED_ID[kind](found) == command_id:
                return f"at event {found.event_id} ({_event_type_name(found)}): {message}"
    return message


def _event_type_name(event: HistoryEvent) -> str:
    """``StartChildWorkflowExecutionInitiated``, as the core spells event types."""
    words = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_").split("_")
    return "".join(word.capitalize() for word in words)


def _read_history(path: Path, workflow_id: str | None) -> WorkflowHistory:
    """The history in ``path``, to replay under its recorded run's workflow id.

    The id comes from the WorkflowExecutionStarted event (recent servers record
    it), else from ``workflow_id`` (``--workflow-id``). A history without either
    may still replay if it starts no child workflows (their ids derive from it).
    """
    try:
        data = json.loads(path.read_text())
    except OSError as err:
        raise UserError(f"{path}: cannot read: {err.strerror or err}") from err
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not JSON: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("events"), list) or not data["events"]:
        raise UserError(f"{path}: not a workflow history (expected {{'events': [...]}})")
    try:
        history = WorkflowHistory.from_json(workflow_id or _ANY_WORKFLOW_ID, data)
    except Exception as err:  # protobuf's parse errors have several types
        raise UserError(f"{path}: not a workflow history: {err}") from err
    recorded = _started(history).workflow_id
    if recorded and workflow_id and recorded != workflow_id:
        raise UserError(
            f"{path}: the history is of workflow id {recorded!r}, not --workflow-id"
            f" {workflow_id!r}; leave --workflow-id out to use the recorded one"
        )
    if recorded:
        return WorkflowHistory(recorded, history.events)
    if workflow_id is None and _starts_children(history):
        raise UserError(
            f"{path}: the history does not record its workflow id (an older server wrote it)"
            " and it starts child workflows, whose ids derive from it: pass --workflow-id ID,"
            " the id of the recorded run"
        )
    return history


def _check_decryptable(path: Path, history: WorkflowHistory, codec: EncryptionCodec | None) -> None:
    """Raise :class:`UserError` unless ``codec`` decrypts every encrypted payload of ``history``.

    Without this, a payload the replay cannot decode fails its workflow task and
    reads as a replay failure (exit 1) behind a traceback, not as the missing or
    wrong key it is.
    """
    encrypted = [p for p in _payloads(history.events) if p.metadata.get("encoding") == ENCODING]
    if not encrypted:
        return
    if codec is None:
        ids = sorted(
            {p.metadata.get(KEY_ID_METADATA, b"").decode(errors="replace") for p in encrypted}
        )
        raise UserError(
            f"{path}: the history's payloads are encrypted with key{'s' * (len(ids) > 1)}"
            f" {', '.join(map(repr, ids))}:"
            " set the key ring that wrote it (TITUS_FLOW_CODEC_KEY_FILE or TITUS_FLOW_CODEC_KEYS)"
        )
    try:
        codec.decrypt(encrypted)
    except CodecError as err:
        raise UserError(f"{path}: {err}") from err


def _payloads(messages: Sequence[Message]) -> Iterator[Payload]:
    """Every :class:`Payload` inside ``messages``, at any depth (maps and lists included)."""
    for message in messages:
        if isinstance(message, Payload):
            yield message
            continue
        for field, value in message.ListFields():
            kind = field.message_type
            if field.type != FieldDescriptor.TYPE_MESSAGE or kind is None:
                continue
            if kind.GetOptions().map_entry:
                if kind.fields_by_name["value"].type == FieldDescriptor.TYPE_MESSAGE:
                    yield from _payloads(list(value.values()))
            elif field.is_repeated:
                yield from _payloads(value)
            else:
                yield from _payloads([value])


def _started(history: WorkflowHistory) -> WorkflowExecutionStartedEventAttributes:
    first = history.events[0]
    if not first.HasField("workflow_execution_started_event_attributes"):
        raise UserError("the history does not start with WorkflowExecutionStarted")
    return first.workflow_execution_started_event_attributes


def _starts_children(history: WorkflowHistory) -> bool:
    return any(
        event.HasField("start_child_workflow_execution_initiated_event_attributes")
        for event in history.events
    )
