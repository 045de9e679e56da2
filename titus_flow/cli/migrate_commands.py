"""`titus-flow import` and `titus-flow export`: job definitions in from, and out to, others.

Titus, AWS Batch and Kubernetes; see docs/migrating.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, BinaryIO

import click
import yaml

from titus_flow.cli.app import Context, cli, pass_context, run_async
from titus_flow.client import TitusClient
from titus_flow.client.job_specs import job_spec
from titus_flow.errors import UserError
from titus_flow.loader import SUPPORTED_SUFFIXES, AnyJob, load_jobs, select_job
from titus_flow.migrate import (
    MAX_INPUT_BYTES,
    SOURCES,
    Dropped,
    MigrateInputError,
    export_job,
    import_definition,
)
from titus_flow.migrate.render import render_python, render_yaml

_SOURCE_NAMES = list(SOURCES)


def _read_limited(stream: BinaryIO) -> bytes:
    # One byte past the limit is enough to refuse: a huge input is never read whole.
    return stream.read(MAX_INPUT_BYTES + 1)


def _read_input(path: str) -> bytes:
    if path == "-":
        return _read_limited(sys.stdin.buffer)
    try:
        with open(path, "rb") as stream:
            return _read_limited(stream)
    except OSError as err:
        raise UserError(f"{path}: cannot read: {err.strerror or err}") from err


def _report(dropped: list[Dropped]) -> None:
    """Each field not carried, one line each on stderr."""
    for item in dropped:
        click.echo(f"dropped: {item.path}: {item.reason}", err=True)


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        click.echo(text, nl=not text.endswith("\n"))
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as err:
        raise UserError(f"{out}: cannot write: {err.strerror or err}") from err
    click.echo(f"wrote {out}", err=True)


@cli.command("import")
@click.argument("file", metavar="FILE")
@click.option(
    "--from",
    "source",
    type=click.Choice(_SOURCE_NAMES),
    help="The system FILE comes from (default: told from its shape).",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["yaml", "python", "json"]),
    default="yaml",
    show_default=True,
    help="Job file format; json prints {source, job, dropped} for scripts.",
)
@click.option(
    "--out", "out", type=click.Path(dir_okay=False, path_type=Path), help="Write here, not stdout."
)
def import_command(file: str, source: str | None, output: str, out: Path | None) -> None:
    """Translate a Titus, AWS Batch or Kubernetes definition in FILE to a job file.

    FILE is JSON or YAML ('-' for stdin), at most 1 MiB. The job file printed is
    one `titus-flow validate` accepts and `titus-flow run` runs. Every field that
    cannot be carried over is listed on stderr with the reason (and under
    "dropped" with -o json). Bad input exits 2 naming the field.
    """
    data = _read_input(file)
    try:
        imported = import_definition(data, source, label=f"{file} (imported)")
    except MigrateInputError as err:
        raise UserError(f"{file}: {err}") from err
    dropped = imported.dropped
    document = imported.translation.document
    if output == "json":
        result: dict[str, Any] = {
            "source": imported.source.name,
            "job": document,
            "dropped": [item.as_json() for item in dropped],
        }
        text = json.dumps(result, indent=2) + "\n"
    else:
        header = [
            f"Imported by titus-flow import from {imported.source.title}.",
            f"Fields not carried over: {len(dropped)} (listed by the import on stderr).",
        ]
        if output == "python":
            text = render_python(imported.job, document, header)
        else:
            text = render_yaml(document, header)
    _report(dropped)
    _emit(text, out)


def _job_to_export(ctx: Context, job_ref: str, job_name: str | None) -> AnyJob:
    """The job of a job file (a path ending .py/.yaml/.yml/.json), or of a job id."""
    path = Path(job_ref)
    if path.suffix in SUPPORTED_SUFFIXES and path.is_file():
        jobs = select_job(load_jobs(path), job_name)
        if len(jobs) != 1:
            names = ", ".join(job.name for job in jobs)
            raise UserError(f"{path} holds several jobs ({names}): choose one with --job NAME")
        return jobs[0]

    async def fetch() -> AnyJob:
        client = await TitusClient.connect(ctx.settings)
        return await job_spec(client.temporal, job_ref)

    return run_async(fetch())


@cli.command("export")
@click.argument("job_ref", metavar="JOB_ID|FILE")
@click.option("--to", "target", type=click.Choice(_SOURCE_NAMES), required=True)
@click.option("--job", "job_name", help="With a job FILE of several jobs: the one to export.")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["json", "yaml"]),
    help="Format (default: yaml for k8s, json otherwise).",
)
@click.option(
    "--out", "out", type=click.Path(dir_okay=False, path_type=Path), help="Write here, not stdout."
)
@pass_context
def export_command(
    ctx: Context,
    job_ref: str,
    target: str,
    job_name: str | None,
    output: str | None,
    out: Path | None,
) -> None:
    """Translate a job to a Titus, AWS Batch or Kubernetes definition.

    JOB_ID is a submitted job, running or finished (its spec is read from the
    cluster); a path to a job file exports offline. Every titus-flow field the
    target cannot express is listed on stderr with the reason.
    """
    job = _job_to_export(ctx, job_ref, job_name)
    try:
        translation = export_job(job, target)
    except MigrateInputError as err:
        raise UserError(f"{job_ref}: {err}") from err
    if (output or ("yaml" if target == "k8s" else "json")) == "yaml":
        text = yaml.safe_dump(translation.document, sort_keys=False, allow_unicode=True)
    else:
        text = json.dumps(translation.document, indent=2) + "\n"
    _report(translation.dropped)
    _emit(text, out)
