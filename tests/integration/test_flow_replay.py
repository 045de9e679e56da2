"""`titus-flow replay`: a history recorded on the dev server, replayed against changed code."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from titus_flow.userflows import find_workflow
from titus_flow.worker import SANDBOX

pytestmark = pytest.mark.asyncio(loop_scope="session")

TINY = """
from datetime import timedelta

from temporalio import workflow


@workflow.defn(name="Tiny")
class Tiny:
    @workflow.run
    async def run(self, name: str) -> str:
        await workflow.sleep(timedelta(milliseconds=100))
        {change}
        return f"hello {{name}}"
"""


def replay(history: Path, target: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "titus_flow", "replay", str(history), target],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("TITUS_FLOW_")},
    )


async def test_replay_passes_unchanged_code_and_catches_non_determinism(
    dev_server: str, tmp_path: Path
) -> None:
    suffix = secrets.token_hex(3)
    v1 = tmp_path / f"tiny_v1_{suffix}.py"
    v1.write_text(TINY.format(change="pass"))
    v2 = tmp_path / f"tiny_v2_{suffix}.py"  # one more timer: a non-deterministic change
    v2.write_text(TINY.format(change="await workflow.sleep(timedelta(milliseconds=100))"))
    cosmetic = tmp_path / f"tiny_v3_{suffix}.py"  # no new command: still deterministic
    cosmetic.write_text(TINY.format(change="workflow.logger.info('done')"))

    client = await Client.connect(dev_server, data_converter=pydantic_data_converter)
    queue = f"replay-{suffix}"
    async with Worker(
        client, task_queue=queue, workflows=[find_workflow(f"{v1}:Tiny")], workflow_runner=SANDBOX
    ):
        handle = await client.start_workflow("Tiny", "replay", id=queue, task_queue=queue)
        assert await handle.result() == "hello replay"
    history = tmp_path / "tiny-history.json"
    history.write_text((await handle.fetch_history()).to_json())

    ok = await asyncio.to_thread(replay, history, f"{v1}:Tiny")
    assert ok.returncode == 0, ok
    assert (await asyncio.to_thread(replay, history, f"{cosmetic}:Tiny")).returncode == 0
    changed = await asyncio.to_thread(replay, history, f"{v2}:Tiny")
    assert changed.returncode == 1, changed
    assert changed.stderr.startswith("non-determinism: at event "), changed.stderr
    assert "Nondeterminism error" in changed.stderr

    wrong_class = await asyncio.to_thread(replay, history, f"{v1}:Nope")
    assert wrong_class.returncode == 2 and "no workflow 'Nope'" in wrong_class.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert (await asyncio.to_thread(replay, bad, f"{v1}:Tiny")).returncode == 2
    other = tmp_path / f"other_{suffix}.py"
    other.write_text(TINY.format(change="pass").replace('name="Tiny"', 'name="Other"'))
    mismatch = await asyncio.to_thread(replay, history, f"{other}:Other")
    assert mismatch.returncode == 2 and "history is of workflow 'Tiny'" in mismatch.stderr
