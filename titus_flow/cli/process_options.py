"""Options every long-running process shares: where metrics are served, how much it logs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from titus_flow.config import Settings
from titus_flow.logs_json import configure_logging
from titus_flow.telemetry import METRICS_ADDRESS_HELP, check_metrics_address

F = TypeVar("F", bound=Callable[..., Any])


def process_options(command: F) -> F:
    """Add ``--metrics-address`` and ``--log-level`` to a process command."""
    command = click.option(
        "--log-level",
        type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
        help="Least severe JSON log lines written to stderr [default: setting log_level,"
        " env TITUS_FLOW_LOG_LEVEL, WARNING].",
    )(command)
    return click.option("--metrics-address", metavar="HOST:PORT", help=METRICS_ADDRESS_HELP)(
        command
    )


def process_settings(
    settings: Settings, metrics_address: str | None, log_level: str | None
) -> Settings:
    """``settings`` with the process options applied (and logging set to the level)."""
    if metrics_address is not None:
        check_metrics_address(metrics_address)
        settings = settings.model_copy(update={"metrics_address": metrics_address})
    if log_level is not None:
        settings = settings.model_copy(update={"log_level": log_level.upper()})
        configure_logging(settings.log_level)
    return settings
