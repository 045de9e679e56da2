"""``titus-flow events``: a job's (or the cluster's) events as they happen, resumable."""

from __future__ import annotations

import json

import click
from pydantic_core import to_jsonable_python

from titus_flow.cli.app import Context, cli, output_option, pass_context, run_async
from titus_flow.client import TitusClient
from titus_flow.events import Event
from titus_flow.events.cursor import Cursor


def _check_cursor(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """A malformed cursor is bad input: exit 2 before anything is sent."""
    try:
        Cursor.parse(value)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
    return value


@cli.command("events")
@click.option("--job", "job_id", help="The job whose events to print (default: the cluster's).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing (with --job: until it ends).")
@click.option(
    "--after",
    metavar="CURSOR",
    callback=_check_cursor,
    help="Resume after this cursor (-o json prints them).",
)
@output_option
@pass_context
def events(ctx: Context, job_id: str | None, follow: bool, after: str | None, output: str) -> None:
    """Print events: a job's, or without --job the cluster's.

    A job's: accepted/state/finished, each task's state changes with reason,
    health changes and scaling decisions, in order per workflow of the job (a
    partitioned job's partitions are merged in time order); --follow (may
    start before the job does) waits for more until the job has ended. The
    cluster's: agents registered/lost/drained, placements, jobs accepted and
    finished (from visibility; by default from an hour ago); --follow never
    ends. -o json prints one object per line, each with the `cursor` to resume
    after it: `--after CURSOR` prints every later event once. An event of kind
    `gap` says how many events fell off a journal before they were read.
    """

    async def go() -> None:
        client = await TitusClient.connect(ctx.settings)
        stream = (
            client.job_events(job_id, after=after, follow=follow)
            if job_id
            else client.cluster_events(after=after, follow=follow)
        )
        async for event in stream:
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
