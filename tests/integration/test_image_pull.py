"""Image pulls against a real registry on 127.0.0.1 (issue 13, item 3).

Only a registry saying the image does not exist ("manifest unknown", no such
repository) is final: the launch fails with ``ImageNotFound``, naming the image.
A registry that answers 500 or does not listen is a platform fault: the launch
activity raises a retryable error that the job counts as ``system_error``.

The registry is Debian's ``docker-registry`` (the CNCF distribution registry),
served on a free port with storage in a temporary directory; the engine treats
registries on 127.0.0.0/8 as insecure, so plain HTTP works and nothing leaves
the host.
"""

from __future__ import annotations

import http.server
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
from temporalio.exceptions import ActivityError, ApplicationError, RetryState
from temporalio.testing import ActivityEnvironment
from titus_cluster import Cluster

from titus_flow.activities.agent import AgentActivities
from titus_flow.config import load_settings
from titus_flow.contracts import LaunchInput
from titus_flow.lifecycle import FinishReason, JobState, TaskState, retry_delay
from titus_flow.runtime import LABEL_AGENT_ID
from titus_flow.runtime.docker import DockerDriver
from titus_flow.spec import BatchJob, Container, Resources, Retry
from titus_flow.workflows.attempts import Outcome
from titus_flow.workflows.common import LAUNCH_RETRY

pytestmark = pytest.mark.docker

AGENT_ID = f"pytest-pull-{uuid.uuid4().hex[:8]}"  # labels every container these tests make
LOCAL_IMAGE = "busybox:latest"
REGISTRY_START_TIMEOUT = 20.0


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class Registry:
    """A registry on 127.0.0.1 holding ``repository:present`` (a copy of busybox)."""

    address: str
    repository: str

    def image(self, tag: str, repository: str | None = None) -> str:
        """The reference of ``tag`` in ``repository`` (by default the one holding busybox)."""
        return f"{self.address}/{repository or self.repository}:{tag}"


@pytest.fixture(scope="module")
def api() -> Iterator[Any]:
    client = docker.from_env()
    yield client.api
    client.close()


@pytest.fixture(scope="module")
def registry(api: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A real registry with one image pushed to it; stopped and its images removed after."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("no docker-registry binary (apt-get install -y docker-registry)")
    root = tmp_path_factory.mktemp("registry")
    address = f"127.0.0.1:{free_port()}"
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
        f"http:\n  addr: {address}\n"
    )
    with (root / "registry.log").open("wb") as log:
        process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
    registry = Registry(address=address, repository=f"titus-flow-test/{uuid.uuid4().hex[:10]}")
    try:
        _wait_until_serving(address, process)
        present = registry.image("present")
        api.tag(LOCAL_IMAGE, present)
        try:
            for event in api.push(present, stream=True, decode=True):
                assert "error" not in event, f"push of {present} failed: {event}"
        finally:
            api.remove_image(present)
        yield registry
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        _untag(api, f"{address}/{registry.repository}")


def _untag(api: Any, repository: str) -> None:
    """Remove the tags of ``repository`` (never by id: busybox:latest shares its image)."""
    for image in api.images(name=repository):
        for tag in image.get("RepoTags") or []:
            if tag.startswith(f"{repository}:"):
                api.remove_image(tag)


