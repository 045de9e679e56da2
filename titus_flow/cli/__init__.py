"""The ``titus-flow`` command line: a thin shell over :mod:`titus_flow.client`.

Exit codes: 0 success, 1 the job or check failed, 2 bad input or usage.
"""

from __future__ import annotations

import os
import sys

import click

from titus_flow import __version__
from titus_flow.cli.app import EXIT_USAGE, cli
from titus_flow.errors import UserError


def _register_commands() -> None:
    # Imported for their side effect of adding commands to `cli`.
    from titus_flow.cli import (  # noqa: F401
        agent_commands,
        capacity_commands,
        fleet_commands,
        flow_commands,
        job_commands,
        process_commands,
        spec_commands,
        stack_commands,
    )


def main() -> None:
    """Console-script entry point.

    Ends the process with ``os._exit`` after flushing: a process that used the
    Temporal client can otherwise abort at interpreter exit (sdk-python #300)
    and turn a meaningful exit code into 134.
    """
    _register_commands()
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
        for line in err.messages:
            click.echo(f"error: {line}", err=True)
        code = EXIT_USAGE
    except KeyboardInterrupt:
        code = 130
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


__all__ = ["__version__", "cli", "main"]
