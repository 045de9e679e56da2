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
from titus_flow.scheduler.queries import (
    AGENTS_PAGE,
    TASKS_PAGE,
    AgentQuery,
    AgentTasks,
    AgentTasksQuery,
)


@cli.group()
def agents() -> None:
    """List or drain the agents of the cluster, or list one agent's tasks."""


@agents.command("list")
@click.option("--state", help="Only agents in this state (active, draining, lost).")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="Show at most this many agents (0: all).",
)
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Skip this many agents.")
@output_option
@pass_context
def agents_list(ctx: Context, state: str | None, limit: int, offset: int, output: str) -> None:
    """Each agent's state, total and reserved resources, and how many tasks it holds.

    See an agent's tasks with `titus-flow agents tasks AGENT_ID`.
    """

    async def go() -> tuple[list[AgentView], bool]:
        client = await TitusClient.connect(ctx.settings)
        views: list[AgentView] = []
        # One more than shown, to tell whether there are more.
        while limit == 0 or len(views) <= limit:
            want = AGENTS_PAGE if limit == 0 else min(AGENTS_PAGE, limit + 1 - len(views))
            page = await client.agents(
                AgentQuery(state=state, offset=offset + len(views), limit=want)
            )
            views += page
            if len(page) < want:
                break
        return (views, False) if limit == 0 else (views[:limit], len(views) > limit)

    views, more = run_async(go())
    more_hint = f"more agents: --offset {offset + len(views)}, or --limit 0 for all"
    if output == "json":
        echo_json(
            [
                {
                    **v.model_dump(mode="json", exclude={"tasks"}),
                    "free_cpu": v.total.cpu - v.reserved_cpu,
                    "free_memory": v.total.memory - v.reserved_memory,
                }
                for v in views
            ]
        )
        if more:
            click.echo(more_hint, err=True)
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
            str(v.task_count),
            ", ".join(f"{k}={val}" for k, val in sorted(v.attributes.items())),
        )
    stdout_console().print(table)
    tasks = sum(v.task_count for v in views)
    click.echo(
        f"{len(views)} agents shown, {tasks} tasks on them" + (f"; {more_hint}" if more else "")
    )


@agents.command("tasks")
@click.argument("agent_id")
@click.option(
    "--limit",
    type=click.IntRange(min=1, max=TASKS_PAGE),
    default=TASKS_PAGE,
    show_default=True,
    help="Show at most this many task keys.",
)
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Skip this many keys.")
@output_option
@pass_context
def agents_tasks(ctx: Context, agent_id: str, limit: int, offset: int, output: str) -> None:
    """Keys of the tasks holding capacity on AGENT_ID (job/index), sorted."""

    async def go() -> AgentTasks:
        client = await TitusClient.connect(ctx.settings)
        return await client.agent_tasks(
            AgentTasksQuery(agent_id=agent_id, offset=offset, limit=limit)
        )

    page = run_async(go())
    if output == "json":
        echo_json(page.model_dump(mode="json"))
        return
    for key in page.tasks:
        click.echo(key)
    shown = f"{offset + 1}-{offset + len(page.tasks)}" if page.tasks else "none"
    click.echo(f"{agent_id}: {page.total} tasks, showing {shown}", err=True)


@agents.command("drain")
@click.argument("agent_id")
@pass_context
def agents_drain(ctx: Context, agent_id: str) -> None:
    """Place nothing more on AGENT_ID; its tasks finish where they run."""

    async def go() -> None:
        await (await TitusClient.connect(ctx.settings)).drain_agent(agent_id)

    run_async(go())
    click.echo(f"{agent_id}: draining")
