"""`titus-flow job scale / update / promote / rollback`: change a running service job."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import click

from titus_flow.cli.app import (
    EXIT_FAILED,
    EXIT_OK,
    JOB_ID,
    Context,
    echo_json,
    output_option,
    pass_context,
    run_async,
)
from titus_flow.cli.job_commands import job
from titus_flow.client import TitusClient
from titus_flow.errors import UserError
from titus_flow.lifecycle import RolloutPhase
from titus_flow.loader import load_jobs, select_job
from titus_flow.spec import ServiceJob


@job.command("scale")
@click.argument("job_id", type=JOB_ID)
@click.option("--desired", type=click.IntRange(min=0), help="Tasks to keep running.")
@click.option("--min", "min_", type=click.IntRange(min=0), help="Lower bound of desired.")
@click.option("--max", "max_", type=click.IntRange(min=0), help="Upper bound of desired.")
@output_option
@pass_context
def job_scale(
    ctx: Context,
    job_id: str,
    desired: int | None,
    min_: int | None,
    max_: int | None,
    output: str,
) -> None:
    """Scale a service job; surplus tasks go as its disruption budget allows."""
    if desired is None and min_ is None and max_ is None:
        raise click.UsageError("give at least one of --desired, --min, --max")

    async def go() -> dict[str, int]:
        client = await TitusClient.connect(ctx.settings)
        capacity = await client.scale(job_id, desired, min_, max_)
        return capacity.model_dump()

    capacity = run_async(go())
    if output == "json":
        echo_json(capacity)
    else:
        click.echo(
            f"{job_id}: min={capacity['min']} desired={capacity['desired']} max={capacity['max']}"
        )


@job.command("update")
@click.argument("job_id", type=JOB_ID)
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--job", "job_name", help="The job of this name in FILE (if it holds several).")
@click.option(
    "--canary",
    type=click.IntRange(min=1),
    help="Move only this many tasks to the new revision, then hold for promote/rollback.",
)
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the rollout.")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds to wait.")
@pass_context
def job_update(
    ctx: Context,
    job_id: str,
    file: Path,
    job_name: str | None,
    canary: int | None,
    wait: bool,
    timeout: float,
) -> None:
    """Roll out a new revision of a running service job from FILE.

    Tasks are replaced batch by batch within the job's max_surge and
    max_unavailable; new tasks that are not healthy in time roll it back.
    With --canary N only N tasks move; then `titus-flow job promote` or
    `titus-flow job rollback` ends the canary.
    """
    jobs = select_job(load_jobs(file), job_name)
    if len(jobs) != 1 or not isinstance(jobs[0], ServiceJob):
        raise UserError(f"{file}: name exactly one service job (use --job NAME)")
    spec = jobs[0]

    async def go(client: TitusClient) -> int:
        revision = await client.update_service(job_id, spec, canary=canary)
        what = f"a canary of {canary} task(s) on" if canary else "rolling out"
        click.echo(f"{job_id}: {what} revision {revision}")
        return revision

    _rollout_command(ctx, job_id, go, wait, timeout)


@job.command("promote")
@click.argument("job_id", type=JOB_ID)
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the rollout.")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds to wait.")
@pass_context
def job_promote(ctx: Context, job_id: str, wait: bool, timeout: float) -> None:
    """Roll a service job's canary revision out to every task."""

    async def go(client: TitusClient) -> int:
        revision = await client.promote(job_id)
        click.echo(f"{job_id}: promoting revision {revision}")
        return revision

    _rollout_command(ctx, job_id, go, wait, timeout)


@job.command("rollback")
@click.argument("job_id", type=JOB_ID)
@click.option("--reason", default="", help="Why, shown in the job's update status.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the rollout.")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds to wait.")
@pass_context
def job_rollback(ctx: Context, job_id: str, reason: str, wait: bool, timeout: float) -> None:
    """Return a service job (a canary or a rolling update) to its previous revision."""

    async def go(client: TitusClient) -> int:
        revision = await client.rollback(job_id, reason)
        click.echo(f"{job_id}: rolling back to revision {revision}")
        return revision

    _rollout_command(ctx, job_id, go, wait, timeout)


def _rollout_command(
    ctx: Context,
    job_id: str,
    start: Callable[[TitusClient], Awaitable[int]],
    wait: bool,
    timeout: float,
) -> None:
    """Run ``start``, then (with ``wait``) follow the rollout until it settles.

    Exits 0 once rolled out, a canary holds healthy, or a requested rollback
    is healthy again; 1 if the update rolled back on its own or timed out.
    """

    async def go() -> int:
        client = await TitusClient.connect(ctx.settings)
        revision = await start(client)
        if not wait:
            return EXIT_OK
        try:
            view = await client.wait_rollout(job_id, timeout)
            if view.service is not None and view.service.rollout is RolloutPhase.ROLLED_BACK:
                # A rollback the user asked for succeeds once the job is healthy again.
                view = await client.wait_healthy(job_id, timeout, revision=view.service.revision)
        except TimeoutError as err:
            click.echo(f"{job_id}: {err}", err=True)
            return EXIT_FAILED
        status = view.service
        assert status is not None
        click.echo(f"{job_id}: {status.update or view.state.value}")
        rolled_back_on_its_own = (
            status.rollout is RolloutPhase.ROLLED_BACK and status.revision != revision
        )
        return EXIT_FAILED if rolled_back_on_its_own or view.state.is_final else EXIT_OK

    raise click.exceptions.Exit(run_async(go()))
