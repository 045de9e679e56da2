"""`titus-flow start`: start a user's workflow on the cluster."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from temporalio.client import WorkflowFailureError

from titus_flow.cli.app import (
    EXIT_FAILED,
    EXIT_OK,
    Context,
    cli,
    echo_json,
    output_option,
    pass_context,
    run_async,
)
from titus_flow.cli.workflow_input import with_input_options, workflow_input
from titus_flow.client import TitusClient
from titus_flow.userflows import check_workflow_input, find_workflow, workflow_name

_err = Console(stderr=True, soft_wrap=True)  # messages stay whole lines for grep


@cli.command()
@click.argument("target", metavar="PATH:WORKFLOW")
@with_input_options
@click.option("--id", "workflow_id", help="Workflow id [default: <workflow name>-<random>].")
@click.option("--wait", is_flag=True, help="Wait for the result and print it.")
@output_option
@pass_context
def start(
    ctx: Context,
    target: str,
    input_json: str | None,
    input_file: Path | None,
    workflow_id: str | None,
    wait: bool,
    output: str,
) -> None:
    """Start your workflow PATH:WORKFLOW (a .py file or module, and a class) on the cluster.

    The worker must have loaded it (`titus-flow worker --workflows PATH`). The
    input is checked against the workflow's input type first: a bad one exits 2
    naming the field, and nothing is started. With --wait, exit 0 when it
    completed and 1 when it failed.

    Example: titus-flow start examples/pipeline.py:Pipeline --input '{"chunks": 4}' --wait
    """
    cls = find_workflow(target)
    name = workflow_name(cls)
    args = workflow_input(input_json, input_file)
    check_workflow_input(cls, args)  # bad input exits 2 here: nothing is started
    workflow_id = workflow_id or f"{name.lower()}-{secrets.token_hex(4)}"
    settings = ctx.settings

    async def go() -> int:
        client = await TitusClient.connect(settings)
        handle = await client.start_workflow(name, args, workflow_id)
        info: dict[str, Any] = {"workflow_id": handle.id, "run_id": handle.result_run_id}
        if output == "text":
            _err.print(f"started {name} as {handle.id}" + ("; waiting for it" if wait else ""))
        code = EXIT_OK
        if wait:
            try:
                info["result"] = await handle.result()
            except WorkflowFailureError as err:
                info["error"] = str(err.cause or err)
                code = EXIT_FAILED
        if output == "json":
            echo_json(info)
        elif "error" in info:
            _err.print(f"[red]{handle.id} failed: {info['error']}[/]", highlight=False)
        elif wait:
            click.echo(json.dumps(info["result"], indent=2, default=str))
        else:
            click.echo(handle.id)
        return code

    raise click.exceptions.Exit(run_async(go()))
