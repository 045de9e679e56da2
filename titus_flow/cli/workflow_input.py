"""The argument of a user's workflow on the command line: --input JSON or --input-file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from titus_flow.errors import UserError


def workflow_input(input_json: str | None, input_file: Path | None) -> list[Any]:
    """The workflow's arguments: none, or the one JSON value given."""
    if input_json is not None and input_file is not None:
        raise UserError("give --input or --input-file, not both")
    if input_file is not None:
        try:
            input_json = input_file.read_text()
        except OSError as err:
            raise UserError(f"--input-file {input_file}: {err.strerror or err}") from err
    if input_json is None:
        return []
    try:
        return [json.loads(input_json)]
    except json.JSONDecodeError as err:
        raise UserError(f"--input: not valid JSON: {err}") from err


_OPTIONS = [
    click.option("--input", "input_json", metavar="JSON", help="The workflow's argument as JSON."),
    click.option(
        "--input-file",
        type=click.Path(path_type=Path, dir_okay=False),
        help="Read the workflow's argument (JSON) from this file.",
    ),
]


def with_input_options(f: Any) -> Any:
    """Add --input and --input-file to a command."""
    for option in reversed(_OPTIONS):
        f = option(f)
    return f
