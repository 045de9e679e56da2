"""`titus-flow schedule ...`: run a job file or a user's workflow on a schedule."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from temporalio.client import ScheduleActionStartWorkflow, ScheduleIntervalSpec, ScheduleSpec

from titus_flow.cli.app import Context, cli, echo_json, output_option, pass_context, run_async
from titus_flow.cli.workflow_input import with_input_options, workflow_input
from titus_flow.client import TitusClient
from titus_flow.client.flows import OVERLAP_POLICIES, ScheduleVerb, dag_action, workflow_action
from titus_flow.config import Settings
from titus_flow.errors import UserError
from titus_flow.loader import load_jobs
from titus_flow.spec.quantities import parse_duration
from titus_flow.userflows import check_workflow_input, find_workflow, workflow_name


@cli.group()
def schedule() -> None:
    """Run a job file or your workflow on a schedule (Temporal Schedules)."""


def _schedule_action(
    target: str, args: list[Any], settings: Settings, name: str
) -> ScheduleActionStartWorkflow:
    """What each scheduled run starts: the jobs of a file (as a DAG), or a user workflow."""
    queue = settings.control_task_queue
    if ":" in target:  # PATH:Workflow; a job file is a plain path
        cls = find_workflow(target)
        check_workflow_input(cls, args)
        return workflow_action(name, workflow_name(cls), args, queue)
    if args:
        raise UserError("--input is for workflows (PATH:Workflow), not job files")
    return dag_action(name, load_jobs(Path(target)), target, queue)


@schedule.command("create")
@click.argument("name")
@click.argument("target", metavar="FILE_OR_WORKFLOW")
@click.option("--cron", help='Cron expression, e.g. "0 2 * * *" (02:00 every day).')
@click.option("--every", help='Interval, e.g. "15m", "1h", "1d".')
@click.option("--timezone", "timezone_name", help="Time zone of --cron, e.g. Europe/Paris.")
@click.option(
    "--overlap",
    type=click.Choice(list(OVERLAP_POLICIES)),
    default="skip",
    show_default=True,
    help="What to do when a run is due while the previous one still runs.",
)
@with_input_options
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
    action = _schedule_action(target, workflow_input(input_json, input_file), settings, name)

    async def go() -> None:
        client = await TitusClient.connect(settings)
        await client.create_schedule(
            name, action, spec, overlap, f"titus-flow schedule of {target}"
        )

    run_async(go())
    click.echo(f"schedule {name} created")


@schedule.command("list")
@output_option
@pass_context
def schedule_list(ctx: Context, output: str) -> None:
    """List this cluster's schedules."""

    async def go() -> list[dict[str, Any]]:
        return await (await TitusClient.connect(ctx.settings)).schedules()

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


def _schedule_command(verb: ScheduleVerb, help_text: str) -> None:
    """Add `schedule VERB NAME`, which calls :meth:`TitusClient.control_schedule`."""

    @schedule.command(verb, help=help_text)
    @click.argument("name")
    @pass_context
    def command(ctx: Context, name: str) -> None:
        async def go() -> None:
            await (await TitusClient.connect(ctx.settings)).control_schedule(name, verb)

        run_async(go())
        click.echo(f"schedule {name}: {verb}{'d' if verb.endswith('e') else 'ed'}")


_schedule_command("pause", "Pause schedule NAME: no runs until unpaused.")
_schedule_command("unpause", "Resume schedule NAME.")
_schedule_command("trigger", "Start a run of schedule NAME now (the overlap policy applies).")
_schedule_command("delete", "Delete schedule NAME (runs already started go on).")
