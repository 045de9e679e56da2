"""Commands for users' own workflows: start, schedule ..., replay; and job-file DAGs."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from rich.console import Console
from rich.table import Table
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent, WorkflowExecutionStartedEventAttributes
from temporalio.client import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
    WorkflowFailureError,
    WorkflowHistory,
)
from temporalio.exceptions import ApplicationError
from temporalio.runtime import Runtime, TelemetryConfig
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from titus_flow.cli.app import (
    EXIT_FAILED,
    EXIT_OK,
    Context,
    cli,
    echo_json,
    output_option,
    pass_context,
    run_async,
)
from titus_flow.client import TitusClient, new_job_id
from titus_flow.codec import ENCODING, KEY_ID_METADATA, CodecError, EncryptionCodec, codec_for
from titus_flow.config import Settings
from titus_flow.converter import worker_data_converter
from titus_flow.errors import ClusterError, UserError
from titus_flow.lifecycle import JobState
from titus_flow.loader import AnyJob, load_jobs
from titus_flow.spec import BatchJob
from titus_flow.spec.quantities import parse_duration
from titus_flow.userflows import check_workflow_input, find_workflow, workflow_name
from titus_flow.workflows.dag import DAG_WORKFLOW, DagInput, DagResult

_err = Console(stderr=True, soft_wrap=True)  # messages stay whole lines for grep

# Schedules carry this memo key (the control task queue), so `schedule list`
# shows the schedules of this cluster only, even in a shared namespace.
_QUEUE_MEMO = "titus_flow_control_task_queue"

_OVERLAP = {
    "skip": ScheduleOverlapPolicy.SKIP,
    "buffer_one": ScheduleOverlapPolicy.BUFFER_ONE,
    "allow_all": ScheduleOverlapPolicy.ALLOW_ALL,
    "cancel_other": ScheduleOverlapPolicy.CANCEL_OTHER,
}


def _workflow_input(input_json: str | None, input_file: Path | None) -> list[Any]:
    """The workflow's arguments: none, or the one JSON value given."""
    if input_json is not None and input_file is not None:
        raise UserError("give --input or --input-file, not both")
    if input_file is not None:
        try:
            input_json = input_file.read_text()
        except OSError as err:
            raise UserError(f"--input-file {input_file}: {err.strerror or err}") from err
    if input_json is None:
        return []
    try:
        return [json.loads(input_json)]
    except json.JSONDecodeError as err:
        raise UserError(f"--input: not valid JSON: {err}") from err


_INPUT_OPTIONS = [
    click.option("--input", "input_json", metavar="JSON", help="The workflow's argument as JSON."),
    click.option(
        "--input-file",
        type=click.Path(path_type=Path, dir_okay=False),
        help="Read the workflow's argument (JSON) from this file.",
    ),
]


def _with_input_options(f: Any) -> Any:
    for option in reversed(_INPUT_OPTIONS):
        f = option(f)
    return f


# --- start ------------------------------------------------------------------------------


