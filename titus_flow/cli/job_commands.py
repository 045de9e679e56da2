"""Commands that submit and manage jobs: run, jobs list, job ..., task ...."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import click
from rich.console import Console
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from titus_flow.cli.app import (
    EXIT_FAILED,
    EXIT_OK,
    Context,
    cli,
    echo_json,
    output_option,
    pass_context,
    run_async,
    stdout_console,
)
from titus_flow.cli.flow_commands import has_dependencies, run_dag
from titus_flow.client import TitusClient, job_state
from titus_flow.contracts import LogsChunk
from titus_flow.errors import UserError
from titus_flow.lifecycle import JobState, RolloutPhase
from titus_flow.loader import AnyJob, load_jobs, select_job
from titus_flow.spec import ServiceJob
from titus_flow.views import PAGE_MAX_TASKS, JobProgress, JobView, TaskQuery

# Messages are never wrapped at a width: in a pipe or CI log each stays on one line.
_err = Console(stderr=True, soft_wrap=True)

PROGRESS_POLL_SECONDS = 0.5
"""How often `run` asks a running job for its progress."""


@cli.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--job", "job_name", help="Run only the job of this name from FILE.")
@click.option("--detach", is_flag=True, help="Print the job id(s) and return at once.")
@click.option(
    "--timeout",
    type=float,
    default=300.0,
    show_default=True,
    help="Service jobs: seconds to wait for all desired tasks to be healthy.",
)
@output_option
@pass_context
def run(
    ctx: Context, file: Path, job_name: str | None, detach: bool, timeout: float, output: str
) -> None:
    """Submit the job(s) in FILE and follow them until they finish.

    Exit code 0 when every job succeeded, 1 when one failed or was killed,
    2 for bad input (nothing is submitted then). Jobs that declare depends_on
    start once their dependencies succeeded; --job runs one job without them.
    """
    jobs = select_job(load_jobs(file), job_name)  # validated before anything is sent
    settings = ctx.settings
    if job_name is None and has_dependencies(jobs):
        # depends_on: one generated workflow starts each job once its dependencies succeeded.
        raise click.exceptions.Exit(run_dag(settings, jobs, detach, output))

    async def go() -> int:
        client = await TitusClient.connect(settings)
        job_ids = await _submit_all(client, jobs)
        if detach:
            if output == "json":
                echo_json({"jobs": job_ids})
            else:
                for job_id in job_ids:
                    click.echo(job_id)
            return EXIT_OK
        views = [
            await _follow(client, job_id, job.kind, show=output == "text", timeout=timeout)
            for job_id, job in zip(job_ids, jobs, strict=True)
        ]
        if output == "json":
            echo_json([v.model_dump(mode="json") for v in views])
        else:
            for view in views:
                _print_outcome(view)
        return EXIT_OK if all(_succeeded(v) for v in views) else EXIT_FAILED

    raise click.exceptions.Exit(run_async(go()))


async def _submit_all(client: TitusClient, jobs: Sequence[AnyJob]) -> list[str]:
    """Submit every job (validated before), or leave none of them running.

    If a submit fails partway (the server was lost, or refused a job), the jobs
    submitted before it are killed and the error gets a note saying so, or
    naming those that could not be killed and how to kill them.
    """
    job_ids: list[str] = []
    try:
        for job in jobs:
            job_ids.append(await client.submit(job))
    except Exception as err:
        if job_ids:
            err.add_note(await _withdraw(client, job_ids, len(jobs)))
        raise
    return job_ids


async def _withdraw(client: TitusClient, job_ids: list[str], of: int) -> str:
    """Kill ``job_ids`` (the first of ``of`` jobs to submit); what happened, as one line."""
    outcomes = await asyncio.gather(*map(client.kill, job_ids), return_exceptions=True)
    left = [job_id for job_id, out in zip(job_ids, outcomes, strict=True) if out is not None]
    killed = [job_id for job_id in job_ids if job_id not in left]
    said = [f"killed {', '.join(killed)}"] if killed else []
    said += [f"could not kill {job_id}: run `titus-flow job kill {job_id}`" for job_id in left]
    return f"{len(job_ids)} of the {of} jobs were submitted before the failure: {'; '.join(said)}"


def _succeeded(view: JobView) -> bool:
    """A batch job that succeeded, or a service job running at its desired size."""
    if view.service is not None:
        return view.state is JobState.RUNNING and view.service.healthy >= view.service.desired
    return view.state is JobState.SUCCEEDED


async def _follow(
    client: TitusClient, job_id: str, kind: str, show: bool, timeout: float
) -> JobView:
    """Wait for a batch job to end, or a service job to be healthy at its size."""
    if kind == "service":
        return await _follow_service(client, job_id, show, timeout)
    return await _follow_batch(client, job_id, show)


async def _follow_service(client: TitusClient, job_id: str, show: bool, timeout: float) -> JobView:
    """Wait until the service's tasks are healthy, printing each change of its state."""
    report = _ChangeReporter()
    if show:
        _err.print(
            f"submitted {job_id}; waiting up to {timeout:g}s until its tasks are healthy",
            markup=False,
        )
    try:
        return await client.wait_healthy(
            job_id,
            timeout,
            on_progress=(lambda view: report.show(_service_line(view))) if show else None,
        )
    except TimeoutError as err:
        _err.print(str(err), style="red", markup=False)
        return await client.describe(job_id)


