"""The root click group and the options every command shares."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click
from rich.console import Console
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import TemporalError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from titus_flow import __version__
from titus_flow.config import Settings, load_settings
from titus_flow.errors import (
    ClusterError,
    ServerUnreachableError,
    UserError,
    broken_connection,
    connection_reason,
)
from titus_flow.ids import check_id
from titus_flow.logs_json import configure_logging

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

F = TypeVar("F", bound=Callable[..., Any])


class JobIdType(click.ParamType[str, Any]):
    """A JOB_ID argument, checked before any call (exit 2 naming it, not a server error)."""

    name = "job_id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        """``value`` if it is a valid job id; a usage error otherwise."""
        try:
            return check_id(value)
        except UserError as err:
            self.fail(f"{err}; `titus-flow jobs list` lists the ids", param, ctx)


JOB_ID = JobIdType()


class Context:
    """What the root group resolves once for every command."""

    def __init__(self, overrides: dict[str, Any]) -> None:
        self._overrides = overrides
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        """Settings, resolved on first use (so `--help` never reads config)."""
        if self._settings is None:
            self._settings = load_settings(self._overrides)
            configure_logging(self._settings.log_level)
        return self._settings


pass_context = click.make_pass_decorator(Context)

output_option = click.option(
    "-o",
    "--output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Output format; json is for scripts.",
)


def stdout_console() -> Console:
    """A console for tables on stdout; wide when piped so ids are never cut."""
    console = Console()
    return console if console.is_terminal else Console(width=200)


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout."""
    click.echo(json.dumps(data, indent=2, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="titus-flow")
@click.option("--address", envvar=None, help="Temporal address host:port [env TITUS_FLOW_ADDRESS].")
@click.option("--namespace", help="Temporal namespace [env TITUS_FLOW_NAMESPACE].")
@click.option("--home", type=click.Path(file_okay=False), help="State dir [env TITUS_FLOW_HOME].")
@click.option("--tls-cert", "tls_cert_path", help="mTLS client cert [env TITUS_FLOW_TLS_CERT].")
@click.option("--tls-key", "tls_key_path", help="mTLS client key [env TITUS_FLOW_TLS_KEY].")
@click.option("--tls-ca", "tls_ca_path", help="Server CA file [env TITUS_FLOW_TLS_CA].")
@click.option("--api-key-file", help="File with the API key [env TITUS_FLOW_API_KEY_FILE].")
@click.pass_context
def cli(
    ctx: click.Context, /, address: str | None, namespace: str | None, **files: str | None
) -> None:
    """titus-flow: container batch and service jobs as code, driven durably by Temporal.

    Start the embedded stack with `titus-flow up`, then `titus-flow run examples/hello.yaml`.
    """
    ctx.obj = Context({"address": address, "namespace": namespace, **files})


T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from a synchronous click command.

    Every command reaches Temporal through here, so this is where its errors
    become one line for the user: a server that cannot be reached or was lost
    raises :class:`ServerUnreachableError`, anything else Temporal failed a
    :class:`ClusterError` (both exit 1), a workflow id already in use a
    :class:`UserError` (exit 2). Notes added to the error are kept.
    """
    try:
        return asyncio.run(coro)
    except TemporalError as err:
        explained = explain_temporal_error(err, _command_settings())
        for note in getattr(err, "__notes__", ()):
            explained.add_note(note)
        raise explained from err


# Statuses a call has when the connection under it broke.
_MAY_BE_CUT = (RPCStatusCode.UNAVAILABLE, RPCStatusCode.UNKNOWN, RPCStatusCode.CANCELLED)


def explain_temporal_error(err: TemporalError, settings: Settings) -> ClusterError | UserError:
    """What a failed call to Temporal at ``settings.address`` means, in one line."""
    address = settings.address
    if isinstance(err, RPCError):
        # The client had connected, so a call that cannot reach the server lost it: retried
        # calls end UNAVAILABLE, a long poll cut by the server's death UNKNOWN.
        broken = broken_connection(err.message) if err.status in _MAY_BE_CUT else None
        if broken or err.status is RPCStatusCode.UNAVAILABLE:
            reason = broken or connection_reason(err.message)
            lost = reason if reason == "connection lost" else f"connection lost, then {reason}"
            return ServerUnreachableError(address, lost, local=settings.is_embedded)
        if err.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
            return ClusterError(
                f"Temporal at {address} did not answer in time ({err.message}); a query also"
                " needs a running control worker: see `titus-flow status`"
            )
        return ClusterError(f"Temporal at {address} refused the call: {err.status.name}: {err}")
    if isinstance(err, WorkflowAlreadyStartedError):
        return UserError(f"workflow id {err.workflow_id!r} is already in use; choose another id")
    if isinstance(err, WorkflowFailureError):
        return ClusterError(f"the workflow failed: {err.cause or err}")
    return ClusterError(f"{type(err).__name__}: {err}")


def _command_settings() -> Settings:
    """The settings of the running command (outside a command, the environment's)."""
    ctx = click.get_current_context(silent=True)
    found = ctx.find_object(Context) if ctx is not None else None
    return found.settings if found is not None else load_settings()


def install_stop_signals(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGINT/SIGTERM so long-running commands shut down cleanly."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