@cli.command()
@click.argument("target", metavar="PATH:WORKFLOW")
@_with_input_options
@click.option("--id", "workflow_id", help="Workflow id [default: <workflow name>-<random>].")
@click.option("--wait", is_flag=True, help="Wait for the result and print it.")
@output_option
@pass_context
def start(
    ctx: Context,
    target: str,
    input_json: str | None,
    input_file: Path | None,
    workflow_id: str | None,
    wait: bool,
    output: str,
) -> None:
    """Start your workflow PATH:WORKFLOW (a .py file or module, and a class) on the cluster.

    The worker must have loaded it (`titus-flow worker --workflows PATH`). The
    input is checked against the workflow's input type first: a bad one exits 2
    naming the field, and nothing is started. With --wait, exit 0 when it
    completed and 1 when it failed.

    Example: titus-flow start examples/pipeline.py:Pipeline --input '{"chunks": 4}' --wait
    """
    cls = find_workflow(target)
    name = workflow_name(cls)
    args = _workflow_input(input_json, input_file)
    check_workflow_input(cls, args)  # bad input exits 2 here: nothing is started
    workflow_id = workflow_id or f"{name.lower()}-{secrets.token_hex(4)}"
    settings = ctx.settings

    async def go() -> int:
        client = await TitusClient.connect(settings)
        handle = await client.temporal.start_workflow(
            name, args=args, id=workflow_id, task_queue=settings.control_task_queue
        )
        info: dict[str, Any] = {"workflow_id": handle.id, "run_id": handle.result_run_id}
        if output == "text":
            _err.print(f"started {name} as {handle.id}" + ("; waiting for it" if wait else ""))
        code = EXIT_OK
        if wait:
            try:
                info["result"] = await handle.result()
            except WorkflowFailureError as err:
                info["error"] = str(err.cause or err)
                code = EXIT_FAILED
        if output == "json":
            echo_json(info)
        elif "error" in info:
            _err.print(f"[red]{handle.id} failed: {info['error']}[/]", highlight=False)
        elif wait:
            click.echo(json.dumps(info["result"], indent=2, default=str))
        else:
            click.echo(handle.id)
        return code

    raise click.exceptions.Exit(run_async(go()))


# --- depends_on DAGs (used by `titus-flow run`) ------------------------------------------


def has_dependencies(jobs: list[AnyJob]) -> bool:
    """Whether any job of a file declares ``depends_on`` (so it runs as a DAG)."""
    return any(isinstance(job, BatchJob) and job.depends_on for job in jobs)


def _dag_input(jobs: list[AnyJob]) -> DagInput:
    batch = [job for job in jobs if isinstance(job, BatchJob)]
    if len(batch) != len(jobs):
        raise UserError("service jobs are not supported yet in files that use depends_on")
    return DagInput(jobs=batch)


async def start_dag(client: TitusClient, jobs: list[AnyJob], dag_id: str | None = None) -> str:
    """Start the jobs of one file as a DAG workflow; return its id."""
    dag_id = dag_id or new_job_id("dag")
    await client.temporal.start_workflow(
        DAG_WORKFLOW,
        _dag_input(jobs),
        id=dag_id,
        task_queue=client.settings.control_task_queue,
        static_summary=f"depends_on DAG of {len(jobs)} job(s)",
    )
    return dag_id


async def wait_dag(client: TitusClient, dag_id: str) -> DagResult:
    """Wait for a DAG workflow; its result, also when it failed."""
    try:
        result: DagResult = await client.temporal.get_workflow_handle(
            dag_id, result_type=DagResult
        ).result()
        return result
    except WorkflowFailureError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.type == "DagFailed" and cause.details:
            return DagResult.model_validate(cause.details[0])
        raise ClusterError(f"DAG {dag_id} failed: {cause or err}") from err


def run_dag(settings: Settings, jobs: list[AnyJob], detach: bool, output: str) -> int:
    """`titus-flow run` for a file whose jobs use depends_on; the exit code."""
    dag_input = _dag_input(jobs)  # bad input exits 2 before anything is sent

    async def go() -> int:
        client = await TitusClient.connect(settings)
        dag_id = await start_dag(client, list(dag_input.jobs))
        if detach:
            if output == "json":
                echo_json({"dag": dag_id})
            else:
                click.echo(dag_id)
            return EXIT_OK
        if output == "text":
            _err.print(f"submitted {dag_id} ({len(dag_input.jobs)} jobs, in depends_on order)")
        result = await wait_dag(client, dag_id)
        if output == "json":
            echo_json({"dag": dag_id, **result.model_dump(mode="json")})
        else:
            for name, view in result.views.items():
                colour = "green" if view.state is JobState.SUCCEEDED else "red"
                _err.print(f"[{colour}]{name} ({view.id}): {view.state.value}[/] {view.message}")
            for name, why in result.skipped.items():
                _err.print(f"[yellow]{name}: skipped - {why}[/]")
            if result.message:
                _err.print(f"[red]{dag_id}: {result.message}[/]")
        return EXIT_OK if result.succeeded else EXIT_FAILED

    return run_async(go())


