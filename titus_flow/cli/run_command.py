"""`titus-flow run`: submit the jobs of a file and follow them until they finish."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
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
)
from titus_flow.client import TitusClient
from titus_flow.client.flows import dag_input, has_dependencies
from titus_flow.config import Settings
from titus_flow.lifecycle import JobState
from titus_flow.loader import AnyJob, load_jobs, select_job
from titus_flow.spec import ServiceJob
from titus_flow.views import JobProgress, JobView

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
        raise click.exceptions.Exit(_run_dag(settings, jobs, detach, output))

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
    # Several jobs: every job's target groups first, so a bad one submits none
    # (client.submit checks a job's own; one job needs no second look).
    for job in jobs if len(jobs) > 1 else ():
        if isinstance(job, ServiceJob):
            await client.check_load_balancers(job)
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


def _run_dag(settings: Settings, jobs: list[AnyJob], detach: bool, output: str) -> int:
    """`titus-flow run` for a file whose jobs use depends_on; the exit code."""
    checked = dag_input(jobs)  # bad input exits 2 before anything is sent

    async def go() -> int:
        client = await TitusClient.connect(settings)
        dag_id = await client.start_dag(list(checked.jobs))
        if detach:
            if output == "json":
                echo_json({"dag": dag_id})
            else:
                click.echo(dag_id)
            return EXIT_OK
        if output == "text":
            _err.print(f"submitted {dag_id} ({len(checked.jobs)} jobs, in depends_on order)")
        result = await client.wait_dag(dag_id)
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
