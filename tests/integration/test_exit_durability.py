"""An attempt's exit survives an agent that dies while removing its container (issue 13, item 2).

The agent saves the exit (code, reason, output, log tail) next to the attempt's
log before it removes the container. These tests run the real ``launch`` and
``supervise`` activities on a real driver, make the agent "die" at the removal
(before it removed the container, or just after), then run ``supervise`` again
as a restarted agent would: it must report the real exit, and the task must
not have run twice.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import docker
import pytest
from temporalio.testing import ActivityEnvironment

from titus_flow.activities.agent import AgentActivities
from titus_flow.config import load_settings
from titus_flow.contracts import AttemptExit, LaunchInput, SuperviseInput
from titus_flow.lifecycle import FinishReason
from titus_flow.runtime import LABEL_AGENT_ID, Driver, attempt_name
from titus_flow.runtime.docker import DockerDriver
from titus_flow.runtime.process import ProcessDriver
from titus_flow.spec import Container, Resources

AGENT_ID = f"pytest-exit-{uuid.uuid4().hex[:8]}"  # labels every container these tests make

# Counts its runs in a file beside its result, prints, writes a result, exits 3.
COMMAND = (
    'echo run >> "$(dirname "$TITUS_OUTPUT_PATH")/runs"; echo finished the work;'
    ' echo \'{"rows": 7}\' > "$TITUS_OUTPUT_PATH"; exit 3'
)


class AgentDied(BaseException):
    """The agent process ended here (a BaseException: nothing in the agent catches it)."""


class DiesWhileRemoving:
    """A driver whose agent dies at ``remove``: before it removes, or right after."""

    def __init__(self, inner: Driver, *, removed: bool) -> None:
        self.inner = inner
        self.removed = removed

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def remove(self, name: str, log_path: Path | None) -> None:
        if self.removed:
            await self.inner.remove(name, log_path)
        raise AgentDied(name)


@pytest.fixture(params=[pytest.param("docker", marks=pytest.mark.docker), "process"])
async def driver(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Driver]:
    made: Driver
    if request.param == "docker":
        made = DockerDriver(network_mode="none", extra_labels=load_settings().container_labels)
    else:
        made = ProcessDriver(state_dir=tmp_path / "state")
    yield made
    for container in await made.list_managed():
        if container.agent_id == AGENT_ID:
            await made.remove(container.name, None)
    await made.close()
    if request.param == "docker":
        client = docker.from_env()  # nothing of ours is left, whatever the test did
        for leftover in client.api.containers(
            all=True, filters={"label": f"{LABEL_AGENT_ID}={AGENT_ID}"}
        ):
            client.api.remove_container(leftover["Id"], force=True)
        client.close()


@pytest.mark.parametrize("removed", [False, True], ids=["before-removal", "after-removal"])
async def test_a_retried_supervise_reports_the_exit_saved_before_the_agent_died(
    driver: Driver, tmp_path: Path, removed: bool
) -> None:
    env = ActivityEnvironment()
    task_id = f"t{uuid.uuid4().hex[:10]}"
    log_dir = tmp_path / "logs"
    dies = cast(Driver, DiesWhileRemoving(driver, removed=removed))
    dying = AgentActivities(AGENT_ID, dies, log_dir)
    launched = await env.run(
        dying.launch,
        LaunchInput(
            job_id="job-exit",
            task_id=task_id,
            task_index=0,
            attempt=1,
            container=Container(image="busybox:latest", command=["sh", "-c", COMMAND]),
            resources=Resources(cpu=0.5, memory=64),
        ),
    )
    watch = SuperviseInput(task_id=task_id, attempt=1, started_at=launched.started_at)
    with pytest.raises(AgentDied):
        await env.run(dying.supervise, watch)

    # The restarted agent: the same log directory, a driver of its own.
    restarted = AgentActivities(AGENT_ID, driver, log_dir)
    exit_: AttemptExit = await env.run(restarted.supervise, watch)

    assert (exit_.reason, exit_.exit_code) == (FinishReason.FAILED, 3)
    assert exit_.message == "exited with code 3"
    assert exit_.output == {"rows": 7}
    assert exit_.log_tail == ["finished the work"]
    assert exit_.finished_at <= datetime.now(UTC)
    # It ran once, its container is gone now, and its output is kept.
    runs = restarted.output_dir(task_id, 1) / "runs"
    assert runs.read_text() == "run\n"
    assert attempt_name(task_id, 1) not in {c.name for c in await driver.list_managed()}
    assert restarted.log_path(task_id, 1).read_text() == "finished the work\n"
