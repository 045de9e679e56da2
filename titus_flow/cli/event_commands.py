"""``titus-flow events``: a job's events, printed as they happen, resumable from a cursor."""

from __future__ import annotations

import json

import click
from pydantic_core import to_jsonable_python

from titus_flow.cli.app import Context, cli, output_option, pass_context, run_async
from titus_flow.client import TitusClient
from titus_flow.events import Event


@cli.command("events")
@click.option("--job", "job_id", required=True, help="The job whose events to print.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the job ends.")
@click.option("--after", metavar="CURSOR", help="Resume after this cursor (-o json prints them).")
@output_option
@pass_context
def events(ctx: Context, job_id: str, follow: bool, after: str | None, output: str) -> None:
    """Print a job's events: job accepted/finished, each task's state changes with reason.

    Events come in order per workflow of the job (a partitioned job's
    partitions are merged in time order). With --follow (may start before
    the job does): waits for more until the job has ended. -o json prints one
    object per line, each with the `cursor` to resume after it: `--after
    CURSOR` prints every later event once. An event of kind `gap` says how many
    events fell off a journal before they were read.
    """

    async def go() -> None:
        client = await TitusClient.connect(ctx.settings)
        async for event in client.job_events(job_id, after=after, follow=follow):
            click.echo(json.dumps(to_jsonable_python(event)) if output == "json" else line(event))

    run_async(go())


def line(event: Event) -> str:
    """One event as a line of text."""
    subject = event.task_id or event.agent or event.job_id or ""
    words = [event.at.strftime("%H:%M:%S.%f")[:-3], event.kind.value, subject]
    words += [w for w in (event.state, event.reason) if w]
    if event.attempt:
        words.append(f"attempt {event.attempt}")
    if event.agent and event.task_id:
        words.append(f"on {event.agent}")
    if event.message:
        words.append(f"- {event.message}")
    return "  ".join(words)
