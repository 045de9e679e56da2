"""The hostile-task suite (issue 12, docs/security.md): each case is a task that tries
to reach or harm the platform, on a real docker agent with the default settings, and
must fail.

Every probe runs inside the task; the test itself only talks to 127.0.0.1 (the dev
server, the moto server, ports published there) and reads what the agent kept.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import boto3
import docker
import pytest
from test_fleet_moto import REGION, Moto, aws_env, moto  # noqa: F401  (fixtures)
from titus_cluster import Cluster, eventually

from titus_flow import BatchJob, Container, Resources
from titus_flow.client import TitusClient
from titus_flow.lifecycle import FinishReason
from titus_flow.runtime.base import attempt_name

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="session")]

PIDS_LIMIT = 64  # the agent's task_pids_limit here: a fork bomb reaches it at once
LOG_CAP_MIB = 4  # the agent's container_log_max_mib here
FLOOD_MIB = 1024  # what the noisy task writes, in 16,000-character lines (~11 s here)
SLACK = 256 * 1024  # one json-file line and the kept copy's framing


@pytest.fixture
async def hostile(
    dev_server: str,
    tmp_path: Path,
    moto: Moto,  # noqa: F811  (the fixture)
) -> AsyncIterator[Cluster]:
    """A worker and one docker agent with default isolation, small caps, and AWS on moto."""
    cluster = Cluster.create(
        dev_server,
        tmp_path,
        TITUS_FLOW_TASK_PIDS_LIMIT=str(PIDS_LIMIT),
        TITUS_FLOW_CONTAINER_LOG_MAX_MIB=str(LOG_CAP_MIB),
        AWS_ENDPOINT_URL=moto.url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
    )
    cluster.start_worker()
    cluster.start_agent("local", "--cpu", "2", "--memory", "2Gi")
    await cluster.wait_for_agents(1)
    try:
        yield cluster
    finally:
        print(f"=== logs of cluster {cluster.control_queue}\n{cluster.logs()}")  # on failure
        await asyncio.to_thread(cluster.stop_all)


def job(name: str, script: str, **container: Any) -> BatchJob:
    """A one-task batch job running ``script`` in busybox (no retries)."""
    runtime_limit = container.pop("runtime_limit", "2m")
    return BatchJob(
        name=name,
        container=Container(image="busybox:latest", command=["sh", "-c", script], **container),
        resources=Resources(cpu=0.5, memory=64, disk=0),
        runtime_limit=runtime_limit,
    )


async def run(cluster: Cluster, spec: BatchJob, timeout: float = 120) -> Any:
    """Submit ``spec`` and return its only task's final view."""
    client = await cluster.client()
    view = await cluster.wait_for(await client.submit(spec), timeout)
    (task,) = view.tasks
    return task


def kept_dir(cluster: Cluster, task_id: str) -> Path:
    """Where the agent keeps what the task's attempts left."""
    return cluster.home / "agents" / cluster.agent_id("local") / "logs" / task_id


def kept_log(cluster: Cluster, task: Any) -> str:
    """The output of the task's last attempt, as the agent kept it."""
    return (kept_dir(cluster, task.id) / f"attempt-{task.attempt}.log").read_text()


