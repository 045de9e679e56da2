"""The docker driver against a real Docker engine (busybox:latest, no network unless a
test makes a bridge network of its own)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from titus_flow.config import load_settings
from titus_flow.runtime import (
    LABEL_AGENT_ID,
    LABEL_ATTEMPT,
    LABEL_JOB_ID,
    LABEL_TASK_ID,
    DriverError,
    LaunchRequest,
)
from titus_flow.runtime.base import LaunchRefusedError
from titus_flow.runtime.docker import DockerDriver
from titus_flow.runtime.docker_spec import TASK_CAPABILITIES
from titus_flow.spec import Container, Resources

IMAGE = "busybox:latest"
AGENT_ID = f"pytest-docker-{uuid.uuid4().hex[:8]}"  # labels every container these tests make


# Skipped without a Docker engine, but failed under CI=true (tests/conftest.py).
pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def api() -> Iterator[Any]:
    client = docker.from_env()
    yield client.api
    for container in client.api.containers(
        all=True, filters={"label": f"{LABEL_AGENT_ID}={AGENT_ID}"}
    ):
        client.api.remove_container(container["Id"], force=True)
    client.close()


@pytest.fixture
async def driver(api: Any) -> AsyncIterator[DockerDriver]:
    driver = DockerDriver(network_mode="none", extra_labels=load_settings().container_labels)
    yield driver
    await driver.close()


def request(command: str, *, memory: int = 64, **container: Any) -> LaunchRequest:
    container.setdefault("image", IMAGE)
    return LaunchRequest(
        job_id="job-docker",
        task_id=f"t{uuid.uuid4().hex[:10]}",
        task_index=4,
        attempt=1,
        agent_id=AGENT_ID,
        container=Container(command=["sh", "-c", command], **container),
        resources=Resources(cpu=0.5, memory=memory),
    )


async def run(driver: DockerDriver, req: LaunchRequest, timeout: float = 20) -> Any:
    await driver.launch(req)
    exit_ = await driver.wait(req.name, timeout)
    assert exit_ is not None, f"{req.name} still running after {timeout}s"
    return exit_


@pytest.mark.parametrize("code", [0, 3])
async def test_wait_reports_the_exit_code(driver: DockerDriver, code: int) -> None:
    exit_ = await run(driver, request(f"exit {code}"))
    assert exit_.exit_code == code
    assert not exit_.oom_killed
    assert exit_.started_at is not None and exit_.finished_at is not None
    assert exit_.started_at <= exit_.finished_at


async def test_remove_keeps_the_output_after_the_container_is_gone(
    driver: DockerDriver, api: Any, tmp_path: Path
) -> None:
    req = request(
        'echo "index=$TITUS_TASK_INDEX attempt=$TITUS_TASK_ATTEMPT job=$TITUS_JOB_ID";'
        ' echo "greeting=$GREETING"; echo oops >&2',
        env={"GREETING": "hello"},
    )
    await run(driver, req)
    log_path = tmp_path / "logs" / "attempt-1.log"
    await driver.remove(req.name, log_path)
    assert not api.containers(all=True, filters={"name": req.name})
    lines = set(log_path.read_text().splitlines())
    assert lines == {"index=4 attempt=1 job=job-docker", "greeting=hello", "oops"}
    await driver.remove(req.name, log_path)  # gone: a no-op that keeps the log
    assert log_path.exists()


async def test_launch_is_idempotent(driver: DockerDriver, api: Any) -> None:
    req = request("echo ran; sleep 30")
    await asyncio.gather(driver.launch(req), driver.launch(req))  # the create race
    await driver.launch(req)
    assert len(api.containers(all=True, filters={"name": req.name})) == 1
    managed = [m for m in await driver.list_managed() if m.name == req.name]
    assert len(managed) == 1 and managed[0].running
    assert (managed[0].task_id, managed[0].attempt, managed[0].agent_id) == (
        req.task_id,
        1,
        AGENT_ID,
    )


async def test_launch_adopts_an_exited_container_without_running_it_again(
    driver: DockerDriver, api: Any
) -> None:
    req = request("echo ran")
    await run(driver, req)
    await driver.launch(req)
    assert (await run(driver, req)).exit_code == 0
    assert api.logs(req.name) == b"ran\n"


async def test_launch_starts_a_container_an_interrupted_launch_only_created(
    driver: DockerDriver,
) -> None:
    req = request("exit 5")
    await asyncio.to_thread(driver._create, req)  # as if the agent died before start
    assert await driver.wait(req.name, 0.2) is None  # created, not yet run
    assert (await run(driver, req)).exit_code == 5


async def test_launch_refuses_a_container_it_did_not_make(driver: DockerDriver, api: Any) -> None:
    req = request("true")
    api.create_container(
        IMAGE, name=req.name, labels={LABEL_AGENT_ID: AGENT_ID}, host_config={"NetworkMode": "none"}
    )
    with pytest.raises(DriverError, match="did not make"):
        await driver.launch(req)


async def test_memory_limit_kills_with_oom(driver: DockerDriver) -> None:
    # The pause matters: Docker misses the OOM event of a process killed within
    # its first milliseconds (it watches the cgroup only once start returns).
    req = request("sleep 0.3; dd if=/dev/zero of=/dev/null bs=64M count=1", memory=8)
    exit_ = await run(driver, req)
    assert exit_.oom_killed
    assert exit_.exit_code == 137


async def test_stop_sends_sigterm_to_the_task_process(driver: DockerDriver) -> None:
    # The task's command is not PID 1 (the container's init is), so SIGTERM reaches it.
    req = request("exec sleep 300")
    await driver.launch(req)
    assert await driver.wait(req.name, 0.2) is None
    await driver.stop(req.name, 30)
    exit_ = await driver.wait(req.name, 5)  # well before the 30 s grace ran out
    assert exit_ is not None and exit_.exit_code == 128 + 15 and not exit_.oom_killed


async def test_stop_kills_within_the_grace_period(driver: DockerDriver) -> None:
    req = request("trap '' TERM; sleep 300")  # ignores SIGTERM: only the SIGKILL ends it
    await driver.launch(req)
    assert await driver.wait(req.name, 0.2) is None
    started = time.monotonic()
    await driver.stop(req.name, 1)
    exit_ = await driver.wait(req.name, 5)
    assert time.monotonic() - started < 4
    assert exit_ is not None and exit_.exit_code == 137 and not exit_.oom_killed


async def test_stop_and_remove_of_a_missing_container_are_no_ops(
    driver: DockerDriver, tmp_path: Path
) -> None:
    await driver.stop("tf-never-made-a1", 1)
    await driver.remove("tf-never-made-a1", tmp_path / "never.log")
    assert not (tmp_path / "never.log").exists()


async def test_wait_for_a_missing_container_is_a_driver_error(driver: DockerDriver) -> None:
    with pytest.raises(DriverError, match="no container named tf-never-made-a1"):
        await driver.wait("tf-never-made-a1", 1)


async def test_image_exists_only_for_local_images(driver: DockerDriver) -> None:
    # Pulls, and which of their errors are final, are in test_image_pull.py (a local registry).
    assert not await driver.image_exists("titus-flow-test/no-such-image:1")
    assert await driver.image_exists(IMAGE)


async def test_a_command_that_cannot_run_exits_127(driver: DockerDriver) -> None:
    req = request("true")
    req = LaunchRequest(**{**req.__dict__, "container": Container(image=IMAGE, command=["nope"])})
    exit_ = await run(driver, req)
    assert exit_.exit_code == 127
    assert "nope" in exit_.error


async def test_limits_labels_and_isolation_are_set(driver: DockerDriver, api: Any) -> None:
    req = request("sleep 30", labels={"team": "data"})
    await driver.launch(req)
    info = api.inspect_container(req.name)
    host = info["HostConfig"]
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == host["MemorySwap"] == 64 * 1024 * 1024
    assert host["PidsLimit"] == 1024
    assert host["CapDrop"] == ["ALL"]
    assert sorted(host["CapAdd"]) == sorted(TASK_CAPABILITIES)
    assert host["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-size": "16m", "max-file": "2"},
    }
    assert not host["ReadonlyRootfs"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["NetworkMode"] == "none"
    assert not host["AutoRemove"]
    assert host["Init"] is True  # SIGTERM reaches the task's own process
    assert info["Config"]["Labels"] == {
        **load_settings().container_labels,  # the agent's extra labels (the test run's)
        "team": "data",
        LABEL_JOB_ID: "job-docker",
        LABEL_TASK_ID: req.task_id,
        LABEL_ATTEMPT: "1",
        LABEL_AGENT_ID: AGENT_ID,
    }


async def test_exec_returns_the_exit_code(driver: DockerDriver) -> None:
    req = request("sleep 30")
    await driver.launch(req)
    assert await driver.exec(req.name, ["true"], 5) == 0
    assert await driver.exec(req.name, ["sh", "-c", "exit 4"], 5) == 4
    assert await driver.exec(req.name, ["no-such-command"], 5) == 126
    assert await driver.exec(req.name, ["sleep", "10"], 0.3) == 124
    with pytest.raises(DriverError):
        await driver.exec("tf-never-made-a1", ["true"], 5)


async def test_wait_returns_none_while_running(driver: DockerDriver) -> None:
    req = request("sleep 30")
    await driver.launch(req)
    started = time.monotonic()
    assert await driver.wait(req.name, 0.5) is None
    assert 0.4 < time.monotonic() - started < 2
    assert await driver.wait(req.name, 0) is None


async def test_read_only_root_leaves_tmp_writable(driver: DockerDriver) -> None:
    req = request(
        "touch /tmp/ok || exit 3; touch /root-file 2>/dev/null && exit 4; exit 0",
        read_only_root=True,
    )
    exit_ = await run(driver, req)
    assert exit_.exit_code == 0


async def test_secret_values_reach_the_container_but_not_the_request_repr(
    driver: DockerDriver, tmp_path: Path
) -> None:
    # The command compares with the value in base64, so the request holds it nowhere.
    req = request('test "$TOKEN" = "$(echo czNjcmV0LXZhbHVl | base64 -d)"')
    req = dataclasses.replace(req, secret_env={"TOKEN": "s3cret-value"})
    assert "s3cret-value" not in repr(req)
    assert (await run(driver, req)).exit_code == 0


async def test_images_outside_the_allowed_registries_are_refused(api: Any) -> None:
    strict = DockerDriver(network_mode="none", allowed_images=["127.0.0.1:5000"])
    try:
        with pytest.raises(LaunchRefusedError, match="not allowed on this agent"):
            await strict.launch(request("true"))
    finally:
        await strict.close()


async def test_host_network_is_refused_unless_the_agent_allows_it(driver: DockerDriver) -> None:
    bridged = DockerDriver()  # per-task networks, host not allowed
    try:
        with pytest.raises(LaunchRefusedError, match="--allow-host-network"):
            await bridged.launch(request("true", network="host"))
    finally:
        await bridged.close()


async def test_bridge_tasks_get_a_network_without_icc_and_ports_published_on_loopback(
    api: Any, free_port: Any
) -> None:
    network = f"tf-test-{uuid.uuid4().hex[:8]}"
    bridged = DockerDriver(task_network=network, extra_labels=load_settings().container_labels)
    port = free_port()
    serve = 'mkdir -p /www && echo "on $PORT" > /www/index.html && exec httpd -f -p "$PORT" -h /www'
    req = dataclasses.replace(request(serve, ports=["http"]), ports={"http": port})
    try:
        await bridged.launch(req)
        info = api.inspect_container(req.name)
        assert list(info["NetworkSettings"]["Networks"]) == [network]
        assert info["HostConfig"]["PortBindings"] == {
            f"{port}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
        }
        options = api.inspect_network(network)["Options"]
        assert options["com.docker.network.bridge.enable_icc"] == "false"

        async def answers() -> bool:
            # docker-proxy accepts on the host port before httpd listens in the
            # container, then resets the connection: that is "not yet" too.
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET / HTTP/1.0\r\n\r\n")
                body = await reader.read()
                writer.close()
            except OSError:
                return False
            return f"on {port}".encode() in body

        deadline = time.monotonic() + 15
        while not await answers():
            assert time.monotonic() < deadline, "the published port never answered"
            await asyncio.sleep(0.2)
    finally:
        await bridged.remove(req.name, None)
        await bridged.close()
        api.remove_network(network)
