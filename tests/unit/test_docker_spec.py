"""The Docker driver's pure parts: the container a request makes, refusals, exits, pull errors."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from titus_flow.runtime import LaunchRequest
from titus_flow.runtime.base import CONTAINER_OUTPUT_DIR
from titus_flow.runtime.docker_exits import exit_from_state
from titus_flow.runtime.docker_images import says_missing
from titus_flow.runtime.docker_spec import TASK_CAPABILITIES, ContainerPolicy
from titus_flow.spec import Container, Resources


class _HostConfigs:
    """Stands in for the low-level client: records the host config it is asked for."""

    def __init__(self) -> None:
        self.asked: dict[str, Any] = {}

    def create_host_config(self, **options: Any) -> dict[str, Any]:
        self.asked = options
        return {"built": True}


def _request(container: Container, **overrides: Any) -> LaunchRequest:
    fields: dict[str, Any] = {
        "job_id": "job-1",
        "task_id": "task-7",
        "task_index": 0,
        "attempt": 1,
        "agent_id": "agent-a",
        "container": container,
        "resources": Resources(cpu=0.5, memory=64),
    }
    fields.update(overrides)
    return LaunchRequest(**fields)


def _policy(**overrides: Any) -> ContainerPolicy:
    fields: dict[str, Any] = {
        "network_mode": None,
        "publish_address": "127.0.0.1",
        "pids_limit": 64,
        "log_config": "capped",
    }
    fields.update(overrides)
    return ContainerPolicy(**fields)


def _never() -> str:
    raise AssertionError("the task network was asked for")


def test_a_bridge_task_joins_the_task_network_with_its_ports_published(tmp_path: Path) -> None:
    api = _HostConfigs()
    request = _request(
        Container(image="busybox", command=["true"]), ports={"http": 18080}, output_dir=tmp_path
    )
    args = _policy(extra_labels={"team": "x"}).create_args(api, request, lambda: "net-id")

    assert api.asked["network_mode"] == "net-id"
    assert api.asked["port_bindings"] == {18080: ("127.0.0.1", 18080)}
    assert args["ports"] == [18080]
    assert api.asked["cap_drop"] == ["ALL"]
    assert api.asked["cap_add"] == list(TASK_CAPABILITIES)
    assert api.asked["security_opt"] == ["no-new-privileges"]
    assert api.asked["nano_cpus"] == 500_000_000
    assert api.asked["mem_limit"] == api.asked["memswap_limit"] == 64 * 1024 * 1024  # no swap
    assert api.asked["binds"] == {str(tmp_path): {"bind": CONTAINER_OUTPUT_DIR, "mode": "rw"}}
    assert api.asked["tmpfs"] is None
    assert args["labels"]["team"] == "x" and args["name"] == request.name
    assert args["host_config"] == {"built": True}


def test_a_forced_network_mode_publishes_nothing_and_makes_no_network() -> None:
    api = _HostConfigs()
    request = _request(Container(image="busybox", read_only_root=True), ports={"http": 18080})
    args = _policy(network_mode="none").create_args(api, request, _never)

    assert api.asked["network_mode"] == "none"
    assert api.asked["port_bindings"] is None and args["ports"] is None
    assert api.asked["read_only"] is True
    assert api.asked["tmpfs"] == {"/tmp": f"rw,nosuid,nodev,size={64 * 1024 * 1024}"}


def test_host_network_and_images_outside_the_allowlist_are_refused() -> None:
    host = _request(Container(image="busybox", network="host"))
    assert "not allowed on this agent" in (_policy().refusal(host) or "")
    assert _policy(allow_host_network=True).refusal(host) is None
    assert _policy(network_mode="host").refusal(host) is None  # forced on every task anyway
    other = _request(Container(image="evil.example/busybox"))
    assert _policy(allowed_images=("docker.io",)).refusal(other) is not None
    assert _policy().refusal(other) is None


def test_exit_from_state() -> None:
    assert exit_from_state({"Running": True, "StartedAt": "2024-05-01T10:00:00Z"}) is None
    never_started = {"Running": False, "StartedAt": "0001-01-01T00:00:00Z", "ExitCode": 0}
    assert exit_from_state(never_started) is None
    failed_start = exit_from_state({**never_started, "ExitCode": 127, "Error": "no such file"})
    assert failed_start is not None and failed_start.error == "no such file"
    # Docker may stamp the start after a quick command's finish: no negative runtime.
    quick = exit_from_state(
        {
            "Running": False,
            "StartedAt": "2024-05-01T10:00:01Z",
            "FinishedAt": "2024-05-01T10:00:00Z",
            "ExitCode": 137,
            "OOMKilled": True,
        }
    )
    assert quick is not None and quick.oom_killed and quick.exit_code == 137
    assert quick.started_at == quick.finished_at == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("error", "missing"),
    [
        ("manifest unknown: manifest unknown", True),
        ("pull access denied, repository does not exist", True),
        ("toomanyrequests: rate limit exceeded", False),
        ("Get https://registry/v2/: dial tcp: connection refused", False),
    ],
)
def test_a_pull_error_says_whether_the_image_is_missing(error: str, missing: bool) -> None:
    assert says_missing(error) is missing
