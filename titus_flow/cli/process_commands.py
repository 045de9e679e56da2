"""Long-running processes: the control worker and the agent."""

from __future__ import annotations

import asyncio
import socket

import click
from temporalio.runtime import Runtime, TelemetryConfig

from titus_flow.agent import DEFAULT_AGENT_NETWORK_MBPS, AgentConfig, host_resources, run_agent
from titus_flow.cli.app import Context, cli, install_stop_signals, pass_context, run_async
from titus_flow.client import connect
from titus_flow.errors import UserError
from titus_flow.spec import Resources, parse_mebibytes
from titus_flow.spot import IMDS_URL


def _logging_runtime() -> Runtime:
    """A Temporal runtime that logs the core's warnings (the CLI's default one does not).

    A long-running process keeps going through a lost server, and its log
    should show the retries.
    """
    return Runtime(telemetry=TelemetryConfig())


@cli.command()
@click.option(
    "--workflows",
    "workflow_refs",
    multiple=True,
    metavar="PATH",
    help="A .py file, folder or module of your own @workflow.defn classes (repeatable).",
)
@pass_context
def worker(ctx: Context, workflow_refs: tuple[str, ...]) -> None:
    """Run a control worker: the job, scheduler and log workflows, plus your own.

    Activities defined in the --workflows files (e.g. a canary check) are
    registered too.
    """
    from titus_flow.userflows import load_activities, load_workflows, workflow_name
    from titus_flow.worker import CONTROL_WORKFLOWS, run_control_worker

    settings = ctx.settings
    # Loaded before connecting, so a bad file fails fast with exit 2.
    extra = load_workflows(workflow_refs, reserved=map(workflow_name, CONTROL_WORKFLOWS))
    activities = load_activities(workflow_refs)

    async def go() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        client = await connect(settings, runtime=_logging_runtime())
        await run_control_worker(client, settings, stop, extra, activities)

    run_async(go())


def _attributes(pairs: tuple[str, ...]) -> dict[str, str]:
    attributes = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--attribute {pair!r}: use KEY=VALUE, e.g. zone=us-east-1a")
        attributes[key] = value
    return attributes


@cli.command()
@click.option(
    "--id",
    "agent_id",
    default=socket.gethostname,
    show_default="hostname",
    help="Agent id; its task queue is titus-agent-<id>.",
)
@click.option("--cpu", type=float, help="Cores to offer [default: this host's].")
@click.option("--memory", help='Memory to offer, e.g. "8Gi" [default: this host\'s].')
@click.option("--disk", default="100Gi", show_default=True, help="Disk to offer.")
@click.option(
    "--network-mbps",
    type=int,
    default=DEFAULT_AGENT_NETWORK_MBPS,
    show_default=True,
    help="Network bandwidth to offer, in Mbit/s.",
)
@click.option(
    "--attribute",
    "attributes",
    multiple=True,
    metavar="KEY=VALUE",
    help="Agent attribute for constraints (repeatable), e.g. zone=us-east-1a.",
)
@click.option(
    "--driver",
    type=click.Choice(["docker", "process"]),
    default="docker",
    show_default=True,
    help="How tasks run: Docker containers or local processes.",
)
@click.option(
    "--ports",
    default="20000-29999",
    show_default=True,
    help="Host port range for tasks' named ports.",
)
@click.option(
    "--spot-notices/--no-spot-notices",
    default=False,
    show_default=True,
    help="Watch EC2's instance metadata for a spot interruption notice and drain on one.",
)
@click.option(
    "--imds-url",
    default=IMDS_URL,
    show_default=True,
    help="The instance metadata service (for --spot-notices).",
)
@pass_context
def agent(
    ctx: Context,
    agent_id: str,
    cpu: float | None,
    memory: str | None,
    disk: str,
    network_mbps: int,
    attributes: tuple[str, ...],
    driver: str,
    ports: str,
    spot_notices: bool,
    imds_url: str,
) -> None:
    """Run an agent: registers this host's capacity and runs the tasks placed on it."""
    settings = ctx.settings
    defaults = host_resources()
    try:
        resources = Resources(
            cpu=cpu or defaults.cpu,
            memory=parse_mebibytes(memory) if memory else defaults.memory,
            disk=parse_mebibytes(disk),
            network_mbps=network_mbps,
        )
        low, _, high = ports.partition("-")
        port_range = (int(low), int(high))
    except ValueError as err:
        raise UserError(f"agent options: {err}") from err
    config = AgentConfig(
        agent_id=agent_id,
        resources=resources,
        attributes=_attributes(attributes),
        driver=driver,
        port_range=port_range,
        spot_notice_url=imds_url.rstrip("/") if spot_notices else None,
    )

    async def go() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        await run_agent(await connect(settings, runtime=_logging_runtime()), settings, config, stop)

    run_async(go())
