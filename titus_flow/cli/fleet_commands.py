"""``titus-flow fleet ...``: EC2 agent pools that grow and shrink with demand."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from titus_flow.cli.app import Context, cli, echo_json, output_option, pass_context, run_async
from titus_flow.client import connect, update_id
from titus_flow.cluster import fleet_workflow_id
from titus_flow.config import Settings
from titus_flow.errors import ClusterError, UserError
from titus_flow.fleet import FleetSpec, load_fleet
from titus_flow.fleet.secrets import SecretFetchError, fetch_secret, write_private
from titus_flow.fleet.userdata import user_data
from titus_flow.refs import update_name
from titus_flow.workflows.fleet import FleetWorkflow
from titus_flow.workflows.fleet_state import Bounds, FleetInput, FleetStatus


@cli.group()
def fleet() -> None:
    """EC2 agent fleets: apply, status, scale, delete, user-data, fetch-secret."""


def _handle(
    client: Client, settings: Settings, name: str
) -> WorkflowHandle[FleetWorkflow, FleetStatus]:
    # Declared: mypy infers get_workflow_handle_for's generics only from a declared type.
    workflow_id = fleet_workflow_id(settings.control_task_queue, name)
    return client.get_workflow_handle_for(FleetWorkflow.run, workflow_id)


async def _running(handle: WorkflowHandle[Any, Any]) -> bool:
    try:
        return (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise


async def _running_handle(
    settings: Settings, name: str
) -> WorkflowHandle[FleetWorkflow, FleetStatus]:
    handle = _handle(await connect(settings), settings, name)
    if not await _running(handle):
        raise UserError(f"no running fleet {name!r} (start it with `titus-flow fleet apply FILE`)")
    return handle


def _check_queue(spec: FleetSpec, settings: Settings) -> None:
    if spec.temporal.control_task_queue != settings.control_task_queue:
        raise UserError(
            f"temporal.control_task_queue {spec.temporal.control_task_queue!r} differs from this"
            f" cluster's {settings.control_task_queue!r}: the agents would join another"
            " scheduler; make them equal"
        )


@fleet.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--scheduler-drain/--no-scheduler-drain",
    default=True,
    show_default=True,
    help="Drain agents through the scheduler before terminating their instances, and"
    " remove the agents of terminated instances from it at once (else they go lost"
    " after the scheduler's silence timeout).",
)
@output_option
@pass_context
def apply(ctx: Context, file: Path, scheduler_drain: bool, output: str) -> None:
    """Validate the fleet in FILE, then start it or update the running one."""
    spec = load_fleet(file)
    settings = ctx.settings
    _check_queue(spec, settings)

    async def go() -> tuple[str, FleetStatus | None]:
        client = await connect(settings)
        handle = _handle(client, settings, spec.name)
        if await _running(handle):
            try:
                status = await handle.execute_update(
                    FleetWorkflow.apply,
                    spec,
                    id=update_id(handle.id, update_name(FleetWorkflow.apply), [spec]),
                )
            except WorkflowUpdateFailedError as err:
                raise UserError(f"fleet {spec.name}: {err.cause or err}") from err
            return "updated", status
        await client.start_workflow(
            FleetWorkflow.run,
            FleetInput(spec=spec, scheduler_signals=scheduler_drain),
            id=handle.id,
            task_queue=settings.control_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=f"titus-flow fleet {spec.name}",
        )
        return "started", None

    action, _ = run_async(go())
    if output == "json":
        echo_json({"fleet": spec.name, "action": action})
    else:
        click.echo(f"fleet {spec.name} {action} (min {spec.min}, max {spec.max})")


def _print_status(status: FleetStatus) -> None:
    state = "deleting" if status.deleting else "active"
    click.echo(f"fleet {status.name}: {state}, min {status.min}, max {status.max}")
    header = f"{'INSTANCE':<22} {'STATE':<14} {'TYPE':<12} {'ZONE':<12} {'MARKET':<10} TASKS"
    click.echo(header)
    for i in status.instances:
        shown = i.state + (f"/{i.leaving}" if i.leaving else "")
        agent = "-" if i.agent_id is None else str(i.task_count)
        click.echo(
            f"{i.instance_id:<22} {shown:<14} {i.instance_type:<12} {i.zone:<12}"
            f" {i.market:<10} {agent}"
        )
    for key, why in sorted(status.unfit.items()):
        click.echo(f"unserved {key}: {why}")


@fleet.command()
@click.argument("name")
@output_option
@pass_context
def status(ctx: Context, name: str, output: str) -> None:
    """Instances of fleet NAME with state, type, zone, agent and tasks."""

    async def go() -> FleetStatus:
        handle = await _running_handle(ctx.settings, name)
        return await handle.query(FleetWorkflow.status)

    result = run_async(go())
    if output == "json":
        echo_json(result.model_dump(mode="json"))
    else:
        _print_status(result)


@fleet.command()
@click.argument("name")
@click.option("--min", "min_", type=click.IntRange(min=0), required=True, help="Fewest instances.")
@click.option("--max", "max_", type=click.IntRange(min=0), required=True, help="Most instances.")
@output_option
@pass_context
def scale(ctx: Context, name: str, min_: int, max_: int, output: str) -> None:
    """Set the size bounds of fleet NAME."""
    if min_ > max_:
        raise UserError(f"--min {min_} is above --max {max_}: lower --min or raise --max")

    async def go() -> FleetStatus:
        handle = await _running_handle(ctx.settings, name)
        try:
            bounds = Bounds(min=min_, max=max_)
            result = await handle.execute_update(
                FleetWorkflow.scale,
                bounds,
                id=update_id(handle.id, update_name(FleetWorkflow.scale), [bounds]),
            )
        except WorkflowUpdateFailedError as err:
            raise UserError(f"fleet {name}: {err.cause or err}") from err
        return result

    result = run_async(go())
    if output == "json":
        echo_json(result.model_dump(mode="json"))
    else:
        click.echo(f"fleet {name}: min {result.min}, max {result.max}")


@fleet.command()
@click.argument("name")
@click.option("--timeout", type=float, default=600, show_default=True, help="Seconds to wait.")
@click.option("--no-wait", is_flag=True, help="Return once the delete is requested.")
@pass_context
def delete(ctx: Context, name: str, timeout: float, no_wait: bool) -> None:
    """Drain and terminate every instance of fleet NAME, then end the fleet.

    Exit 1 if the instances are not all gone within --timeout.
    """

    async def go() -> bool:
        handle = await _running_handle(ctx.settings, name)
        await handle.signal(FleetWorkflow.delete)
        if no_wait:
            return True
        try:
            await asyncio.wait_for(handle.result(), timeout)
        except TimeoutError:
            return False
        return True

    if not run_async(go()):
        click.echo(f"fleet {name}: still deleting after {timeout:g}s", err=True)
        raise click.exceptions.Exit(1)
    click.echo(f"fleet {name}: {'deleting' if no_wait else 'deleted'}")


@fleet.command("user-data")
@click.argument("file_or_name")
@pass_context
def user_data_command(ctx: Context, file_or_name: str) -> None:
    """Print the instance bootstrap script of a fleet file (or of a running fleet)."""
    path = Path(file_or_name)
    if path.exists() or path.suffix in (".yaml", ".yml", ".json"):
        spec = load_fleet(path)
    else:

        async def go() -> FleetSpec:
            handle = await _running_handle(ctx.settings, file_or_name)
            return await handle.query(FleetWorkflow.current_spec)

        spec = run_async(go())
    try:
        script = user_data(spec)
    except ValueError as err:
        raise UserError(str(err)) from err
    click.echo(script, nl=False)


@fleet.command("fetch-secret")
@click.option("--region", required=True, help="AWS region of the secret.")
@click.option("--endpoint-url", help="AWS-compatible endpoint (tests).")
@click.argument("secret_id")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def fetch_secret_command(region: str, endpoint_url: str | None, secret_id: str, path: Path) -> None:
    """Write a Secrets Manager secret's value to PATH, readable by its owner only.

    Run by a fleet instance's boot script for the credentials its fleet spec names
    (instance role credentials); the value is never printed.
    """
    try:
        value = fetch_secret(secret_id, region, endpoint_url)
    except SecretFetchError as err:
        raise ClusterError(str(err)) from err
    write_private(path, value)
    click.echo(f"wrote secret {secret_id} to {path}", err=True)
