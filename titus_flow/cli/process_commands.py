"""Long-running processes: the control worker and the agent."""

from __future__ import annotations

import asyncio
import logging
import socket

import click
from temporalio.client import Client

from titus_flow.agent import (
    DEFAULT_AGENT_NETWORK_MBPS,
    AgentConfig,
    host_resources,
    retry_pause,
    run_agent,
)
from titus_flow.cli.app import Context, cli, install_stop_signals, pass_context, run_async
from titus_flow.cli.process_options import process_options, process_settings
from titus_flow.client import connect
from titus_flow.config import Settings
from titus_flow.errors import ServerUnreachableError, UserError
from titus_flow.hollow import DEFAULT_ZONES, HOLLOW_RESOURCES, HollowFleet, run_hollow_agents
from titus_flow.spec import Resources, parse_mebibytes
from titus_flow.spot import IMDS_URL
from titus_flow.telemetry import process_runtime

log = logging.getLogger(__name__)


async def _connect_when_up(settings: Settings, stop: asyncio.Event, role: str) -> Client:
    """Connect, waiting up to ``server_wait_seconds`` for a server that is not up yet.

    A worker or agent is a daemon: started beside its server, or again while the
    server restarts, it waits for it (logging each try) rather than exit at once.
    It connects with the process's runtime (:func:`~titus_flow.telemetry.process_runtime`),
    which logs the core's warnings (the CLI's default one does not) and serves
    ``/metrics`` when ``settings.metrics_address`` is set.
    """
    runtime = process_runtime(settings.metrics_address, role)
    if settings.metrics_address:
        log.info("%s serves metrics on http://%s/metrics", role, settings.metrics_address)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.server_wait_seconds
    delay = 1.0
    while True:
        try:
            return await connect(settings, runtime=runtime)
        except ServerUnreachableError as err:
            if stop.is_set() or loop.time() + delay > deadline:
                raise
            log.warning("%s; trying again in %gs", err, delay)
        delay = await retry_pause(stop, delay)


@cli.command()
@click.option(
    "--workflows",
    "workflow_refs",
    multiple=True,
    metavar="PATH",
    help="A .py file, folder or module of your own @workflow.defn classes (repeatable).",
)
@process_options
@pass_context
def worker(
    ctx: Context, workflow_refs: tuple[str, ...], metrics_address: str | None, log_level: str | None
) -> None:
    """Run a control worker: the job, scheduler and log workflows, plus your own.

    Activities defined in the --workflows files (e.g. a canary check) are
    registered too.
    """
    from titus_flow.userflows import load_activities, load_workflows, workflow_name
    from titus_flow.worker import CONTROL_WORKFLOWS, run_control_worker

    settings = process_settings(ctx.settings, metrics_address, log_level)
    # Loaded before connecting, so a bad file fails fast with exit 2.
    extra = load_workflows(workflow_refs, reserved=map(workflow_name, CONTROL_WORKFLOWS))
    activities = load_activities(workflow_refs)

    async def go() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        client = await _connect_when_up(settings, stop, "worker")
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
    help="Agent id; its task queue is titus-agent-<id>. With --hollow: the ids' prefix.",
)
@click.option("--cpu", type=float, help="Cores to offer [default: this host's; --hollow: 16 each].")
@click.option(
    "--memory", help='Memory to offer, e.g. "8Gi" [default: this host\'s; --hollow: 64Gi each].'
)
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
@click.option(
    "--allow-host-network",
    is_flag=True,
    default=False,
    help=(
        "Let tasks ask for network: host (the host's network: its loopback, the"
        " Temporal server and the instance metadata service included). Off: only"
        " bridge and none."
    ),
)
@click.option(
    "--allow-host-path",
    "allow_host_paths",
    multiple=True,
    metavar="PREFIX",
    help=(
        "Let tasks mount host_path volumes under this absolute directory (repeatable;"
        " symlinks are resolved first; adds to setting allowed_host_paths). None by default."
    ),
)
@click.option(
    "--publish-address",
    help="Host address to publish tasks' named ports on [default: setting publish_address,"
    " 127.0.0.1].",
)
@click.option(
    "--log-bucket",
    help="S3 bucket to upload each ended attempt's log to [default: setting log_bucket;"
    " unset: logs stay on this host]. AWS credentials and endpoint: boto3's standard chain.",
)
@click.option(
    "--log-prefix",
    help="Key prefix in --log-bucket [default: setting log_prefix, titus-flow].",
)
@click.option(
    "--hollow",
    type=click.IntRange(min=1),
    metavar="N",
    help=(
        "Run N simulated agents in this process instead (ids <id>-0001...), each with"
        " --cpu/--memory and a zone attribute from --zones; their tasks only pretend to"
        " run (the sim driver). A test and benchmark tool: it never proves that real"
        " containers work."
    ),
)
@click.option(
    "--zones",
    default=",".join(DEFAULT_ZONES),
    show_default=True,
    help="With --hollow: zones spread round-robin over the agents (attribute zone).",
)
@process_options
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
    allow_host_network: bool,
    allow_host_paths: tuple[str, ...],
    publish_address: str | None,
    log_bucket: str | None,
    log_prefix: str | None,
    hollow: int | None,
    zones: str,
    metrics_address: str | None,
    log_level: str | None,
) -> None:
    """Run an agent: registers this host's capacity and runs the tasks placed on it.

    With --hollow N, run N simulated agents for tests and benchmarks instead.
    """
    settings = process_settings(ctx.settings, metrics_address, log_level)
    if publish_address:
        settings = settings.model_copy(update={"publish_address": publish_address})
    if log_bucket or log_prefix:
        settings = settings.with_task_logs(log_bucket, log_prefix)
    defaults = HOLLOW_RESOURCES if hollow else host_resources()
    try:
        resources = Resources(
            cpu=cpu or defaults.cpu,
            memory=parse_mebibytes(memory) if memory else defaults.memory,
            disk=parse_mebibytes(disk),
            network_mbps=network_mbps,
        )
        for prefix in allow_host_paths:
            if not prefix.startswith("/"):
                raise ValueError(f"--allow-host-path {prefix!r}: give an absolute path")
        low, _, high = ports.partition("-")
        port_range = (int(low), int(high))
    except ValueError as err:
        raise UserError(f"agent options: {err}") from err
    if hollow:
        fleet = HollowFleet(
            count=hollow,
            prefix=agent_id,
            resources=resources,
            zones=tuple(z for z in zones.split(",") if z),
            attributes=_attributes(attributes),
            port_range=port_range,
        )

        async def go_hollow() -> None:
            stop = asyncio.Event()
            install_stop_signals(stop)
            client = await _connect_when_up(settings, stop, "hollow")
            await run_hollow_agents(client, settings, fleet, stop)

        run_async(go_hollow())
        return
    config = AgentConfig(
        agent_id=agent_id,
        resources=resources,
        attributes=_attributes(attributes),
        driver=driver,
        port_range=port_range,
        spot_notice_url=imds_url.rstrip("/") if spot_notices else None,
        allow_host_network=allow_host_network,
        allowed_host_paths=allow_host_paths,
    )

    async def go() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        client = await _connect_when_up(settings, stop, "agent")
        await run_agent(client, settings, config, stop)

    run_async(go())
