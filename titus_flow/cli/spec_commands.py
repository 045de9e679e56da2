"""Commands that only read job files: validate and schema."""

from __future__ import annotations

import json
from pathlib import Path

import click

from titus_flow.cli.app import cli, echo_json, output_option
from titus_flow.errors import SpecError
from titus_flow.loader import load_many
from titus_flow.spec.jobs import job_file_json_schema


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@output_option
def validate(files: tuple[Path, ...], output: str) -> None:
    """Check job files (.py, .yaml, .json); print every error with its field path."""
    try:
        jobs = load_many(list(files))
    except SpecError as err:
        if output == "json":
            echo_json({"valid": False, "errors": err.messages})
            raise click.exceptions.Exit(2) from err
        raise
    if output == "json":
        echo_json({"valid": True, "jobs": [{"name": j.name, "kind": j.kind} for j in jobs]})
    else:
        for job in jobs:
            click.echo(f"ok  {job.kind:<7} {job.name}")


@cli.command()
def schema() -> None:
    """Print the JSON Schema of a job file (one job, a list, or {jobs: [...]})."""
    click.echo(json.dumps(job_file_json_schema(), indent=2))
