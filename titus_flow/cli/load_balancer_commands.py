"""`titus-flow job load-balancers JOB`: a service job's target groups and its tasks in them."""

from __future__ import annotations

import click
from rich.table import Table
from rich.text import Text

from titus_flow.cli.app import (
    JOB_ID,
    Context,
    echo_json,
    output_option,
    pass_context,
    run_async,
    stdout_console,
)
from titus_flow.cli.job_commands import job
from titus_flow.client import TitusClient
from titus_flow.contracts.load_balancers import LoadBalancersView
from titus_flow.spec.quantities import format_duration


@job.command("load-balancers")
@click.argument("job_id", type=JOB_ID)
@output_option
@pass_context
def job_load_balancers(ctx: Context, job_id: str, output: str) -> None:
    """Show a service job's target groups and each task's registration state in them.

    States: registering, registered, draining (deregistered, the group's
    deregistration delay not over: the task still runs), deregistered.
    """

    async def go() -> LoadBalancersView:
        return await (await TitusClient.connect(ctx.settings)).load_balancers(job_id)

    view = run_async(go())
    if output == "json":
        echo_json(view.model_dump(mode="json"))
        return
    console = stdout_console()
    if not view.groups:
        console.print(f"{job_id}: no load balancers", markup=False, highlight=False)
        return
    console.print(targets_table(view))


def targets_table(view: LoadBalancersView) -> Table:
    """One row per (group, task): the group, its drain, the task, its target and state."""
    table = Table(show_header=True)
    for column in ("target group", "drain", "task", "target", "state"):
        table.add_column(column)
    for group in view.groups:
        drain = format_duration(group.drain)
        if not group.targets:
            table.add_row(Text(group.target_group), drain, "", "", "")
        for target in group.targets:
            address = f"{target.target}:{target.port}" if target.target else f"(port {target.port})"
            cells = [group.target_group, drain, target.task_id, address, target.state.value]
            table.add_row(*(Text(cell) for cell in cells))
    return table
