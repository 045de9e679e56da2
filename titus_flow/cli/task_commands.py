"""`titus-flow task kill / logs`: one task of a job."""

from __future__ import annotations

import json

import click

from titus_flow.cli.app import Context, cli, echo_json, output_option, pass_context, run_async
from titus_flow.client import TitusClient
from titus_flow.contracts import LogsChunk


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
