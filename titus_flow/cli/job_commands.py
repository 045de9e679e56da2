"""`titus-flow jobs list` and `titus-flow job describe / kill`: inspect and end jobs."""

from __future__ import annotations

import re

import click
from rich.table import Table
from rich.text import Text

from titus_flow.cli.app import (
    JOB_ID,
    Context,
    cli,
    echo_json,
    output_option,
    pass_context,
    run_async,
    stdout_console,
)
from titus_flow.client import TitusClient, job_state
from titus_flow.contracts.load_balancers import LoadBalancersView
from titus_flow.errors import UserError
from titus_flow.lifecycle import JobState
from titus_flow.load_balancers.rules import registration_states
from titus_flow.views import PAGE_MAX_TASKS, JobView, TaskQuery


@cli.group(invoke_without_command=True)
@click.pass_context
def jobs(ctx: click.Context) -> None:
    """List jobs: `titus-flow jobs` alone runs `jobs list` with its defaults."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(jobs_list)


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
@click.argument("job_id", type=JOB_ID)
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

    async def go() -> tuple[JobView, LoadBalancersView | None]:
        client = await TitusClient.connect(ctx.settings)
        view = await client.describe(job_id, query)
        return view, await _targets_of(client, view)

    view, targets = run_async(go())
    if output == "json":
        shown = view.model_dump(mode="json")
        if targets is not None:
            shown["load_balancers"] = targets.model_dump(mode="json")
        echo_json(shown)
        return
    console = stdout_console()
    console.print(
        Text.assemble((view.id, "bold"), f" {view.type} job {view.name} owner={view.owner or '-'}")
    )
    for line in [*_describe_lines(view), *_count_lines(view, query or TaskQuery())]:
        console.print(line, markup=False, highlight=False)
    console.print(_tasks_table(view, targets))


async def _targets_of(client: TitusClient, view: JobView) -> LoadBalancersView | None:
    """A service job's load balancer targets; None when it has none (or cannot say)."""
    if view.service is None:
        return None
    try:
        targets = await client.load_balancers(view.id)
    except UserError:  # a job of an earlier release: no such query
        return None
    return targets if targets.groups else None


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
    if view.security is not None:
        lines.append(view.security.describe())
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


def _tasks_table(view: JobView, targets: LoadBalancersView | None = None) -> Table:
    """One row per task; a service's also show revision and health, and held requests.

    With ``targets``, each task's state in the job's load balancers too.
    """
    service = view.service
    columns = ["index", "task", "state", "reason", "attempt", "agent", "exit codes"]
    if service is not None:
        columns += ["revision", "healthy"]
    registered = registration_states(targets) if targets is not None else None
    if registered is not None:
        columns.append("load balancers")
    # Where agents uploaded logs (docs/logs.md): the latest attempt's, only if some task has one.
    logs = any(task.attempts and task.attempts[-1].log for task in view.tasks)
    if logs:
        columns.append("log (latest attempt)")
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
        if registered is not None:
            cells.append(registered.get(task.id, ""))
        if logs:
            log = task.attempts[-1].log if task.attempts else None
            cells.append("" if log is None else log.url + ("" if log.uploaded else " (pending)"))
        cells += [task.message, "; ".join(waiting)]
        table.add_row(*(Text(cell) for cell in cells))  # as written: no markup
    return table


@job.command("kill")
@click.argument("job_id", type=JOB_ID)
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
