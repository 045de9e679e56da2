"""The ``titus-flow`` command line: a thin shell over :mod:`titus_flow.client`.

Exit codes: 0 success, 1 the job or check failed, or the cluster failed (Temporal
cannot be reached or was lost), 2 bad input or usage.
"""

from __future__ import annotations

import os
import sys
import traceback

import click
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

from titus_flow import __version__
from titus_flow.cli.app import EXIT_FAILED, EXIT_USAGE, cli
from titus_flow.errors import ClusterError, UserError


def _register_commands() -> None:
    # Imported for their side effect of adding commands to `cli`.
    from titus_flow.cli import (  # noqa: F401
        agent_commands,
        autoscaling_commands,
        capacity_commands,
        codec_commands,
        event_commands,
        fleet_commands,
        job_commands,
        lb_command,
        load_balancer_commands,
        migrate_commands,
        process_commands,
        replay_command,
        run_command,
        schedule_commands,
        service_commands,
        spec_commands,
        stack_commands,
        start_command,
        task_commands,
    )


def _quiet_temporal_core() -> None:
    """Keep the Temporal core from printing its own warnings (each retried call) on stderr.

    A command reports a failure itself, in one line. The long-running worker and
    agent connect with a runtime of their own that logs as usual.
    """
    quiet = LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))
    runtime = Runtime(telemetry=TelemetryConfig(logging=quiet), worker_heartbeat_interval=None)
    Runtime.set_default(runtime, error_if_already_set=False)


def _report(lines: list[str], err: BaseException) -> None:
    """Print ``lines`` as errors, then the notes added to ``err`` (e.g. what was undone)."""
    for line in lines:
        click.echo(f"error: {line}", err=True)
    for note in getattr(err, "__notes__", ()):
        click.echo(f"note: {note}", err=True)


def main() -> None:
    """Console-script entry point.

    Ends the process with ``os._exit`` after flushing: a process that used the
    Temporal client can otherwise abort at interpreter exit (sdk-python #300)
    and turn a meaningful exit code into 134. Bad input exits 2 and a failure of
    the cluster 1, each as one line; only a bug prints a traceback (exit 1).
    """
    _register_commands()
    _quiet_temporal_core()
    code = 0
    try:
        code = cli.main(prog_name="titus-flow", standalone_mode=False) or 0
    except click.exceptions.Exit as exit_:
        code = exit_.exit_code
    except click.ClickException as err:
        err.show()
        code = err.exit_code
    except click.Abort:
        click.echo("Aborted.", err=True)
        code = 130
    except UserError as err:
        _report(err.messages, err)
        code = EXIT_USAGE
    except ClusterError as err:
        _report([str(err)], err)
        code = EXIT_FAILED
    except KeyboardInterrupt:
        code = 130
    except Exception:
        traceback.print_exc()  # a bug: its traceback is what a report needs
        code = EXIT_FAILED
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


__all__ = ["__version__", "cli", "main"]
