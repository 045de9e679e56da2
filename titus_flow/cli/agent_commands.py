"""Commands about the cluster's agents: list and drain."""

from __future__ import annotations

import click
from rich.table import Table

from titus_flow.cli.app import (
    Context,
    cli,
    echo_json,
    output_option,
    pass_context,
    run_async,
    stdout_console,
)
from titus_flow.client import TitusClient
from titus_flow.contracts import AgentView


@cli.group()
def agents() -> None:
    """List or drain the agents of the cluster."""


@agents.command("list")
@output_option
@pass_context
def agents_list(ctx: Context, output: str) -> None:
    """Each agent's state, total and reserved resources, and its tasks."""

    async def go() -> list[AgentView]:
        return await (await TitusClient.connect(ctx.settings)).agents()

    views = run_async(go())
    if output == "json":
        echo_json(
            [
                {
                    **v.model_dump(mode="json"),
                    "free_cpu": v.total.cpu - v.reserved_cpu,
                    "free_memory": v.total.memory - v.reserved_memory,
                }
                for v in views
            ]
        )
        return
    table = Table(show_header=True)
    for column in (
        "agent",
        "state",
        "cpu free/total",
        "memory free/total MiB",
        "tasks",
        "attributes",
    ):
        table.add_column(column)
    for v in views:
        table.add_row(
            v.agent_id,
            v.state,
            f"{v.total.cpu - v.reserved_cpu:g}/{v.total.cpu:g}",
            f"{v.total.memory - v.reserved_memory}/{v.total.memory}",
            str(len(v.tasks)),
            ", ".join(f"{k}={val}" for k, val in sorted(v.attributes.items())),
        )
    stdout_console().print(table)


@agents.command("drain")
@click.argument("agent_id")
@pass_context
def agents_drain(ctx: Context, agent_id: str) -> None:
    """Place nothing more on AGENT_ID; its tasks finish where they run."""

    async def go() -> None:
        await (await TitusClient.connect(ctx.settings)).drain_agent(agent_id)

    run_async(go())
    click.echo(f"{agent_id}: draining")
