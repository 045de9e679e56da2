"""Volumes as Docker mounts (pure parts): translation, host path policy, refusals."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from titus_flow.agent import AgentConfig
from titus_flow.config import Settings
from titus_flow.runtime import LaunchRequest
from titus_flow.runtime.docker_spec import ContainerPolicy
from titus_flow.runtime.docker_volumes import (
    LABEL_SCRATCH_VOLUME,
    VolumePolicy,
    docker_mounts,
    scratch_volume_name,
    scratch_volumes,
)
from titus_flow.spec import BatchJob, Resources


class _HostConfigs:
    """Stands in for the low-level client: records the host config it is asked for."""

    def __init__(self) -> None:
        self.asked: dict[str, Any] = {}

    def create_host_config(self, **options: Any) -> dict[str, Any]:
        self.asked = options
        return {}


def _request(
    volumes: list[dict[str, Any]], mounts: list[dict[str, Any]], **container: Any
) -> LaunchRequest:
    job = BatchJob.model_validate(
        {
            "name": "j",
            "volumes": volumes,
            "container": {"image": "busybox", "mounts": mounts, **container},
        }
    )
    return LaunchRequest(
        job_id="job-1",
        task_id="job-1-0",
        task_index=0,
        attempt=1,
        agent_id="agent-a",
        container=job.container,
        resources=Resources(memory=64),
        volumes=tuple(job.volumes),
    )


def _host(path: Path) -> list[dict[str, Any]]:
    return [{"name": "data", "host_path": {"path": str(path)}}]


def _at(path: str = "/data", **more: Any) -> list[dict[str, Any]]:
    return [{"volume": "data", "path": path, **more}]


def test_each_kind_becomes_its_docker_mount(tmp_path: Path) -> None:
    request = _request(
        [
            {"name": "data", "host_path": {"path": str(tmp_path)}},
            {"name": "scratch", "scratch": {}},
            {"name": "fast", "tmpfs": {"size": "16Mi"}},
            {"name": "mem", "tmpfs": {}},
            {"name": "unused", "scratch": {}},
        ],
        [
            {"volume": "data", "path": "/data", "read_only": True},
            {"volume": "scratch", "path": "/scratch"},
            {"volume": "fast", "path": "/fast"},
            {"volume": "mem", "path": "/mem", "read_only": True},
        ],
    )
    assert docker_mounts(request) == [
        {
            "Target": "/data",
            "ReadOnly": True,
            "Type": "bind",
            "Source": str(tmp_path),
            "BindOptions": {"Propagation": "rprivate"},
        },
        {
            "Target": "/scratch",
            "ReadOnly": False,
            "Type": "volume",
            "Source": "tf-scratch-job-1-scratch",
            "VolumeOptions": {"NoCopy": True},
        },
        {
            "Target": "/fast",
            "ReadOnly": False,
            "Type": "tmpfs",
            "TmpfsOptions": {"SizeBytes": 16 * 1024 * 1024, "Mode": 0o1777},
        },
        # Without a size: the task's memory, which a tmpfs counts against anyway.
        {
            "Target": "/mem",
            "ReadOnly": True,
            "Type": "tmpfs",
            "TmpfsOptions": {"SizeBytes": 64 * 1024 * 1024, "Mode": 0o1777},
        },
    ]
    # Only the scratch volumes mounted are made, labelled with their job.
    assert scratch_volumes(request) == [
        (
            "tf-scratch-job-1-scratch",
            {"titus-flow.job-id": "job-1", LABEL_SCRATCH_VOLUME: "scratch"},
        )
    ]
    assert scratch_volume_name("job-1", "scratch") == "tf-scratch-job-1-scratch"


def test_host_config_gets_mounts_and_shm_size(tmp_path: Path) -> None:
    api = _HostConfigs()
    request = _request(
        [{"name": "t", "tmpfs": {}}],
        [{"volume": "t", "path": "/tmp"}],
        shm_size="128Mi",
        read_only_root=True,
    )
    policy = ContainerPolicy(
        network_mode="none", publish_address="127.0.0.1", pids_limit=64, log_config=None
    )
    policy.create_args(api, request, lambda: "net")
    assert api.asked["shm_size"] == 128 * 1024 * 1024
    assert [m["Target"] for m in api.asked["mounts"]] == ["/tmp"]
    assert api.asked["tmpfs"] is None  # the task's own /tmp replaces the default one
    plain = _request([], [])
    policy.create_args(api, plain, lambda: "net")
    assert api.asked["mounts"] is None and api.asked["shm_size"] is None


def test_host_paths_only_under_allowed_prefixes(tmp_path: Path) -> None:
    allowed, other = tmp_path / "allowed", tmp_path / "other"
    (allowed / "sub").mkdir(parents=True)
    other.mkdir()
    policy = VolumePolicy.of([str(allowed)])
    assert policy.refusal(_request(_host(allowed / "sub"), _at())) is None
    assert policy.refusal(_request(_host(allowed), _at())) is None
    refusal = policy.refusal(_request(_host(other), _at()))
    assert refusal is not None
    assert (
        f"host path {other} is not under a path this agent allows (allowed: {allowed})" in refusal
    )
    assert "--allow-host-path" in refusal and "TITUS_FLOW_ALLOWED_HOST_PATHS" in refusal
    # A sibling sharing the prefix's letters is not under it.
    (tmp_path / "allowed-not").mkdir()
    assert policy.refusal(_request(_host(tmp_path / "allowed-not"), _at())) is not None
    # Nothing allowed: every host path is refused.
    assert "(allowed: none)" in (VolumePolicy.of([]).refusal(_request(_host(allowed), _at())) or "")


def test_symlinks_are_resolved_before_the_check_and_the_bind(tmp_path: Path) -> None:
    allowed, secret = tmp_path / "allowed", tmp_path / "secret"
    allowed.mkdir()
    secret.mkdir()
    (allowed / "escape").symlink_to(secret)
    (allowed / "inside").symlink_to(allowed)
    policy = VolumePolicy.of([str(allowed)])
    refusal = policy.refusal(_request(_host(allowed / "escape"), _at()))
    assert refusal is not None and f"(resolved: {secret})" in refusal
    inside = _request(_host(allowed / "inside"), _at())
    assert policy.refusal(inside) is None
    assert docker_mounts(inside)[0]["Source"] == str(allowed)  # the path checked is the one bound
    # An allowed prefix that is itself a symlink is compared resolved.
    link = tmp_path / "link"
    link.symlink_to(allowed)
    assert VolumePolicy.of([str(link)]).refusal(_request(_host(allowed), _at())) is None


def test_protected_paths_are_never_mounted(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "agents").mkdir(parents=True)
    policy = VolumePolicy.of(["/"], protected=[str(home)])
    for path in (home, home / "agents", tmp_path):  # the state dir, inside it, holding it
        refusal = policy.refusal(_request(_host(path), _at()))
        assert refusal is not None and "never mounts" in refusal, path
    for socket in ("/var/run/docker.sock", "/run", "/var/run"):
        refusal = policy.refusal(_request(_host(Path(socket)), _at()))
        assert refusal is not None and "never mounts" in refusal, socket
    assert VolumePolicy.of(["/"]).refusal(_request(_host(Path("/")), _at())) is not None


def test_missing_host_path_and_efs_are_refused(tmp_path: Path) -> None:
    policy = VolumePolicy.of([str(tmp_path)])
    refusal = policy.refusal(_request(_host(tmp_path / "nope"), _at()))
    assert refusal is not None and "does not exist on this agent" in refusal
    efs = _request([{"name": "data", "efs": {"file_system_id": "fs-12345678"}}], _at())
    refusal = policy.refusal(efs)
    assert refusal is not None
    assert "EFS file system fs-12345678, which needs an NFS client" in refusal
    # Volumes declared but not mounted are not the agent's concern.
    assert (
        policy.refusal(_request([{"name": "data", "efs": {"file_system_id": "fs-12345678"}}], []))
        is None
    )


def test_container_policy_refuses_through_its_volume_policy(tmp_path: Path) -> None:
    policy = ContainerPolicy(
        network_mode=None,
        publish_address="127.0.0.1",
        pids_limit=64,
        log_config=None,
        volumes=VolumePolicy.of([]),
    )
    assert "--allow-host-path" in (policy.refusal(_request(_host(tmp_path), _at())) or "")


def test_agent_settings_and_flags_reach_the_driver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(home=tmp_path / "home", allowed_host_paths="/srv/a, /srv/b")  # type: ignore[arg-type]
    assert settings.allowed_host_paths == ["/srv/a", "/srv/b"]
    options = AgentConfig(agent_id="a", allowed_host_paths=("/data",)).driver_options(settings)
    assert options["allowed_host_paths"] == ("/srv/a", "/srv/b", "/data")
    assert str(tmp_path / "home") in options["protected_paths"]  # type: ignore[operator]
    with pytest.raises(ValueError, match="must be an absolute path"):
        Settings(allowed_host_paths=["srv"])
    assert os.path.isabs(str(settings.agent_secrets_dir))
