from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from titus_flow.processes import poll_until, write_atomically
from titus_flow.runtime import (
    LABEL_AGENT_ID,
    LABEL_ATTEMPT,
    LABEL_JOB_ID,
    LABEL_TASK_ID,
    Exit,
    LaunchRequest,
    attempt_name,
    make_driver,
)
from titus_flow.runtime.docker import DockerDriver
from titus_flow.runtime.docker_exits import parse_docker_time
from titus_flow.runtime.process import ProcessDriver
from titus_flow.spec import Container, Resources


def _request(**overrides: object) -> LaunchRequest:
    fields: dict[str, object] = {
        "job_id": "job-1",
        "task_id": "task-7",
        "task_index": 3,
        "attempt": 2,
        "agent_id": "agent-a",
        "container": Container(
            image="busybox:latest", env={"GREETING": "hi"}, labels={"team": "data"}
        ),
        "resources": Resources(),
    }
    fields.update(overrides)
    return LaunchRequest(**fields)  # type: ignore[arg-type]


def test_name_is_deterministic_per_attempt() -> None:
    assert _request().name == attempt_name("task-7", 2) == "tf-task-7-a2"
    assert _request(attempt=3).name != _request().name


def test_environment_adds_titus_variables_to_the_spec_env() -> None:
    env = _request().environment()
    assert env == {
        "GREETING": "hi",
        "TITUS_JOB_ID": "job-1",
        "TITUS_TASK_ID": "task-7",
        "TITUS_TASK_INDEX": "3",
        "TITUS_TASK_ATTEMPT": "2",
        "TITUS_AGENT_ID": "agent-a",
    }


def test_environment_names_ports_and_the_first_is_port() -> None:
    env = _request(ports={"http": 20001, "admin": 20002}).environment()
    assert env["PORT_HTTP"] == "20001"
    assert env["PORT_ADMIN"] == "20002"
    assert env["PORT"] == "20001"


def test_labels_add_titus_labels_to_the_spec_labels() -> None:
    assert _request().labels() == {
        "team": "data",
        LABEL_JOB_ID: "job-1",
        LABEL_TASK_ID: "task-7",
        LABEL_ATTEMPT: "2",
        LABEL_AGENT_ID: "agent-a",
    }


def test_exit_defaults() -> None:
    assert Exit(0) == Exit(exit_code=0, oom_killed=False, started_at=None, error="")


def test_make_driver_builds_each_driver(tmp_path: Path) -> None:
    docker_driver = make_driver("docker", state_dir=tmp_path, network_mode="none")
    process_driver = make_driver("process", state_dir=tmp_path / "state")
    assert isinstance(docker_driver, DockerDriver) and docker_driver.name == "docker"
    assert isinstance(process_driver, ProcessDriver) and process_driver.name == "process"
    assert (tmp_path / "state").is_dir()


def test_make_driver_rejects_unknown_names_and_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown driver 'podman'"):
        make_driver("podman")
    with pytest.raises(TypeError):
        make_driver("process", state_dir=tmp_path, color="blue")


def test_docker_driver_refuses_bridge_networking() -> None:
    with pytest.raises(ValueError, match="network_mode 'bridge' is not supported"):
        DockerDriver(network_mode="bridge")


def test_parse_docker_time() -> None:
    assert parse_docker_time("2024-05-01T10:20:30.123456789Z") == datetime(
        2024, 5, 1, 10, 20, 30, 123456, tzinfo=UTC
    )
    assert parse_docker_time("0001-01-01T00:00:00Z") is None
    assert parse_docker_time("") is None
    assert parse_docker_time(None) is None


async def test_poll_until_returns_once_the_check_holds() -> None:
    calls = []

    def check() -> bool:
        calls.append(1)
        return len(calls) == 3

    assert await poll_until(check, timeout=5)
    assert len(calls) == 3


async def test_poll_until_accepts_async_checks_and_times_out() -> None:
    async def never() -> bool:
        return False

    assert not await poll_until(never, timeout=0.05)
    assert not await poll_until(never, timeout=0)


def test_write_atomically_replaces_the_file(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "out.log"
    write_atomically(target, [b"one\n", b"two\n"])
    write_atomically(target, iter([b"three\n"]))
    assert target.read_bytes() == b"three\n"
    assert [p.name for p in target.parent.iterdir()] == ["out.log"]