async def _follow_batch(client: TitusClient, job_id: str, show: bool) -> JobView:
    """Wait for the job, showing its progress while it runs.

    On a terminal a live table of task counts by state; elsewhere (a pipe, CI)
    a plain line whenever the job's state, its tasks' states or the reasons
    tasks wait for change.
    """
    result = asyncio.ensure_future(client.wait(job_id))
    if not show:
        return await result
    if not _err.is_terminal:
        _err.print(f"submitted {job_id}; waiting for it to finish", markup=False)
        report = _ChangeReporter()
        await _poll_progress(client, job_id, result, lambda p: report.show(*_progress_line(p)))
        return await result
    with Live(_progress_table(job_id, None), console=_err, refresh_per_second=4) as live:
        await _poll_progress(
            client, job_id, result, lambda p: live.update(_progress_table(job_id, p))
        )
    return await result


async def _poll_progress(
    client: TitusClient,
    job_id: str,
    result: asyncio.Future[JobView],
    shown: Callable[[JobProgress], None],
) -> None:
    """Pass the job's progress to ``shown`` every PROGRESS_POLL_SECONDS until ``result`` is done."""
    while not result.done():
        # A missed refresh (e.g. a query during a worker restart) only delays the display.
        with contextlib.suppress(Exception):
            shown(await client.progress(job_id))
        await asyncio.wait([result], timeout=PROGRESS_POLL_SECONDS)


class _ChangeReporter:
    """Prints a plain line on stderr whenever what it is shown changes."""

    def __init__(self) -> None:
        self._last: object = None

    def show(self, line: str, key: object = None) -> None:
        """Print ``line`` unless ``key`` (default: the line itself) is what was shown last."""
        key = line if key is None else key
        if key != self._last:
            self._last = key
            _err.print(line, markup=False, highlight=False)


def _progress_line(progress: JobProgress) -> tuple[str, object]:
    """A batch job's progress as one line, and what must change to print it again.

    The counts are in the line but not in the key: a large job would otherwise
    print a line at every poll.
    """
    line = f"{progress.id}: {progress.state.value}"
    if progress.counts:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(progress.counts.items()))
        line += f"; tasks: {counts}"
    line += "".join(f"; waiting: {reason}" for reason in progress.pending_reasons)
    key = (progress.state, tuple(sorted(progress.counts)), tuple(progress.pending_reasons))
    return line, key


def _service_line(view: JobView) -> str:
    """A service job's state, health and what it waits for, as one line."""
    status = view.service
    line = f"{view.id}: {view.state.value}"
    if status is not None:
        line += f"; {view.healthy_tasks()}/{status.desired} healthy"
    if view.message:
        line += f"; {view.message}"
    waits = [*(status.waiting if status else []), *_pending_reasons(view)]
    line += "".join(f"; waiting: {reason}" for reason in dict.fromkeys(waits))
    return line


