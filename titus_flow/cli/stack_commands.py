"""Commands that manage the embedded stack: up, down, status."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click
from rich.console import Console

from titus_flow import stack
from titus_flow.cli.app import EXIT_FAILED, Context, cli, echo_json, output_option, pass_context
from titus_flow.codec import codec_for
from titus_flow.config import Settings
from titus_flow.errors import UserError
from titus_flow.telemetry import check_metrics_address, free_loopback_address

# Components run as `python -m titus_flow ...` with the Python of this CLI, so they
# use the same installation whatever PATH the user's shell has.
_SELF = (sys.executable, "-m", "titus_flow")


def _codec_endpoint(settings: Settings) -> str | None:
    """The codec server `up` runs for the Web UI: only with a key ring configured."""
    if codec_for(settings) is None:
        return None
    return f"http://127.0.0.1:{settings.codec_port}"


def _metrics_flag(settings: Settings, name: str, first: str | None, offset: int) -> list[str]:
    """``--metrics-address`` for component ``name``.

    ``first``'s port + ``offset``; else the one it runs with (so a running
    component keeps its command line, and ``up`` leaves it alone); else a free one.
    """
    if first is not None:
        host, _, port = first.rpartition(":")
        address = f"{host}:{int(port) + offset}"
    else:
        address = stack.running_metrics_address(settings.home, name) or free_loopback_address()
    return [stack.METRICS_FLAG, address]


def _components(
    workflows: Sequence[Path], settings: Settings, metrics_address: str | None = None
) -> list[tuple[str, list[str]]]:
    """List the worker, local agent and codec server components this install runs.

    Each serves /metrics: from ``metrics_address`` on (worker, agent, codec server
    on consecutive ports), else on free loopback ports.
    """
    components: list[tuple[str, list[str]]] = []
    if _codec_endpoint(settings) is not None:
        # Without a token: the dev server's UI cannot send one. Loopback only.
        port = str(settings.codec_port)
        argv = [*_SELF, "codec-server", "--port", port]
        components.append(("codec", argv + _metrics_flag(settings, "codec", metrics_address, 2)))
    if "worker" in cli.commands:
        argv = [*_SELF, "worker"]
        for path in workflows:
            # Absolute, so the worker finds them whatever its cwd, and so the command
            # line (which decides whether `up` restarts the worker) is stable.
            argv += ["--workflows", str(path.resolve())]
        components.append(("worker", argv + _metrics_flag(settings, "worker", metrics_address, 0)))
    elif workflows:
        raise UserError("--workflows needs the `worker` command, which this version lacks")
    if "agent" in cli.commands:
        argv = [*_SELF, "agent", "--id", "local"]
        components.append(("agent", argv + _metrics_flag(settings, "agent", metrics_address, 1)))
    return components


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{n}{unit}" for n, unit in parts if n] or ["0s"]
    return " ".join(shown[:2])


def _echo_status(status: stack.StackStatus, actions: dict[str, stack.Action] | None) -> None:
    for proc in status.processes:
        state = (actions or {}).get(proc.name) or ("running" if proc.running else "stopped")
        pid = f"pid {proc.pid}" if proc.pid else ""
        click.echo(
            f"{proc.name:<10} {state:<10} {pid:<11} up {_duration(proc.uptime_seconds):<7}"
            f" log {proc.log_path}"
        )
    click.echo(f"Temporal   {status.address}  (namespace {status.namespace})")
    click.echo(f"Web UI     {status.ui_url}")
    served = [(p.name, p.metrics_url) for p in status.processes if p.metrics_url]
    for i, (name, url) in enumerate(served):
        click.echo(f"{'Metrics' if i == 0 else '':<10} {name:<7} {url}")
    click.echo(f"Logs       JSON lines, one file per process in {status.home / 'logs'}")


@cli.command("up")
@click.option(
    "--workflows",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="File or folder of your own workflows for the worker to load (repeatable).",
)
@click.option(
    "--metrics-address",
    metavar="HOST:PORT",
    help="Serve the worker's /metrics there, the agent's and codec server's on the next"
    " ports [default: free loopback ports; `status` shows them].",
)
@output_option
@pass_context
def up_command(
    ctx: Context, workflows: tuple[Path, ...], metrics_address: str | None, output: str
) -> None:
    """Start the local stack: Temporal dev server (with Web UI), worker and agent.

    Safe to run again: what already runs is left alone. State and logs live in the
    home directory (--home, default ~/.titus-flow).
    """
    settings = ctx.settings
    if metrics_address is not None:
        check_metrics_address(metrics_address)
    components = _components(workflows, settings, metrics_address)
    console = Console(stderr=True)
    try:
        with console.status("starting the stack") as spinner:
            actions = stack.up(
                settings,
                components,
                progress=spinner.update,
                ui_codec_endpoint=_codec_endpoint(settings),
            )
    except stack.StackError as err:
        raise click.ClickException(str(err)) from err
    status = stack.status(settings)
    if output == "json":
        echo_json({"actions": actions, **status.to_dict()})
        return
    _echo_status(status, actions)
    steps = [
        (f"open {status.ui_url}", "watch workflows in the Web UI"),
        ("titus-flow status", "what runs, with log files and metrics addresses"),
        ("titus-flow down", "stop the stack (state is kept)"),
    ]
    if "run" in cli.commands:  # advertise only commands this installation has
        steps.insert(0, ("titus-flow run examples/hello.yaml", "run a job"))
    width = max(len(command) for command, _ in steps)
    click.echo("\nNext steps:")
    for command, what in steps:
        click.echo(f"  {command:<{width}}   {what}")


@cli.command("down")
@pass_context
def down_command(ctx: Context) -> None:
    """Stop what `titus-flow up` started; the database and logs are kept."""
    console = Console(stderr=True)
    try:
        with console.status("stopping the stack") as spinner:
            stopped = stack.down(ctx.settings, progress=spinner.update)
    except stack.StackError as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")


@cli.command("status")
@output_option
@pass_context
def status_command(ctx: Context, output: str) -> None:
    """Show which parts of the local stack run; exit 1 unless all of them do."""
    settings = ctx.settings
    expected = [name for name, _ in _components((), settings)]
    status = stack.status(settings, expected=expected)
    if output == "json":
        echo_json(status.to_dict())
    else:
        _echo_status(status, None)
        if not stack.is_managed(settings):
            click.echo("(the address is not the local dev server; `up` manages only that)")
    if not status.running:
        raise click.exceptions.Exit(EXIT_FAILED)
