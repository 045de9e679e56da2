"""Volumes and mounts on a real docker agent (issue #16, docs/volumes.md).

One cluster for the module's tests: a worker and a docker agent that allows
host paths under one directory and reconciles every 2 s (so a finished job's
scratch volume goes quickly). Each test stays well under a minute.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import docker
import pytest
from titus_cluster import Cluster, eventually

from titus_flow.lifecycle import FinishReason
from titus_flow.runtime.docker_volumes import LABEL_SCRATCH_VOLUME, scratch_volume_name
from titus_flow.spec import BatchJob
from titus_flow.views import TaskView

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="session")]


@pytest.fixture
async def volumes_cluster(dev_server: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    """A worker and one docker agent allowing host paths under ``<tmp>/allowed``."""
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    cluster = Cluster.create(dev_server, tmp_path, TITUS_FLOW_RECONCILE_SECONDS="2")
    cluster.start_worker()
    cluster.start_agent("local", "--cpu", "2", "--memory", "2Gi", "--allow-host-path", str(allowed))
    await cluster.wait_for_agents(1)
    try:
        yield cluster
    finally:
        await asyncio.to_thread(cluster.stop_all)
        listing = subprocess.run(
            ["docker", "volume", "ls", "-q", "--filter", f"label={LABEL_SCRATCH_VOLUME}"],
            capture_output=True,
            text=True,
        ).stdout.split()
        for name in listing:  # a failed test's debris: this cluster's job ids only
            if cluster.control_queue in name:
                subprocess.run(["docker", "volume", "rm", "-f", name], capture_output=True)


def job(name: str, script: str, **fields: Any) -> BatchJob:
    """A batch job of busybox tasks running ``script``, without retries."""
    container = {"image": "busybox:latest", "command": ["sh", "-c", script]}
    container.update(fields.pop("container", {}))
    return BatchJob.model_validate(
        {
            "name": name,
            "container": container,
            "resources": {"cpu": 0.25, "memory": 64, "disk": 0},
            "runtime_limit": "60s",
            **fields,
        }
    )


async def run(cluster: Cluster, spec: BatchJob, job_id: str | None = None) -> list[TaskView]:
    """Run ``spec`` to its end; its tasks by index."""
    client = await cluster.client()
    view = await cluster.wait_for(await client.submit(spec, job_id=job_id), 60)
    return sorted(view.tasks, key=lambda t: t.index)


async def test_two_tasks_share_a_scratch_volume_which_goes_with_the_job(
    volumes_cluster: Cluster,
) -> None:
    writer_reader = (
        'if [ "$TITUS_TASK_INDEX" = 0 ]; then echo "from task 0" > /scratch/note.tmp &&'
        " mv /scratch/note.tmp /scratch/note; exit 0; fi;"
        " i=0; while [ ! -f /scratch/note ]; do i=$((i+1)); [ $i -lt 300 ] || exit 3;"
        ' sleep 0.1; done; printf \'{"read": "%s"}\' "$(cat /scratch/note)" > "$TITUS_OUTPUT_PATH"'
    )
    spec = job(
        "share",
        writer_reader,
        instances=2,
        volumes=[{"name": "work", "scratch": {}}],
        container={"mounts": [{"volume": "work", "path": "/scratch"}]},
    )
    job_id = f"{volumes_cluster.control_queue}-share"
    tasks = await run(volumes_cluster, spec, job_id)
    assert [t.reason for t in tasks] == [FinishReason.NORMAL] * 2, tasks
    assert tasks[1].output == {"read": "from task 0"}
    api = docker.from_env().api
    try:

        async def removed() -> bool:
            names = [v["Name"] for v in api.volumes().get("Volumes") or []]
            return scratch_volume_name(job_id, "work") not in names

        await eventually(removed, 30, "the ended job's scratch volume to be removed")
    finally:
        api.close()


async def test_read_only_tmpfs_and_shm_mounts(volumes_cluster: Cluster) -> None:
    data = volumes_cluster.home.parent / "allowed" / "data"
    data.mkdir()
    (data / "in.txt").write_text("hello\n")
    script = (
        "read line < /data/in.txt;"
        " if touch /data/new 2>/dev/null; then ro=writable; else ro=refused; fi;"
        " fast=$(df -k /fast | awk 'NR==2 {print $2}');"
        " shm=$(df -k /dev/shm | awk 'NR==2 {print $2}');"
        " echo x > /fast/f && wrote=yes;"
        ' printf \'{"line": "%s", "ro": "%s", "fast": %s, "shm": %s, "wrote": "%s"}\''
        ' "$line" "$ro" "$fast" "$shm" "$wrote" > "$TITUS_OUTPUT_PATH"'
    )
    spec = job(
        "mounts",
        script,
        volumes=[
            {"name": "data", "host_path": {"path": str(data)}},
            {"name": "fast", "tmpfs": {"size": "8Mi"}},
        ],
        container={
            "mounts": [
                {"volume": "data", "path": "/data", "read_only": True},
                {"volume": "fast", "path": "/fast"},
            ],
            "shm_size": "16Mi",
        },
        security={
            "iam_role": "arn:aws:iam::123456789012:role/app",
            "security_groups": ["sg-0123abcd"],
        },
    )
    job_id = f"{volumes_cluster.control_queue}-mounts"
    (task,) = await run(volumes_cluster, spec, job_id)
    assert task.reason is FinishReason.NORMAL, task
    assert task.output == {
        "line": "hello",
        "ro": "refused",
        "fast": 8192,
        "shm": 16384,
        "wrote": "yes",
    }
    assert not (data / "new").exists()
    described = volumes_cluster.cli("job", "describe", job_id)
    assert (
        "security: iam_role arn:aws:iam::123456789012:role/app; security_groups sg-0123abcd"
        in described.stdout
    ), described


async def test_disallowed_host_paths_and_efs_are_refused(volumes_cluster: Cluster) -> None:
    outside = volumes_cluster.home.parent / "outside"
    outside.mkdir()
    escape = volumes_cluster.home.parent / "allowed" / "escape"
    escape.symlink_to(outside)
    mount = {"mounts": [{"volume": "v", "path": "/v"}]}
    specs = {
        "outside": job(
            "outside",
            "true",
            volumes=[{"name": "v", "host_path": {"path": str(outside)}}],
            container=mount,
        ),
        "symlink": job(
            "symlink",
            "true",
            volumes=[{"name": "v", "host_path": {"path": str(escape)}}],
            container=mount,
        ),
        "efs": job(
            "efs",
            "true",
            volumes=[{"name": "v", "efs": {"file_system_id": "fs-12345678"}}],
            container=mount,
        ),
    }
    results = await asyncio.gather(*(run(volumes_cluster, spec) for spec in specs.values()))
    messages = {name: tasks[0].message for name, tasks in zip(specs, results, strict=True)}
    for name, tasks in zip(specs, results, strict=True):
        assert tasks[0].reason is not FinishReason.NORMAL, (name, tasks[0])
    assert f"host path {outside} is not under a path this agent allows" in messages["outside"]
    assert "--allow-host-path" in messages["outside"]
    assert f"(resolved: {outside})" in messages["symlink"]
    assert "needs an NFS client" in messages["efs"]