def _pending_reasons(view: JobView) -> list[str]:
    """Why the job's tasks wait for capacity, each reason once."""
    return list(dict.fromkeys(t.pending_reason for t in view.live_tasks() if t.pending_reason))


def _progress_table(job_id: str, progress: JobProgress | None) -> Table:
    table = Table(title=f"job {job_id}", show_header=True)
    table.add_column("state")
    table.add_column("tasks", justify="right")
    if progress is None:
        table.add_row("submitted", "")
        return table
    total = sum(progress.counts.values())
    finished = sum(n for state, n in progress.counts.items() if state.startswith("Finished"))
    if total:  # a bar of finished tasks above the counts by state
        table.add_row(ProgressBar(total=total, completed=finished, width=30), f"{finished}/{total}")
    for state, count in sorted(progress.counts.items()):
        table.add_row(state, str(count))
    for reason in progress.pending_reasons:
        table.add_row(Text(f"waiting: {reason}", style="yellow"), "")
    return table


def _print_outcome(view: JobView) -> None:
    colour = "green" if _succeeded(view) else "red"
    if view.service is not None:
        _err.print(
            f"{view.id}: {view.state.value}, {view.service.healthy}/"
            f"{view.service.desired} healthy, revision {view.service.revision}",
            style=colour,
            markup=False,
        )
        return
    _err.print(
        f"{view.id}: {view.state.value}" + (f" - {view.message}" if view.message else ""),
        style=colour,
        markup=False,
    )
    for task in view.tasks:
        if task.reason is not None and task.reason.value != "normal":
            _err.print(
                f"  task {task.index} ({task.id}): {task.reason.value} {task.message}",
                markup=False,
            )
            for line in task.log_tail[-10:]:
                _err.print(f"    | {line}", markup=False, highlight=False)


@cli.group()
def jobs() -> None:
    """List jobs."""


@jobs.command("list")
@click.option(
    "--state",
    metavar="STATE",
    callback=lambda _ctx, _param, value: _job_state(value),
    help=f"Only jobs in this state: {', '.join(s.value for s in JobState)} (any case).",
)
@click.option("--type", "job_type", type=click.Choice(["batch", "service"]), help="Only this type.")
@click.option(
    "--limit", type=click.IntRange(min=1), default=100, show_default=True, help="At most this many."
)
@output_option
@pass_context
def jobs_list(
    ctx: Context, state: str | None, job_type: str | None, limit: int, output: str
) -> None:
    """List jobs from Temporal visibility, the most recently started first."""

    async def go() -> list[dict[str, str | None]]:
        client = await TitusClient.connect(ctx.settings)
        return await client.list_jobs(state, job_type, limit)

    rows = run_async(go())
    if output == "json":
        echo_json(rows)
        return
    columns = ("id", "name", "type", "state", "owner", "started")
    table = Table(show_header=True)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(row[c] or "-" for c in columns))
    stdout_console().print(table)


def _job_state(value: str | None) -> str | None:
    """The job state ``value`` names (in any case), as the option's value."""
    if value is None:
        return None
    try:
        return job_state(value).value
    except UserError as err:
        raise click.BadParameter(str(err)) from err


@cli.group()
def job() -> None:
    """Inspect and manage one job: describe, kill, scale, update, promote, roll back."""


def _index_range(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> tuple[int, int] | None:
    """``--tasks``: ``N`` or ``N-M`` (task indexes, both ends included)."""
    if value is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", value)
    if match is None:
        raise click.BadParameter(f"{value!r}: give a task index N or a range N-M, e.g. 100-199")
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) is not None else first
    if last < first:
        raise click.BadParameter(f"{value!r}: the range ends before it starts")
    return first, last


