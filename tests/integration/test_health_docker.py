"""HealthMonitor against a real busybox container (docker driver, the default bridge
network: probes reach the port published on 127.0.0.1)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime

import docker
import pytest

from titus_flow.config import load_settings
from titus_flow.processes import poll_until
from titus_flow.runtime import LABEL_AGENT_ID, LaunchRequest
from titus_flow.runtime.docker import DockerDriver
from titus_flow.runtime.health import Health, HealthMonitor
from titus_flow.spec import Container, ExecCheck, HttpCheck, Resources
from titus_flow.spec.health import HealthCheck

IMAGE = "busybox:latest"
AGENT_ID = f"pytest-health-{uuid.uuid4().hex[:8]}"  # labels every container these tests make
NETWORK = f"tf-{AGENT_ID}"  # the tests' own task network, removed with their driver


# Skipped without a Docker engine, but failed under CI=true (tests/conftest.py).
pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def cleanup() -> Iterator[None]:
    yield
    client = docker.from_env()
    for container in client.api.containers(
        all=True, filters={"label": f"{LABEL_AGENT_ID}={AGENT_ID}"}
    ):
        client.api.remove_container(container["Id"], force=True)
    for network in client.api.networks(names=[NETWORK]):
        client.api.remove_network(network["Id"])
    client.close()


@pytest.fixture
async def driver(cleanup: None) -> AsyncIterator[DockerDriver]:
    driver = DockerDriver(task_network=NETWORK, extra_labels=load_settings().container_labels)
    yield driver
    await driver.close()


async def launch(driver: DockerDriver, script: str, ports: dict[str, int]) -> LaunchRequest:
    req = LaunchRequest(
        job_id="job-health",
        task_id=f"t{uuid.uuid4().hex[:10]}",
        task_index=0,
        attempt=1,
        agent_id=AGENT_ID,
        container=Container(image=IMAGE, command=["sh", "-c", script], ports=list(ports)),
        resources=Resources(cpu=0.5, memory=64),
        ports=ports,
    )
    await driver.launch(req)
    return req


def monitor(check: HealthCheck, driver: DockerDriver, req: LaunchRequest) -> HealthMonitor:
    return HealthMonitor(
        check,
        ports=req.ports,
        container_name=req.name,
        driver=driver,
        started_at=datetime.now(UTC),
    )


async def test_exec_check_follows_the_container(driver: DockerDriver) -> None:
    req = await launch(driver, "sleep 3600", {})
    m = monitor(ExecCheck(command="test -f /tmp/ready", unhealthy_threshold=1), driver, req)
    change = await m.probe()
    assert change is not None and change.state is Health.UNHEALTHY
    assert change.message == "exec test -f /tmp/ready -> exit 1"

    assert await driver.exec(req.name, ["touch", "/tmp/ready"], 5) == 0
    change = await m.probe()
    assert change is not None and change.state is Health.HEALTHY

    await driver.stop(req.name, 0)
    change = await m.probe()  # the driver's "not running" is a failed probe, not an error
    assert change is not None and change.state is Health.UNHEALTHY
    assert change.message.startswith("exec test -f /tmp/ready: ")


async def test_exec_check_times_out(driver: DockerDriver) -> None:
    req = await launch(driver, "sleep 3600", {})
    m = monitor(ExecCheck(command="sleep 30", timeout="500ms"), driver, req)
    assert await m.probe() is None
    assert m.last_message == "exec sleep 30: timed out after 0.5s (exit 124)"
    await driver.stop(req.name, 0)


async def test_http_check_reaches_a_server_in_the_container(
    driver: DockerDriver, free_port: Callable[[], int]
) -> None:
    port = free_port()
    # Listening on every address of its own namespace: the published port forwards there.
    script = 'mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p "$PORT" -h /www'
    req = await launch(driver, script, {"http": port})
    ok = monitor(HttpCheck(port="http", timeout="1s"), driver, req)
    missing = monitor(HttpCheck(port="http", path="/missing", unhealthy_threshold=1), driver, req)

    async def healthy() -> bool:
        await ok.probe()
        return ok.state is Health.HEALTHY

    assert await poll_until(healthy, 10), ok.last_message
    assert ok.last_message == f"GET http://127.0.0.1:{port}/ -> 200"
    change = await missing.probe()
    assert change is not None and change.state is Health.UNHEALTHY
    assert change.message == f"GET http://127.0.0.1:{port}/missing -> 404"
    await driver.stop(req.name, 0)
