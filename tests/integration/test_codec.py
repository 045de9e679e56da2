"""Encrypted payloads end to end: a job whose env holds a marker runs with the codec
configured; the history (read without the codec, by the SDK and by `temporal workflow
show`, and the SQLite file itself) holds no marker, while the codec server decodes it
for the CLI and the Web UI (headless Chromium, which scripts/setup.sh installs), where a
Failed job's page shows it failed and why (its failure decoded too)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from headless_chrome import Chrome, chromium_binary
from temporalio.client import Client
from titus_cluster import Cluster

from titus_flow import stack
from titus_flow.codec import new_key_line
from titus_flow.lifecycle import JobState
from titus_flow.spec import BatchJob, Container, Resources

MARKER = "zebra-marker-5e1d"
# base64 of b"binary/encrypted", as payload metadata appears in JSON histories.
ENCRYPTED_B64 = "YmluYXJ5L2VuY3J5cHRlZA=="


@dataclass
class Encrypted:
    """A dev server (SQLite file, Web UI wired to the codec server) and a finished job."""

    cluster: Cluster
    temporal_bin: Path
    db: Path
    ui_url: str
    codec_url: str
    job_id: str
    run_id: str
    failed: tuple[str, str]  # a Failed job's id and run id

    def show(self, *extra: str) -> str:
        """`temporal workflow show --detailed` of the job, with ``extra`` options."""
        argv = [str(self.temporal_bin), "workflow", "show", "-w", self.job_id, "--detailed"]
        argv += ["--address", self.cluster.address, "--disable-config-file", "--disable-config-env"]
        done = subprocess.run([*argv, *extra], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture(scope="module")
async def encrypted(
    temporal_bin: Path, tmp_path_factory: pytest.TempPathFactory, free_port: Callable[[], int]
) -> AsyncIterator[Encrypted]:
    root = tmp_path_factory.mktemp("codec")
    port, ui_port, codec_port = free_port(), free_port(), free_port()
    address, codec_url = f"127.0.0.1:{port}", f"http://127.0.0.1:{codec_port}"
    db = root / "temporal.db"
    argv = stack.server_argv(
        temporal_bin, port=port, ui_port=ui_port, db_filename=db, ui_codec_endpoint=codec_url
    )
    log = root / "temporal.log"
    server = stack.start_process([*argv, "--ui-disable-news-fetch"], log)

    def alive() -> bool:
        return server.poll() is None

    cluster = Cluster.create(
        address,
        root,
        TITUS_FLOW_CODEC_KEYS=new_key_line("it-1"),
        TITUS_FLOW_UI_PORT=str(ui_port),
        TITUS_FLOW_CODEC_PORT=str(codec_port),
    )
    try:
        stack.wait_ready(temporal_bin, address, alive, log)
        cluster.start_worker()
        cluster.start_agent("local", "--driver", "process", "--cpu", "2", "--memory", "2Gi")
        cluster.start("codec", "codec-server")
        client = await cluster.wait_for_agents(1)
        job_id = await client.submit(
            BatchJob(
                name="codec",
                container=Container(
                    image="busybox:latest", command="echo hello", env={"SECRET_MARKER": MARKER}
                ),
                resources=Resources(cpu=0.1, memory=32, disk=0, network_mbps=0),
            )
        )
        failing = await client.submit(
            BatchJob(
                name="fails",
                container=Container(image="busybox:latest", command=["sh", "-c", "exit 3"]),
                resources=Resources(cpu=0.1, memory=32, disk=0, network_mbps=0),
            )
        )
        view = await cluster.wait_for(job_id)
        assert view.state is JobState.SUCCEEDED, view
        assert (await cluster.wait_for(failing)).state is JobState.FAILED
        run_id = (await client.temporal.get_workflow_handle(job_id).describe()).run_id
        failed_run = (await client.temporal.get_workflow_handle(failing).describe()).run_id
        yield Encrypted(
            cluster,
            temporal_bin,
            db,
            f"http://127.0.0.1:{ui_port}",
            codec_url,
            job_id,
            run_id,
            (failing, failed_run),
        )
    finally:
        await asyncio.to_thread(cluster.stop_all)  # it runs an event loop of its own
        stack.stop_process_group(server.pid, alive)


async def test_history_holds_ciphertext_only(encrypted: Encrypted) -> None:
    plain = await Client.connect(encrypted.cluster.address)  # no codec
    history = (await plain.get_workflow_handle(encrypted.job_id).fetch_history()).to_json()
    assert MARKER not in history
    assert ENCRYPTED_B64 in history
    # On disk too: the job id (a search attribute, never encrypted) is there, the marker not.
    stored = b"".join(p.read_bytes() for p in encrypted.db.parent.glob("temporal.db*"))
    assert encrypted.job_id.encode() in stored
    assert MARKER.encode() not in stored


async def test_cli_shows_ciphertext_and_decodes_through_the_codec_server(
    encrypted: Encrypted,
) -> None:
    raw = encrypted.show()
    assert MARKER not in raw and ENCRYPTED_B64 in raw
    decoded = encrypted.show("--codec-endpoint", encrypted.codec_url)
    assert f"SECRET_MARKER: {MARKER}" in decoded


async def test_codec_server_answers_the_web_ui_origin_only(encrypted: Encrypted) -> None:
    def preflight(origin: str) -> str | None:
        request = urllib.request.Request(
            f"{encrypted.codec_url}/decode", method="OPTIONS", headers={"Origin": origin}
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            allowed: str | None = reply.headers.get("Access-Control-Allow-Origin")
            return allowed

    assert preflight(encrypted.ui_url) == encrypted.ui_url
    assert preflight("http://127.0.0.1:1") is None
    body = json.dumps({"payloads": []}).encode()
    request = urllib.request.Request(f"{encrypted.codec_url}/encode", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert json.loads(reply.read()) == {}


@pytest.mark.skipif(chromium_binary() is None, reason="chromium is not installed")
async def test_web_ui_shows_the_decoded_input(encrypted: Encrypted, tmp_path: Path) -> None:
    url = (
        f"{encrypted.ui_url}/namespaces/default/workflows/"
        f"{encrypted.job_id}/{encrypted.run_id}/history"
    )
    binary = chromium_binary()
    assert binary is not None
    # TITUS_FLOW_SCREENSHOT_DIR keeps the picture (docs/img/codec-web-ui.png comes from here).
    shots = Path(os.environ.get("TITUS_FLOW_SCREENSHOT_DIR") or tmp_path)
    with Chrome(binary, tmp_path / "profile") as chrome:
        chrome.open(url)
        text = chrome.wait_for_text(MARKER, timeout=90)
        chrome.screenshot(shots / "codec-web-ui.png")
    assert '"SECRET_MARKER": "zebra' in text.replace("\n", "")
    assert (shots / "codec-web-ui.png").stat().st_size > 10_000


@pytest.mark.skipif(chromium_binary() is None, reason="chromium is not installed")
async def test_web_ui_shows_a_failed_job_as_failed(encrypted: Encrypted, tmp_path: Path) -> None:
    """What an operator sees of a job whose task exited 3: failed, and why, in one line."""
    job_id, run_id = encrypted.failed
    url = f"{encrypted.ui_url}/namespaces/default/workflows/{job_id}/{run_id}/history"
    binary = chromium_binary()
    assert binary is not None
    with Chrome(binary, tmp_path / "profile") as chrome:
        chrome.open(url)
        # The failure's message is encrypted too: shown once the codec server decoded it.
        text = chrome.wait_for_text(f"job {job_id} (fails) Failed", timeout=90)
        chrome.screenshot(tmp_path / "failed-job.png")
    assert f"job {job_id} (fails) Failed: 1 of 1 task(s) failed; first: task 0 failed" in text
    assert "exited with code 3" in text
    status = text.split(job_id, 1)[0].split()[-1]  # the badge before the title
    assert status.lower() == "failed", text[:500]


def test_codec_server_process_serves_then_stops_on_sigterm(
    tmp_path: Path, free_port: Callable[[], int]
) -> None:
    port = free_port()
    env = Cluster.create("127.0.0.1:1", tmp_path, TITUS_FLOW_CODEC_KEYS=new_key_line("k")).env
    argv = [sys.executable, "-m", "titus_flow", "codec-server", "--port", str(port)]
    log = tmp_path / "codec.log"
    proc = stack.start_process(argv, log, env)
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/encode", data=b'{"payloads": []}', method="POST"
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(request, timeout=5) as reply:
                    assert reply.status == 200
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        proc.terminate()
        assert proc.wait(timeout=15) == 0, log.read_text()
    finally:
        stack.stop_process_group(proc.pid, lambda: proc.poll() is None)