async def test_a_task_cannot_reach_the_temporal_server_or_another_tasks_port(
    hostile: Cluster,
) -> None:
    """Its own network namespace: the host's loopback (dev server, published ports) is
    not its loopback, and the bridge gateway reaches nothing bound to 127.0.0.1."""
    server = job(
        "server",
        'mkdir -p /www && echo up > /www/index.html && exec httpd -f -p "$PORT" -h /www',
        ports=["http"],
    )
    client = await hostile.client()
    server_id = await client.submit(server)

    api = docker.from_env().api
    port = 0

    async def serving() -> bool:
        nonlocal port
        (task,) = (await client.describe(server_id)).tasks
        if task.state.value != "Started":
            return False
        # A batch task's view has no ports: the engine says which one it published.
        bindings = api.inspect_container(attempt_name(task.id, task.attempt))["HostConfig"]
        ((binding,),) = bindings["PortBindings"].values()
        assert binding["HostIp"] == "127.0.0.1"
        port = int(binding["HostPort"])
        try:  # the test reaches it through the port published on 127.0.0.1
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        writer.close()
        return True

    try:
        await eventually(serving, 60, "the server task to answer on its published port")
    finally:
        api.close()
    temporal_port = hostile.address.rpartition(":")[2]
    probe = job(
        "probe",
        "gw=$(ip route | awk '/default/ {print $3}'); [ -n \"$gw\" ] || exit 9; "
        f"for target in 127.0.0.1:{temporal_port} $gw:{temporal_port} 127.0.0.1:{port}"
        f" $gw:{port}; do"
        ' if nc -w 2 "${target%:*}" "${target#*:}" </dev/null; then'
        ' echo "reached $target"; exit 1; fi; echo "refused $target"; done',
    )
    task = await run(hostile, probe)
    said = kept_log(hostile, task)
    assert task.reason is FinishReason.NORMAL, (task.message, said)
    assert said.count("refused ") == 4, said
    await client.kill(server_id)


async def test_a_symlinked_output_does_not_return_host_files(hostile: Cluster) -> None:
    task = await run(hostile, job("shadow", 'ln -s /etc/shadow "$TITUS_OUTPUT_PATH"'))
    assert task.reason is FinishReason.NORMAL
    assert task.output is None
    assert "is a symbolic link" in task.message
    shadow = Path("/etc/shadow")
    if shadow.exists() and os.access(shadow, os.R_OK):
        root_line = shadow.read_text().splitlines()[0]
        assert root_line not in json.dumps(task.model_dump(mode="json"))


async def test_a_fork_bomb_stops_at_the_pids_limit(hostile: Cluster) -> None:
    """The bomb forks until the pids limit refuses it; its shell then gives up, so
    the task ends failed, its log saying why, and the agent runs the next task."""
    bomb = job("bomb", "while :; do sleep 600 & done", runtime_limit="60s")
    task = await run(hostile, bomb)
    assert task.reason is FinishReason.FAILED, task.message
    assert task.message.startswith("exited with code")
    assert "can't fork: Resource temporarily unavailable" in kept_log(hostile, task)
    after = await run(hostile, job("after", "echo still here"))
    assert after.reason is FinishReason.NORMAL


async def test_a_log_flood_is_capped_by_the_engine_and_the_agent(hostile: Cluster) -> None:
    flood = job(
        "flood",
        # Long lines: the engine's cost is per line; 1 GiB of 1,000-character lines took ~45 s.
        f'yes "$(head -c 16000 /dev/zero | tr "\\0" a)" | head -c {FLOOD_MIB * 1024 * 1024};'
        " echo; echo done",
        runtime_limit="3m",
    )
    task = await run(hostile, flood, timeout=200)
    assert task.reason is FinishReason.NORMAL
    kept = kept_dir(hostile, task.id)
    total = sum(p.stat().st_size for p in kept.rglob("*") if p.is_file())
    assert total <= LOG_CAP_MIB * 1024 * 1024 + SLACK, total
    # The engine kept the newest output, the end included.
    assert kept_log(hostile, task).endswith("done\n")


async def test_root_in_a_task_cannot_mount_chown_the_host_or_set_the_clock(
    hostile: Cluster,
) -> None:
    script = (
        "id -u | grep -qx 0 || exit 9; "  # it really is root in its namespace
        'try() { if "$@" 2>/dev/null; then echo "allowed: $*"; exit 1; fi; echo "refused: $*"; }; '
        "mkdir -p /tmp/m; try mount -t tmpfs none /tmp/m; "
        'try chown 4242 "$(dirname "$TITUS_OUTPUT_PATH")"; '
        # busybox date exits 0 even when it cannot set the clock: look at the clock.
        'date -s 2001-01-01 >/dev/null 2>&1; [ "$(date +%Y)" = 2001 ] && try true; '
        'echo "refused: date -s"; '
        "try insmod /lib/modules/none.ko; "
        "try mknod /tmp/disk b 8 0"
    )
    task = await run(hostile, job("root", script))
    said = kept_log(hostile, task)
    assert task.reason is FinishReason.NORMAL, (task.message, said)
    assert said.count("refused: ") == 5, said
    output_dir = kept_dir(hostile, task.id) / "attempt-1.out"
    assert output_dir.stat().st_uid != 4242