@job.command("describe")
@click.argument("job_id")
@click.option(
    "--tasks",
    "index_range",
    callback=_index_range,
    metavar="N[-M]",
    help="Only these task indexes.",
)
@click.option(
    "--state",
    "states",
    multiple=True,
    metavar="STATE",
    help="Only tasks in this state (Started, Finished, ...) or finished for this reason"
    " (failed, killed, normal, ...); repeatable.",
)
@click.option(
    "--limit",
    type=click.IntRange(1, PAGE_MAX_TASKS),
    help="At most this many tasks (default: every task of a small job, 100 of a large one).",
)
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Skip this many tasks first.")
@output_option
@pass_context
def job_describe(
    ctx: Context,
    job_id: str,
    index_range: tuple[int, int] | None,
    states: tuple[str, ...],
    limit: int | None,
    offset: int,
    output: str,
) -> None:
    """Show a job, its tasks (failed first) and their latest attempts.

    A large job shows its counts by state and one page of tasks: page with
    --offset and --limit, filter with --tasks and --state.
    """
    query = None
    if index_range or states or limit or offset:
        first, last = index_range or (None, None)
        query = TaskQuery(
            states=list(states), first=first, last=last, offset=offset, limit=limit or 100
        )

    async def go() -> JobView:
        return await (await TitusClient.connect(ctx.settings)).describe(job_id, query)

    view = run_async(go())
    if output == "json":
        echo_json(view.model_dump(mode="json"))
        return
    console = stdout_console()
    console.print(
        Text.assemble((view.id, "bold"), f" {view.type} job {view.name} owner={view.owner or '-'}")
    )
    for line in [*_describe_lines(view), *_count_lines(view, query or TaskQuery())]:
        console.print(line, markup=False, highlight=False)
    console.print(_tasks_table(view))


def _count_lines(view: JobView, query: TaskQuery) -> list[str]:
    """A large job's (or a page's) counts by state and which tasks the table shows."""
    if view.total_tasks is None:
        return []
    counts = view.counts()
    lines = [
        f"tasks: {view.total_tasks}"
        + (f" ({', '.join(f'{n} {key}' for key, n in sorted(counts.items()))})" if counts else "")
    ]
    if view.partitions:
        ended = sum(1 for p in view.partition_views if p.state.is_final)
        lines.append(f"partitions: {len(view.partitions)} ({ended} ended)")
    shown = f"showing {len(view.tasks)}"
    if query.first is None and query.last is None:
        matching = query.count(counts)
        shown += f" of {matching} matching" if query.states else f" of {matching}"
        after = query.offset + len(view.tasks)
        if after < matching:
            shown += f"; next page: --offset {after}"
    lines.append(shown + " (failed first)")
    return lines


def _describe_lines(view: JobView) -> list[str]:
    """The job's state and, for a service, its size, revision, update and what waits."""
    lines = [f"state: {view.state.value}" + (f" - {view.message}" if view.message else "")]
    status = view.service
    if status is None:
        return lines
    lines.append(
        f"revision {status.revision}: {status.healthy}/{status.desired} healthy"
        f" (min {status.min}, max {status.max})"
        + (f"; canary of {status.canary} task(s) holding" if status.canary is not None else "")
    )
    if status.update:
        lines.append(f"update: {status.update}")
    lines += [f"waiting: {reason}" for reason in status.waiting]
    return lines


def _tasks_table(view: JobView) -> Table:
    """One row per task; a service's also show revision and health, and held requests."""
    service = view.service
    columns = ["index", "task", "state", "reason", "attempt", "agent", "exit codes"]
    if service is not None:
        columns += ["revision", "healthy"]
    table = Table(show_header=True)
    for column in [*columns, "message", "waiting"]:
        table.add_column(column)
    for task in view.tasks:
        cells = [
            str(task.index),
            task.id,
            task.state.value,
            task.reason.value if task.reason else "",
            str(task.attempt),
            task.agent or "",
            ",".join("-" if a.exit_code is None else str(a.exit_code) for a in task.attempts),
        ]
        waiting = [task.pending_reason] if task.pending_reason else []
        if service is not None:
            healthy = "" if task.healthy is None else "yes" if task.healthy else "no"
            cells += [str(task.revision or ""), healthy]
            # Held requests name the task they wait to disrupt (e.g. a kill).
            named = re.compile(rf"\b{re.escape(task.id)}\b")
            waiting += [reason for reason in service.waiting if named.search(reason)]
        cells += [task.message, "; ".join(waiting)]
        table.add_row(*(Text(cell) for cell in cells))  # as written: no markup
    return table


