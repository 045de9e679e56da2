"""`titus-flow job autoscaling` and `titus-flow metrics put`: a service job's autoscaling."""

from __future__ import annotations

import math
from datetime import datetime

import click
from rich.table import Table

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
from titus_flow.cli.job_commands import job
from titus_flow.client import TitusClient
from titus_flow.client.autoscaling import put_metric_name
from titus_flow.contracts.autoscaling import AutoscalingView
from titus_flow.errors import UserError
from titus_flow.spec.quantities import format_duration

DECISIONS_SHOWN = 10


@job.command("autoscaling")
@click.argument("job_id", type=JOB_ID)
@click.option("--pause", "action", flag_value="pause", help="Stop policies and scheduled actions.")
@click.option("--resume", "action", flag_value="resume", help="Let them change desired again.")
@output_option
@pass_context
def job_autoscaling(ctx: Context, job_id: str, action: str | None, output: str) -> None:
    """Show a service job's policies, metric values and latest decisions; pause or resume them.

    While paused, metrics are still kept and every evaluation is recorded,
    but nothing changes desired.
    """

    async def go() -> AutoscalingView:
        client = await TitusClient.connect(ctx.settings)
        if action is not None:
            await client.set_autoscaling_paused(job_id, action == "pause")
        return await client.autoscaling(job_id)

    view = run_async(go())
    if output == "json":
        echo_json(view.model_dump(mode="json"))
        return
    _print_view(view)


def _print_view(view: AutoscalingView) -> None:
    """The view as text: state, policies with their metric's value, schedules, decisions."""
    if not view.enabled:
        click.echo(f"{view.job_id}: no autoscaling (desired {view.desired}, set by scale)")
        return
    state = "paused" if view.paused else "active"
    if view.held and not view.paused:
        state = f"held: {view.held}"
    every = f", every {format_duration(view.interval)}" if view.interval else ""
    over = f" over {format_duration(view.window)}" if view.window else ""
    click.echo(
        f"{view.job_id}: autoscaling {state}{every}{over};"
        f" min {view.min}, desired {view.desired}, max {view.max}"
    )
    if view.next_evaluation is not None and not view.paused:
        click.echo(f"next evaluation: {_time(view.next_evaluation)}")
    console = stdout_console()
    if view.policies:
        table = Table("POLICY", "KIND", "METRIC", "VALUE", "SETTING")
        for policy in view.policies:
            value = view.metrics.get(policy.metric)
            shown = "no data" if value is None else f"{value:g}"
            if policy.metric in view.read_errors:
                shown += " (read failing)"
            table.add_row(policy.name, policy.kind, policy.metric, shown, policy.summary)
        console.print(table)
    for metric, error in sorted(view.read_errors.items()):
        click.echo(f"{metric}: {error}")
    if view.scheduled:
        table = Table("SCHEDULED", "CRON (UTC)", "MIN", "DESIRED", "MAX", "SCHEDULE")
        for action in view.scheduled:
            sets = [action.min, action.desired, action.max]
            cells = ["-" if value is None else str(value) for value in sets]
            table.add_row(action.name, action.cron, *cells, action.schedule_id)
        console.print(table)
    decisions = view.decisions[-DECISIONS_SHOWN:]
    if not decisions:
        click.echo("no decision yet")
        return
    table = Table("AT", "DESIRED", "BY", "WHY")
    for decision in reversed(decisions):  # newest first
        change = (
            f"{decision.old_desired} -> {decision.new_desired}"
            if decision.changed
            else f"{decision.old_desired}"
        )
        table.add_row(_time(decision.at), change, decision.policy or "-", decision.reason)
    console.print(table)


def _time(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


@cli.group()
def metrics() -> None:
    """Push metric values to service jobs' autoscaling policies."""


@metrics.command("put")
@click.argument("job_id", type=JOB_ID)
@click.argument("name")
@click.argument("value")
@pass_context
def metrics_put(ctx: Context, job_id: str, name: str, value: str) -> None:
    """Send VALUE of metric NAME to JOB_ID's policies (NAME: custom:<name> or <name>).

    The job averages the values it received over its autoscaling window; a
    value counts for that long, so push again as it changes (or at least once
    a window). Exits 2, sending nothing, for an unknown or non-service job, a
    name no policy of the job reads, or a VALUE that is not a number.
    """
    put_metric_name(name)  # a bad name exits 2 before connecting
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise UserError(f"metric value {value!r} is not a finite number")

    async def go() -> str:
        client = await TitusClient.connect(ctx.settings)
        return await client.put_metric(job_id, name, number, source="cli")

    metric = run_async(go())
    click.echo(f"{job_id}: {metric} = {number:g}")