# --- schedules --------------------------------------------------------------------------


@cli.group()
def schedule() -> None:
    """Run a job file or your workflow on a schedule (Temporal Schedules)."""


def _schedule_action(
    target: str, args: list[Any], settings: Settings, name: str
) -> ScheduleActionStartWorkflow:
    """What each scheduled run starts: the jobs of a file (as a DAG), or a user workflow."""
    run_id = name  # Temporal appends the scheduled time: nightly-2025-01-01T02:00:00Z
    if ":" in target:  # PATH:Workflow; a job file is a plain path
        cls = find_workflow(target)
        check_workflow_input(cls, args)
        workflow = workflow_name(cls)
        return ScheduleActionStartWorkflow(
            workflow, args=args, id=run_id, task_queue=settings.control_task_queue
        )
    if args:
        raise UserError("--input is for workflows (PATH:Workflow), not job files")
    # Every job-file run goes through the DAG workflow, even for one job: a run's
    # workflow id is only known when it fires, so a wrapper gives its job(s) a
    # proper job id, TitusJobId, submission time and container-safe name.
    return ScheduleActionStartWorkflow(
        DAG_WORKFLOW,
        _dag_input(load_jobs(Path(target))),
        id=run_id,
        task_queue=settings.control_task_queue,
        static_summary=f"scheduled run of {target}",
    )


@schedule.command("create")
@click.argument("name")
@click.argument("target", metavar="FILE_OR_WORKFLOW")
@click.option("--cron", help='Cron expression, e.g. "0 2 * * *" (02:00 every day).')
@click.option("--every", help='Interval, e.g. "15m", "1h", "1d".')
@click.option("--timezone", "timezone_name", help="Time zone of --cron, e.g. Europe/Paris.")
@click.option(
    "--overlap",
    type=click.Choice(list(_OVERLAP)),
    default="skip",
    show_default=True,
    help="What to do when a run is due while the previous one still runs.",
)
@_with_input_options
@pass_context
def schedule_create(
    ctx: Context,
    name: str,
    target: str,
    cron: str | None,
    every: str | None,
    timezone_name: str | None,
    overlap: str,
    input_json: str | None,
    input_file: Path | None,
) -> None:
    """Run FILE_OR_WORKFLOW on a schedule NAME: a job file, or PATH:Workflow.

    Example: titus-flow schedule create nightly --cron "0 2 * * *" examples/nightly.py
    """
    if (cron is None) == (every is None):
        raise UserError("give exactly one of --cron EXPR or --every DURATION")
    spec = ScheduleSpec(time_zone_name=timezone_name)
    if cron is not None:
        spec.cron_expressions = [cron]
    else:
        try:
            interval = parse_duration(every)
        except ValueError as err:
            raise UserError(f"--every: {err}") from err
        if interval < timedelta(seconds=1):
            raise UserError("--every: must be at least 1s")
        spec.intervals = [ScheduleIntervalSpec(every=interval)]
    settings = ctx.settings
    action = _schedule_action(target, _workflow_input(input_json, input_file), settings, name)

    async def go() -> None:
        client = await TitusClient.connect(settings)
        try:
            await client.temporal.create_schedule(
                name,
                Schedule(
                    action=action,
                    spec=spec,
                    policy=SchedulePolicy(overlap=_OVERLAP[overlap]),
                    state=ScheduleState(note=f"titus-flow schedule of {target}"),
                ),
                memo={_QUEUE_MEMO: settings.control_task_queue},
            )
        except ScheduleAlreadyRunningError as err:
            raise UserError(f"schedule {name!r} already exists; delete it first") from err
        except RPCError as err:
            if err.status is RPCStatusCode.INVALID_ARGUMENT:
                raise UserError(f"schedule {name}: {err.message}") from err
            raise

    run_async(go())
    click.echo(f"schedule {name} created")


