"""Canary deploys: the canary example workflow and the CLI's --canary/promote/rollback.

Real dev server, worker (loading examples/canary.py with --workflows) and a
docker agent; the web servers answer on 127.0.0.1 host ports.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest
from titus_cluster import Cluster

from titus_flow.lifecycle import JobState, RolloutPhase, TaskState
from titus_flow.views import JobView

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="session")]

CANARY = str(Path(__file__).parents[2] / "examples" / "canary.py")


@pytest.fixture
def canary_cluster(cluster_factory: Callable[[], Cluster]) -> Cluster:
    """A cluster whose worker also runs examples/canary.py's workflows and check."""
    c = cluster_factory()
    c.start("worker", "worker", "--workflows", CANARY)
    c.start_agent("local", "--cpu", "2", "--memory", "2Gi")
    return c


async def start(cluster: Cluster, workflow: str, **request: object) -> str:
    """``titus-flow start examples/canary.py:WORKFLOW --wait``; its printed result."""
    result = await asyncio.to_thread(
        cluster.cli,
        "start",
        f"{CANARY}:{workflow}",
        "--input",
        json.dumps(request),
        "--wait",
        timeout=300,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{cluster.logs()}"
    return result.stdout


async def describe(cluster: Cluster, job_id: str) -> JobView:
    client = await cluster.client()
    return await client.describe(job_id)


def tasks_of(view: JobView) -> str:
    """One line per task, for failure messages."""
    return "\n".join(
        f"{t.id} rev={t.revision} {t.state} {t.reason} healthy={t.healthy} {t.message}"
        for t in view.tasks
    )


def assert_healthy_on(view: JobView, revision: int, desired: int = 3) -> None:
    """Every live task runs ``revision`` and ``desired`` of them are healthy."""
    assert view.service is not None
    assert view.service.revision == revision, view.service
    live = [t for t in view.tasks if t.state is not TaskState.FINISHED]
    assert {t.revision for t in live} == {revision}, [(t.id, t.revision) for t in live]
    assert view.healthy_tasks() == desired
    assert view.state is JobState.RUNNING


@pytest.mark.slow
async def test_canary_example_promotes_a_good_version_and_rolls_back_a_bad_one(
    canary_cluster: Cluster,
) -> None:
    job_id = f"web-{secrets.token_hex(3)}"
    out = await start(canary_cluster, "DeployWeb", job_id=job_id, version="v1")
    assert "3 healthy tasks of v1" in out

    out = await start(canary_cluster, "CanaryWeb", job_id=job_id, version="v2", hold_seconds=1)
    view = await describe(canary_cluster, job_id)
    assert "v2 promoted (revision 2)" in out, f"{out}\n{tasks_of(view)}"
    assert_healthy_on(view, revision=2)
    assert view.service is not None and view.service.rollout is RolloutPhase.ROLLED_OUT

    # v3 starts and passes its health check, but the canary check sees /status=error.
    out = await start(
        canary_cluster, "CanaryWeb", job_id=job_id, version="v3", broken=True, hold_seconds=1
    )
    view = await describe(canary_cluster, job_id)
    assert "v3 rolled back (revision 2): canary check failed" in out, f"{out}\n{tasks_of(view)}"
    assert_healthy_on(view, revision=2)
    assert view.service is not None and view.service.rollout is RolloutPhase.ROLLED_BACK
    canaries = [t for t in view.tasks if t.revision == 3]
    assert len(canaries) == 1 and canaries[0].state is TaskState.FINISHED  # one task, gone

    await (await canary_cluster.client()).kill(job_id)


@pytest.mark.slow
async def test_cli_canary_promote_and_rollback(canary_cluster: Cluster, tmp_path: Path) -> None:
    job_id = f"web-{secrets.token_hex(3)}"
    await start(canary_cluster, "DeployWeb", job_id=job_id, version="v1", desired=2)
    spec = tmp_path / "web.py"
    spec.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(CANARY).parent)!r})\n"
        "from canary import web\n"
        "web_v2 = web('v2', desired=2)\n"
    )

    def cli(*args: str) -> str:
        result = canary_cluster.cli(*args, timeout=300)
        assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
        return result.stdout

    out = await asyncio.to_thread(cli, "job", "update", job_id, str(spec), "--canary", "1")
    assert "canary: revision 2 healthy on 1 of 1" in out, out
    view = await describe(canary_cluster, job_id)
    assert sorted(t.revision or 0 for t in view.tasks if t.healthy) == [1, 2]  # one each

    out = await asyncio.to_thread(cli, "job", "rollback", job_id, "--reason", "looks slow")
    assert "rolled back to 1: looks slow" in out, out
    assert_healthy_on(await describe(canary_cluster, job_id), revision=1, desired=2)

    out = await asyncio.to_thread(cli, "job", "update", job_id, str(spec), "--canary", "1")
    assert "a canary of 1 task(s) on revision 3" in out, out  # revisions only go up
    out = await asyncio.to_thread(cli, "job", "promote", job_id)
    assert "revision 3 rolled out" in out, out
    assert_healthy_on(await describe(canary_cluster, job_id), revision=3, desired=2)

    # Nothing to promote now: a clear refusal, exit 2.
    refused = await asyncio.to_thread(canary_cluster.cli, "job", "promote", job_id)
    assert refused.returncode == 2 and "no canary to promote" in refused.stderr, refused
    await (await canary_cluster.client()).kill(job_id)
