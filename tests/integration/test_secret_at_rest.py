"""A secret's value never reaches the Temporal server's database file (issue 12).

`test_secret_values_never_enter_the_history_or_describe` reads the history and
`job describe` through the API of an in-memory server. This test looks at what
the server keeps on disk instead: a dev server of its own on a SQLite file, a
control worker and a process-driver agent (no codec: payloads are plain JSON), a
batch job whose task gets an `env_file:` secret and writes its hash and length
as its output. Once the server has stopped cleanly, the value is in none of the
database's files (the .db and any -wal/-shm), in no encoding, while the job id,
the secret's reference and the task's output are: the files hold the job.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import secrets
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from titus_cluster import Cluster

from titus_flow import stack
from titus_flow.lifecycle import JobState
from titus_flow.spec import BatchJob, Container, Resources

pytestmark = pytest.mark.asyncio(loop_scope="session")


def encodings(value: bytes) -> Iterator[bytes]:
    """``value`` as raw bytes, hex, and base64 at each of the three alignments it can
    have inside a longer encoded blob (the characters that depend only on ``value``)."""
    yield value
    yield value.hex().encode()
    for shift in range(3):
        encoded = base64.b64encode(bytes(shift) + value).rstrip(b"=")
        # Drop the characters that mix in the padding bytes before and after.
        start = -(-shift * 4 // 3)
        end = (shift + len(value)) * 4 // 3
        yield encoded[start:end]


def lingering(marker: str) -> list[str]:
    """Processes (``pid: command``) whose command line or environment holds ``marker``."""
    found = []
    needle = marker.encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except OSError:  # gone, or not ours to read
            continue
        if needle in cmdline or needle in environ:
            command = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{proc.name}: {command}")
    return found


async def test_a_secret_value_never_reaches_the_servers_sqlite_file(
    temporal_bin: Path, tmp_path: Path, free_port: Callable[[], int]
) -> None:
    value = f"at-rest-{secrets.token_hex(16)}"
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir(mode=0o700)
    env_file = secrets_dir / "team.env"
    env_file.write_text(f"DB_PASSWORD={value}\n")
    env_file.chmod(0o600)

    port = free_port()
    address = f"127.0.0.1:{port}"
    server_dir = tmp_path / "server"
    db = server_dir / "temporal.db"
    log = server_dir / "temporal.log"
    server = stack.start_process(
        stack.server_argv(temporal_bin, port=port, ui_port=None, db_filename=db), log
    )

    def alive() -> bool:
        return server.poll() is None

    cluster = Cluster.create(address, tmp_path, TITUS_FLOW_SECRETS_DIR=str(secrets_dir))
    try:
        await asyncio.to_thread(stack.wait_ready, temporal_bin, address, alive, log)
        cluster.start_worker()
        cluster.start_agent("local", "--driver", "process", "--cpu", "2", "--memory", "2Gi")
        client = await cluster.wait_for_agents(1, timeout=30)
        # The task proves it got the value without printing it (its log tail travels
        # in its attempt's result): its output is the value's hash and length.
        script = (
            'printf \'{"sha256": "%s", "length": %d}\''
            ' "$(printf %s "$DB_PASSWORD" | sha256sum | cut -c1-64)" "${#DB_PASSWORD}"'
            ' > "$TITUS_OUTPUT_PATH"'
        )
        job_id = await client.submit(
            BatchJob(
                name="secret-at-rest",
                container=Container(
                    image="busybox:latest",
                    command=["sh", "-c", script],
                    secrets={"DB_PASSWORD": f"env_file:{env_file}#DB_PASSWORD"},
                ),
                resources=Resources(cpu=0.1, memory=32, disk=0, network_mbps=0),
            )
        )
        view = await cluster.wait_for(job_id, timeout=30)
        assert view.state is JobState.SUCCEEDED, view
        digest = hashlib.sha256(value.encode()).hexdigest()
        assert view.tasks[0].output == {"sha256": digest, "length": len(value)}, view.tasks[0]

        await asyncio.to_thread(cluster.stop_all)  # it runs an event loop of its own
        # A clean stop (SIGTERM, the server exits by itself) checkpoints what it wrote.
        os.killpg(server.pid, signal.SIGTERM)
        try:
            code = await asyncio.to_thread(server.wait, 20)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the server did not stop on SIGTERM; see {log}") from None
        assert code in (0, -signal.SIGTERM), (code, log.read_text()[-2000:])
    finally:
        await asyncio.to_thread(cluster.stop_all)
        stack.stop_process_group(server.pid, alive)
    assert not lingering(str(tmp_path)), lingering(str(tmp_path))

    files = sorted(server_dir.glob("temporal.db*"))  # the .db, and -wal/-shm if left
    assert db in files, files
    stored = {path.name: path.read_bytes() for path in files}
    everything = b"".join(stored.values())
    # The files hold the job: its id, the secret's reference and the task's output.
    for held in (job_id, f"env_file:{env_file}#DB_PASSWORD", digest):
        assert held.encode() in everything, f"{held!r} is not in {list(stored)}"
    for name, data in stored.items():
        for encoded in encodings(value.encode()):
            assert encoded not in data, f"the secret ({encoded!r}) is in {name}"
    assert value not in log.read_text(errors="replace")