@schedule.command("list")
@output_option
@pass_context
def schedule_list(ctx: Context, output: str) -> None:
    """List this cluster's schedules."""
    settings = ctx.settings

    async def go() -> list[dict[str, Any]]:
        client = await TitusClient.connect(settings)
        rows = []
        async for item in await client.temporal.list_schedules():
            if await item.memo_value(_QUEUE_MEMO, None) != settings.control_task_queue:
                continue
            sched = item.schedule
            info = item.info
            rows.append(
                {
                    "name": item.id,
                    "workflow": getattr(sched.action, "workflow", "") if sched else "",
                    "spec": _describe_spec(sched.spec) if sched else "",
                    "paused": bool(sched and sched.state.paused),
                    "next_run": info.next_action_times[0].isoformat()
                    if info and info.next_action_times
                    else "",
                    "recent_runs": [
                        getattr(a.action, "workflow_id", "") for a in info.recent_actions
                    ]
                    if info
                    else [],
                }
            )
        return sorted(rows, key=lambda r: str(r["name"]))

    rows = run_async(go())
    if output == "json":
        echo_json(rows)
        return
    table = Table(show_header=True)
    for column in ("name", "workflow", "spec", "paused", "next run", "recent runs"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["name"],
            row["workflow"],
            row["spec"],
            "yes" if row["paused"] else "no",
            row["next_run"],
            str(len(row["recent_runs"])),
        )
    Console().print(table)


def _describe_spec(spec: ScheduleSpec) -> str:
    parts = [f"cron {c}" for c in spec.cron_expressions]
    parts += [f"cron {_calendar_as_cron(c)}" for c in spec.calendars]
    parts += [f"every {i.every}" for i in spec.intervals]
    return ", ".join(parts) + (f" ({spec.time_zone_name})" if spec.time_zone_name else "")


def _calendar_as_cron(calendar: ScheduleCalendarSpec) -> str:
    """The server stores a cron expression as a calendar; show it as cron again."""

    def field(ranges: Sequence[ScheduleRange], low: int, high: int) -> str:
        if [(r.start, max(r.end, r.start)) for r in ranges] == [(low, high)]:
            return "*"
        return ",".join(
            str(r.start)
            + (f"-{r.end}" if r.end > r.start else "")
            + (f"/{r.step}" if r.step > 1 else "")
            for r in ranges
        )

    fields = [
        field(calendar.minute, 0, 59),
        field(calendar.hour, 0, 23),
        field(calendar.day_of_month, 1, 31),
        field(calendar.month, 1, 12),
        field(calendar.day_of_week, 0, 6),
    ]
    seconds = field(calendar.second, 0, 59)
    return " ".join(fields if seconds == "0" else [seconds, *fields])


def _schedule_command(verb: str, help_text: str) -> None:
    """Add `schedule VERB NAME`, which calls ScheduleHandle.VERB."""

    @schedule.command(verb, help=help_text)
    @click.argument("name")
    @pass_context
    def command(ctx: Context, name: str) -> None:
        async def go() -> None:
            client = await TitusClient.connect(ctx.settings)
            handle = client.temporal.get_schedule_handle(name)
            try:
                await getattr(handle, verb)()
            except RPCError as err:
                if err.status is RPCStatusCode.NOT_FOUND:
                    raise UserError(f"no schedule {name!r}") from err
                raise

        run_async(go())
        click.echo(f"schedule {name}: {verb}{'d' if verb.endswith('e') else 'ed'}")


_schedule_command("pause", "Pause schedule NAME: no runs until unpaused.")
_schedule_command("unpause", "Resume schedule NAME.")
_schedule_command("trigger", "Start a run of schedule NAME now (the overlap policy applies).")
_schedule_command("delete", "Delete schedule NAME (runs already started go on).")


# --- replay -----------------------------------------------------------------------------

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


__all__ = ["has_dependencies", "run_dag", "start_dag", "wait_dag"]