@job.command("kill")
@click.argument("job_id")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until it ended.")
@pass_context
def job_kill(ctx: Context, job_id: str, wait: bool) -> None:
    """Kill a job: every task is stopped and the job finishes as Killed."""

    async def go() -> None:
        client = await TitusClient.connect(ctx.settings)
        await client.kill(job_id)
        if wait:
            view = await client.wait(job_id)
            click.echo(f"{job_id}: {view.state.value}")

    run_async(go())


@job.command("scale")
@click.argument("job_id")
@click.option("--desired", type=click.IntRange(min=0), help="Tasks to keep running.")
@click.option("--min", "min_", type=click.IntRange(min=0), help="Lower bound of desired.")
@click.option("--max", "max_", type=click.IntRange(min=0), help="Upper bound of desired.")
@output_option
@pass_context
def job_scale(
    ctx: Context,
    job_id: str,
    desired: int | None,
    min_: int | None,
    max_: int | None,
    output: str,
) -> None:
    """Scale a service job; surplus tasks go as its disruption budget allows."""
    if desired is None and min_ is None and max_ is None:
        raise click.UsageError("give at least one of --desired, --min, --max")

    async def go() -> dict[str, int]:
        client = await TitusClient.connect(ctx.settings)
        capacity = await client.scale(job_id, desired, min_, max_)
        return capacity.model_dump()

    capacity = run_async(go())
    if output == "json":
        echo_json(capacity)
    else:
        click.echo(
            f"{job_id}: min={capacity['min']} desired={capacity['desired']} max={capacity['max']}"
        )


@job.command("update")
@click.argument("job_id")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--job", "job_name", help="The job of this name in FILE (if it holds several).")
@click.option(
    "--canary",
    type=click.IntRange(min=1),
    help="Move only this many tasks to the new revision, then hold for promote/rollback.",
)
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the rollout.")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds to wait.")
@pass_context
def job_update(
    ctx: Context,
    job_id: str,
    file: Path,
    job_name: str | None,
    canary: int | None,
    wait: bool,
    timeout: float,
) -> None:
    """Roll out a new revision of a running service job from FILE.

    Tasks are replaced batch by batch within the job's max_surge and
    max_unavailable; new tasks that are not healthy in time roll it back.
    With --canary N only N tasks move; then `titus-flow job promote` or
    `titus-flow job rollback` ends the canary.
    """
    jobs = select_job(load_jobs(file), job_name)
    if len(jobs) != 1 or not isinstance(jobs[0], ServiceJob):
        raise UserError(f"{file}: name exactly one service job (use --job NAME)")
    spec = jobs[0]

    async def go(client: TitusClient) -> int:
        revision = await client.update_service(job_id, spec, canary=canary)
        what = f"a canary of {canary} task(s) on" if canary else "rolling out"
        click.echo(f"{job_id}: {what} revision {revision}")
        return revision

    _rollout_command(ctx, job_id, go, wait, timeout)


@job.command("promote")
@click.argument("job_id")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the rollout.")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds to wait.")
@pass_context
def job_promote(ctx: Context, job_id: str, wait: bool, timeout: float) -> None:
    """Roll a service job's canary revision out to every task."""

    async def go(client: TitusClient) -> int:
        revision = await client.promote(job_id)
        click.echo(f"{job_id}: promoting revision {revision}")
        return revision

    _rollout_command(ctx, job_id, go, wait, timeout)


@job.command("rollback")
@click.argument("job_id")
@click.option("--reason", default="", help="Why, shown in the job's update status.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the rollout.")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds to wait.")
@pass_context
def job_rollback(ctx: Context, job_id: str, reason: str, wait: bool, timeout: float) -> None:
    """Return a service job (a canary or a rolling update) to its previous revision."""

    async def go(client: TitusClient) -> int:
        revision = await client.rollback(job_id, reason)
        click.echo(f"{job_id}: rolling back to revision {revision}")
        return revision

    _rollout_command(ctx, job_id, go, wait, timeout)


