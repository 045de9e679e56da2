"""`titus-flow replay` of a history whose payloads the codec encrypted (issue 12).

A workflow runs on the session's dev server with the worker's data converter and
an AES-GCM key ring; its history is recorded with `temporal workflow show -o json`
(ciphertext only) and replayed: it replays with the key ring, and without it or
with the wrong key the replay stops with one line, exit 2. A plain history (from
before the codec) replays with or without the ring.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import subprocess
from pathlib import Path

import pytest
from cli_fork import run_cli
from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

from titus_flow.codec import EncryptionCodec, new_key_line, parse_key_ring
from titus_flow.converter import client_data_converter, worker_data_converter
from titus_flow.userflows import find_workflow
from titus_flow.worker import SANDBOX

pytestmark = pytest.mark.asyncio(loop_scope="session")

MARKER = "okapi-marker-9c4f"
# The workflow's input as a plain JSON payload's data appears in JSON histories.
MARKER_B64 = base64.b64encode(json.dumps(MARKER).encode()).decode()
# base64 of b"binary/encrypted", as payload metadata appears in JSON histories.
ENCRYPTED_B64 = "YmluYXJ5L2VuY3J5cHRlZA=="

GREET = """
from datetime import timedelta

from temporalio import workflow


@workflow.defn(name="Greet")
class Greet:
    @workflow.run
    async def run(self, name: str) -> str:
        loud = await workflow.execute_activity(
            "shout", name, start_to_close_timeout=timedelta(seconds=30)
        )
        {change}
        return f"hello {{loud}}"
"""


@activity.defn(name="shout")
async def shout(name: str) -> str:
    return name.upper()


def replay(history: Path, target: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``titus-flow replay HISTORY TARGET`` outside any cluster, with settings ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TITUS_FLOW_")}
    return run_cli(["replay", str(history), target], env={**clean, **env}, timeout=60)


async def run_and_record(
    address: str, temporal_bin: Path, source: Path, codec: EncryptionCodec | None, out: Path
) -> Path:
    """Run Greet(MARKER) as titus-flow would (the client's data converter to start it,
    the control worker's to run it, both with ``codec``), then record its history
    with `temporal workflow show -o json` (no codec: what the server holds) in ``out``."""
    client = await Client.connect(address, data_converter=client_data_converter(codec))
    config = client.config()  # as titus_flow.worker.control_worker makes its client
    config["data_converter"] = worker_data_converter(codec)
    worker_client = Client(**config)
    queue = f"replay-codec-{secrets.token_hex(3)}"
    async with Worker(
        worker_client,
        task_queue=queue,
        workflows=[find_workflow(f"{source}:Greet")],
        activities=[shout],
        workflow_runner=SANDBOX,
    ):
        handle = await client.start_workflow("Greet", MARKER, id=queue, task_queue=queue)
        assert await asyncio.wait_for(handle.result(), 60) == f"hello {MARKER.upper()}"
    argv = [str(temporal_bin), "workflow", "show", "-w", queue, "-o", "json"]
    argv += ["--address", address, "--disable-config-file", "--disable-config-env"]
    shown = await asyncio.to_thread(
        subprocess.run,
        argv,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    out.write_text(shown.stdout)
    return out


async def test_replay_decrypts_with_the_key_ring_and_says_which_key_it_lacks(
    dev_server: str, temporal_bin: Path, tmp_path: Path
) -> None:
    suffix = secrets.token_hex(3)
    v1 = tmp_path / f"greet_v1_{suffix}.py"
    v1.write_text(GREET.format(change="pass"))
    v2 = tmp_path / f"greet_v2_{suffix}.py"  # one more timer: a non-deterministic change
    v2.write_text(GREET.format(change="await workflow.sleep(timedelta(milliseconds=10))"))
    ring = new_key_line("replay-1")
    codec = EncryptionCodec(parse_key_ring(ring, "test"))

    history = await run_and_record(dev_server, temporal_bin, v1, codec, tmp_path / "greet.json")
    recorded = history.read_text()
    assert ENCRYPTED_B64 in recorded and MARKER_B64 not in recorded
    # A history from before the codec was configured: plain payloads pass through.
    plain = await run_and_record(dev_server, temporal_bin, v1, None, tmp_path / "plain.json")
    assert MARKER_B64 in plain.read_text() and ENCRYPTED_B64 not in plain.read_text()

    key_file = tmp_path / "codec-keys"
    key_file.write_text(f"# test ring\n{ring}\n")
    key_file.chmod(0o600)
    other_id = new_key_line("replay-2")  # a ring without the key that encrypted it
    other_key = new_key_line("replay-1")  # the same key id, other key material
    runs = await asyncio.gather(
        asyncio.to_thread(replay, history, f"{v1}:Greet", TITUS_FLOW_CODEC_KEY_FILE=str(key_file)),
        asyncio.to_thread(replay, history, f"{v2}:Greet", TITUS_FLOW_CODEC_KEYS=ring),
        asyncio.to_thread(replay, history, f"{v1}:Greet"),
        asyncio.to_thread(replay, history, f"{v1}:Greet", TITUS_FLOW_CODEC_KEYS=other_id),
        asyncio.to_thread(replay, history, f"{v1}:Greet", TITUS_FLOW_CODEC_KEYS=other_key),
        asyncio.to_thread(replay, plain, f"{v1}:Greet", TITUS_FLOW_CODEC_KEYS=ring),
        asyncio.to_thread(replay, plain, f"{v1}:Greet"),
    )
    with_key, changed, no_key, wrong_id, wrong_key, *plain_runs = runs

    assert with_key.returncode == 0, with_key
    assert with_key.stdout.startswith("ok: ") and not with_key.stderr, with_key
    for run in plain_runs:
        assert run.returncode == 0 and run.stdout.startswith("ok: "), run
    # The codec hides nothing: a changed workflow is still non-deterministic (exit 1).
    assert changed.returncode == 1, changed
    assert changed.stderr.startswith("non-determinism: at event "), changed.stderr

    for run in (no_key, wrong_id, wrong_key):
        assert run.returncode == 2, run
        assert not run.stdout, run
        assert len(run.stderr.splitlines()) == 1, run.stderr  # one line, no traceback
        assert "Traceback" not in run.stderr and str(history) in run.stderr, run.stderr
    assert "encrypted with key 'replay-1'" in no_key.stderr, no_key.stderr
    assert "TITUS_FLOW_CODEC_KEY_FILE" in no_key.stderr, no_key.stderr
    assert "which this process does not hold" in wrong_id.stderr, wrong_id.stderr
    assert "failed authentication" in wrong_key.stderr, wrong_key.stderr