async def test_secret_values_never_enter_the_history_or_describe(
    hostile: Cluster,
    moto: Moto,  # noqa: F811  (the fixture)
    tmp_path: Path,
) -> None:
    values = {
        "FROM_FILE": "file-secret-5e1f09",
        "FROM_SM": "sm-secret-8c2d7a",
        "FROM_SSM": "ssm-secret-41b9e3",
    }
    secrets_dir = hostile.home / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "team.env").write_text(f"export DB_PASSWORD='{values['FROM_FILE']}'\n")
    arn = boto3.client("secretsmanager", region_name=REGION, endpoint_url=moto.url).create_secret(
        Name=f"db-{hostile.control_queue}", SecretString=values["FROM_SM"]
    )["ARN"]
    parameter = f"/{hostile.control_queue}/token"
    boto3.client("ssm", region_name=REGION, endpoint_url=moto.url).put_parameter(
        Name=parameter, Value=values["FROM_SSM"], Type="SecureString"
    )
    # The task checks each value against its base64, so the job holds no value anywhere.
    checks = " && ".join(
        f'[ "${name}" = "$(echo {base64.b64encode(v.encode()).decode()} | base64 -d)" ]'
        for name, v in values.items()
    )
    spec = job(
        "secrets",
        f"{checks} && echo all secrets arrived",
        secrets={
            "FROM_FILE": f"env_file:{secrets_dir / 'team.env'}#DB_PASSWORD",
            "FROM_SM": arn,
            "FROM_SSM": f"ssm:{parameter}",
        },
    )
    client = await hostile.client()
    job_id = await client.submit(spec)
    view = await hostile.wait_for(job_id)
    (task,) = view.tasks
    assert task.reason is FinishReason.NORMAL, (task.message, task.log_tail)

    described = [hostile.cli("job", "describe", job_id, *output) for output in ([], ["-o", "json"])]
    history = await client.temporal.get_workflow_handle(job_id).fetch_history()
    raw = history.to_json().encode() + b"".join(e.SerializeToString() for e in history.events)
    for value in values.values():
        for shown in described:
            assert shown.returncode == 0, shown.stderr
            assert value not in shown.stdout + shown.stderr
        assert value.encode() not in raw  # (its base64 is in the command, on purpose)
        assert value not in hostile.logs()
    assert arn.encode() in raw  # the reference is what the job carries


async def test_a_missing_secret_or_a_file_outside_the_secrets_dir_fails_the_task(
    hostile: Cluster,
) -> None:
    for name, ref, why in [
        ("nosecret", "ssm:/no/such/parameter", "does not exist"),
        ("outside", "env_file:/etc/passwd#root", "only files under"),
    ]:
        task = await run(hostile, job(name, "true", secrets={"S": ref}))
        assert task.reason is FinishReason.FAILED
        assert why in task.message
        assert len(task.attempts) == 1  # a user error: not retried


async def test_host_network_is_refused_at_submit_when_no_agent_allows_it(
    hostile: Cluster, tmp_path: Path
) -> None:
    spec_file = tmp_path / "host.yaml"
    spec_file.write_text(
        "name: on-host\ncontainer:\n  image: busybox:latest\n  command: ['true']\n  network: host\n"
    )
    done = hostile.cli("run", str(spec_file))
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "no registered agent allows host networking" in done.stderr
    client: TitusClient = await hostile.client()
    assert not [j for j in await client.list_jobs() if j.get("name") == "on-host"]