def _wait_until_serving(address: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + REGISTRY_START_TIMEOUT
    while time.monotonic() < deadline:
        assert process.poll() is None, "docker-registry exited at start"
        try:
            if requests.get(f"http://{address}/v2/", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise AssertionError(f"docker-registry did not serve on {address}")


class _Fails(http.server.BaseHTTPRequestHandler):
    """Answers every request with 500, as a registry with a broken backend does."""

    def do_GET(self) -> None:
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def failing_registry() -> Iterator[str]:
    """The address of a "registry" on 127.0.0.1 that answers 500 to everything."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Fails)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
async def agent(api: Any, tmp_path: Path) -> AsyncIterator[AgentActivities]:
    driver = DockerDriver(network_mode="none", extra_labels=load_settings().container_labels)
    yield AgentActivities(AGENT_ID, driver, tmp_path / "logs")
    await driver.close()
    for container in api.containers(all=True, filters={"label": f"{LABEL_AGENT_ID}={AGENT_ID}"}):
        api.remove_container(container["Id"], force=True)


async def launch(agent: AgentActivities, image: str) -> ApplicationError | None:
    """Run the launch activity for ``image``; the error it raised, if any."""
    request = LaunchInput(
        job_id="job-pull",
        task_id=f"t{uuid.uuid4().hex[:10]}",
        task_index=0,
        attempt=1,
        container=Container(image=image, command=["true"]),
        resources=Resources(cpu=0.5, memory=64),
    )
    try:
        await ActivityEnvironment().run(agent.launch, request)
    except ApplicationError as err:
        return err
    return None


def outcome_of(error: ApplicationError) -> Outcome:
    """How the job workflow reads ``error`` once the launch activity gave up."""
    failure = ActivityError(
        "activity failed",
        scheduled_event_id=1,
        started_event_id=2,
        identity="agent",
        activity_type="launch",
        activity_id="1",
        retry_state=RetryState.MAXIMUM_ATTEMPTS_REACHED,
    )
    failure.__cause__ = error
    return Outcome.from_activity_error(failure, "launch")


async def test_an_image_the_registry_has_is_pulled_and_run(
    agent: AgentActivities, registry: Registry
) -> None:
    assert await launch(agent, registry.image("present")) is None


@pytest.mark.parametrize("missing", ["tag", "repository"])
async def test_an_image_the_registry_does_not_have_fails_the_task_naming_it(
    agent: AgentActivities, registry: Registry, api: Any, missing: str
) -> None:
    if missing == "tag":
        image = registry.image("no-such-tag")
    else:
        image = registry.image("present", repository=f"{registry.repository}-absent")
    error = await launch(agent, image)
    assert error is not None
    assert (error.type, error.non_retryable) == ("ImageNotFound", True)
    assert f"image {image!r} not found" in error.message
    assert "manifest unknown" in error.message
    assert not api.containers(all=True, filters={"label": f"{LABEL_AGENT_ID}={AGENT_ID}"})
    outcome = outcome_of(error)
    assert (outcome.reason, outcome.retryable) == (FinishReason.FAILED, False)
    assert image in outcome.message


@pytest.mark.parametrize("fault", ["answers-500", "not-listening"])
async def test_a_registry_that_fails_is_a_retryable_platform_error(
    agent: AgentActivities, failing_registry: str, fault: str
) -> None:
    address = failing_registry if fault == "answers-500" else f"127.0.0.1:{free_port()}"
    image = f"{address}/titus-flow-test/busybox:1"
    error = await launch(agent, image)
    assert error is not None
    assert (error.type, error.non_retryable) == ("ImagePullError", False)
    assert image in error.message
    assert ("500 Internal Server Error" if fault == "answers-500" else "refused") in error.message
    # Retried by the launch's policy, with backoff; once that gives up, a
    # system error, which the job does not charge to the user's retry budget.
    assert error.type not in (LAUNCH_RETRY.non_retryable_error_types or [])
    assert LAUNCH_RETRY.maximum_attempts > 1 and LAUNCH_RETRY.backoff_coefficient > 1
    outcome = outcome_of(error)
    assert outcome.reason is FinishReason.SYSTEM_ERROR
    # Relaunched at once even when the job allows no retry of its own.
    assert retry_delay(Retry(attempts=1), outcome.reason, None, 0, 1) == timedelta(0)


@pytest.mark.asyncio(loop_scope="session")
async def test_a_job_whose_image_does_not_exist_fails_at_once_naming_it(
    cluster: Cluster, registry: Registry
) -> None:
    image = registry.image("no-such-tag")
    client = await cluster.client()
    job_id = await client.submit(
        BatchJob(
            name="missing-image",
            container=Container(image=image, command=["true"]),
            resources=Resources(cpu=0.1, memory=32, disk=0),
            retry=Retry(attempts=3),
        )
    )
    view = await cluster.wait_for(job_id)
    assert view.state is JobState.FAILED, view
    [task] = view.tasks
    assert (task.state, task.reason) == (TaskState.FINISHED, FinishReason.FAILED)
    [attempt] = task.attempts  # not retried: retrying cannot make the image exist
    assert f"image {image!r} not found" in attempt.message