def _rollout_command(
    ctx: Context,
    job_id: str,
    start: Callable[[TitusClient], Awaitable[int]],
    wait: bool,
    timeout: float,
) -> None:
    """Run ``start``, then (with ``wait``) follow the rollout until it settles.

    Exits 0 once rolled out, a canary holds healthy, or a requested rollback
    is healthy again; 1 if the update rolled back on its own or timed out.
    """

    async def go() -> int:
        client = await TitusClient.connect(ctx.settings)
        revision = await start(client)
        if not wait:
            return EXIT_OK
        try:
            view = await client.wait_rollout(job_id, timeout)
            if view.service is not None and view.service.rollout is RolloutPhase.ROLLED_BACK:
                # A rollback the user asked for succeeds once the job is healthy again.
                view = await client.wait_healthy(job_id, timeout, revision=view.service.revision)
        except TimeoutError as err:
            click.echo(f"{job_id}: {err}", err=True)
            return EXIT_FAILED
        status = view.service
        assert status is not None
        click.echo(f"{job_id}: {status.update or view.state.value}")
        rolled_back_on_its_own = (
            status.rollout is RolloutPhase.ROLLED_BACK and status.revision != revision
        )
        return EXIT_FAILED if rolled_back_on_its_own or view.state.is_final else EXIT_OK

    raise click.exceptions.Exit(run_async(go()))


@cli.group()
def task() -> None:
    """Kill one task or read its logs."""


@task.command("kill")
@click.argument("task_id")
@click.option("--shrink", is_flag=True, help="Service: lower desired by one instead of replacing.")
@click.option("--force", is_flag=True, help="Service: ignore the job's disruption budget.")
@pass_context
def task_kill(ctx: Context, task_id: str, shrink: bool, force: bool) -> None:
    """Kill one task: a batch task is not retried; a service task is replaced."""

    async def go() -> str:
        return await (await TitusClient.connect(ctx.settings)).kill_task(task_id, shrink, force)

    click.echo(f"{task_id}: {run_async(go())}")


@task.command("logs")
@click.argument("task_id")
@click.option("--attempt", type=click.IntRange(min=1), help="Attempt number (default: the latest).")
@click.option(
    "--follow", "-f", is_flag=True, help="Keep printing as the task writes, until the attempt ends."
)
@output_option
@pass_context
def task_logs(ctx: Context, task_id: str, attempt: int | None, follow: bool, output: str) -> None:
    """Print the output (stdout and stderr) of a task attempt, also while it runs.

    Without --follow: what the attempt has written so far. With --follow: then
    each line as it is written, until the attempt ends. -o json prints one
    object {task_id, attempt, offset, next_offset, data, complete}; with
    --follow, one such object per line as output arrives.
    """

    async def go() -> None:
        client = await TitusClient.connect(ctx.settings)
        chunks = client.logs(task_id, attempt, follow=follow)
        if output == "text":
            async for chunk in chunks:
                click.echo(chunk.data, nl=False)
        elif follow:
            offset = 0
            async for chunk in chunks:
                click.echo(json.dumps(_logs_json(task_id, offset, chunk)))
                offset = chunk.next_offset
        else:
            collected = [chunk async for chunk in chunks]
            whole = LogsChunk(
                data="".join(c.data for c in collected),
                next_offset=collected[-1].next_offset if collected else 0,
                complete=bool(collected) and collected[-1].complete,
                attempt=collected[-1].attempt if collected else 0,
            )
            echo_json(_logs_json(task_id, 0, whole))

    run_async(go())


def _logs_json(task_id: str, offset: int, chunk: LogsChunk) -> dict[str, object]:
    """``task logs -o json``: the chunk with where it sits in the attempt's output."""
    return {
        "task_id": task_id,
        "attempt": chunk.attempt,
        "offset": offset,
        "next_offset": chunk.next_offset,
        "data": chunk.data,
        "complete": chunk.complete,
    }
