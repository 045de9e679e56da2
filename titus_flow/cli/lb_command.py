"""`titus-flow lb`: the local load balancer in front of a service job's tasks."""

from __future__ import annotations

import asyncio
import ipaddress
import sys

import click

from titus_flow.cli.app import JOB_ID, Context, cli, install_stop_signals, pass_context, run_async
from titus_flow.cli.process_options import process_settings
from titus_flow.client import TitusClient
from titus_flow.errors import UserError
from titus_flow.lb import run_local_lb
from titus_flow.lb.job import JobMetricReports, JobTargets


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` on a loopback address (``localhost``, ``127.x``, ``[::1]``)."""
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise UserError(f"--listen {listen!r}: use HOST:PORT, e.g. 127.0.0.1:8080")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise UserError(
            f"--listen {listen!r}: the local load balancer serves this machine only;"
            " listen on a loopback address (127.0.0.1, ::1, localhost)"
        )
    return host, int(port)


@cli.command("lb")
@click.argument("job_id", type=JOB_ID)
@click.option(
    "--name", required=True, help="The job's load balancer local:NAME (in its load_balancers)."
)
@click.option(
    "--listen",
    default="127.0.0.1:8080",
    show_default=True,
    metavar="HOST:PORT",
    help="Loopback address to serve on; port 0 takes a free one (printed).",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Least severe log lines on stderr; INFO shows each change of the targets.",
)
@pass_context
def lb(ctx: Context, job_id: str, name: str, listen: str, log_level: str | None) -> None:
    """Serve a service job's tasks on a loopback address, as its load balancer local:NAME.

    Each request goes round-robin to the tasks registered in the group
    local:NAME (healthy, not draining: the job deregisters a task and waits
    before it stops it). Every second the requests per second per registered
    task go to the job as the metric requests_per_task, for its autoscaling
    policies. Runs until Ctrl-C or SIGTERM; requests in flight then finish.
    """
    address = parse_listen(listen)
    settings = process_settings(ctx.settings, None, log_level)

    def listening(host: str, port: int) -> None:
        click.echo(f"{job_id}: local:{name} on http://{host}:{port}/")
        sys.stdout.flush()

    async def go() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        client = await TitusClient.connect(settings)
        targets = JobTargets(client, job_id, name)
        await targets.check()
        sink = JobMetricReports(client, job_id)
        await run_local_lb(name, targets, sink, address, stop, listening)

    run_async(go())
