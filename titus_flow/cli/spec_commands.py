"""Commands that only read files: validate and schema."""

from __future__ import annotations

import json
from pathlib import Path

import click
import yaml

from titus_flow.cli.app import cli, echo_json, output_option
from titus_flow.errors import SpecError, UserError
from titus_flow.fleet.load import load_fleet
from titus_flow.loader import (
    SUPPORTED_SUFFIXES,
    holds_capacity_groups,
    is_plain_script,
    load_capacity_groups,
    load_many,
)
from titus_flow.spec.jobs import job_file_json_schema
from titus_flow.userflows import import_module, workflow_name, workflows_of


def _expand(paths: tuple[Path, ...]) -> list[tuple[Path, bool]]:
    """Files to check, each with whether it was found in a folder (rather than named)."""
    files: list[tuple[Path, bool]] = []
    for path in paths:
        if path.is_dir():
            files += sorted(
                (p, True) for p in path.rglob("*") if p.suffix in SUPPORTED_SUFFIXES and p.is_file()
            )
        else:
            files.append((path, False))
    return files


def _is_fleet_file(path: Path) -> bool:
    """A YAML/JSON mapping with instance types describes a fleet, not jobs."""
    if path.suffix not in (".yaml", ".yml", ".json") or not path.is_file():
        return False
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return False  # the job loader reports the syntax error with its line
    return isinstance(data, dict) and "instance_types" in data


def _workflow_names(path: Path) -> list[str]:
    """User workflows defined in a .py file that holds no jobs."""
    if path.suffix != ".py":
        return []
    try:
        return [workflow_name(cls) for cls in workflows_of(import_module(path))]
    except UserError:
        return []


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@output_option
def validate(paths: tuple[Path, ...], output: str) -> None:
    """Check job and capacity group files (.py, .yaml, .json), fleet files, workflow modules.

    Folders are searched for such files; a Python file found there that
    defines none of them (a helper, a tool) is listed as skipped, while one
    named on its own is an error. Every error is printed with its field path;
    the exit code is 2 if any file is invalid.
    """
    checked: list[dict[str, str]] = []
    job_files: list[Path] = []
    errors: list[str] = []
    for path, in_folder in _expand(paths):
        if _is_fleet_file(path):
            try:
                checked.append({"kind": "fleet", "name": load_fleet(path).name})
            except UserError as err:
                errors += err.messages
        elif holds_capacity_groups(path):
            try:
                groups = load_capacity_groups(path)
                checked += [{"kind": "capacity-group", "name": g.name} for g in groups]
            except UserError as err:
                errors += err.messages
        elif names := _workflow_names(path):
            checked += [{"kind": "workflow", "name": name} for name in names]
        elif in_folder and is_plain_script(path):
            # A helper or a tool beside the job files; named on its own it would be an error.
            checked.append({"kind": "skipped", "name": f"{path} (no jobs or workflows)"})
        else:
            job_files.append(path)
    try:
        jobs = load_many(job_files)
        checked += [{"kind": j.kind, "name": j.name} for j in jobs]
    except SpecError as err:
        errors += err.messages
    if output == "json":
        echo_json({"valid": not errors, "checked": checked, "errors": errors})
    else:
        for item in checked:
            status = "--" if item["kind"] == "skipped" else "ok"
            click.echo(f"{status}  {item['kind']:<8} {item['name']}")
    if errors:
        if output == "json":
            raise click.exceptions.Exit(2)
        raise SpecError(errors)


@cli.command()
def schema() -> None:
    """Print the JSON Schema of a job file (one job, a list, or {jobs: [...]})."""
    click.echo(json.dumps(job_file_json_schema(), indent=2))
