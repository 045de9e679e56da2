"""The process driver: real local processes, supervised across driver instances."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from titus_flow.runtime import DriverError, Exit, LaunchRequest
from titus_flow.runtime.process import ProcessDriver
from titus_flow.spec import Container, Resources


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
async def driver(state_dir: Path) -> AsyncIterator[ProcessDriver]:
    driver = ProcessDriver(state_dir=state_dir)
    yield driver
    # Never leave a task behind: kill whatever a test left running.
    for managed in await driver.list_managed():
        await driver.remove(managed.name, None)
    await driver.close()


def request(
    tmp_path: Path, script: str | None, *, argv: list[str] | None = None, **container: Any
) -> LaunchRequest:
    """An attempt running ``sh -c script`` (or ``argv``; neither if both are None)."""
    task_id = f"t{uuid.uuid4().hex[:10]}"
    return LaunchRequest(
        job_id="job-process",
        task_id=task_id,
        task_index=4,
        attempt=1,
        agent_id="pytest-process",
        container=Container(
            image="ignored:latest",
            command=argv if script is None else ["sh", "-c", script],
            **container,
        ),
        resources=Resources(),
        ports={"http": 20123},
        log_path=tmp_path / "logs" / task_id / "attempt-1.log",
    )


async def run(driver: ProcessDriver, req: LaunchRequest, timeout: float = 10) -> Exit:
    await driver.launch(req)
    exit_ = await driver.wait(req.name, timeout)
    assert exit_ is not None, f"{req.name} still running after {timeout}s"
    return exit_


@pytest.mark.parametrize("code", [0, 3])
async def test_wait_reports_the_exit_code(driver: ProcessDriver, tmp_path: Path, code: int) -> None:
    exit_ = await run(driver, request(tmp_path, f"exit {code}"))
    assert exit_.exit_code == code
    assert not exit_.oom_killed and exit_.error == ""
    assert exit_.started_at is not None and exit_.finished_at is not None
    assert exit_.started_at <= exit_.finished_at


async def test_a_signal_gives_128_plus_its_number(driver: ProcessDriver, tmp_path: Path) -> None:
    exit_ = await run(driver, request(tmp_path, "kill -KILL $$"))
    assert exit_.exit_code == 137


async def test_output_and_environment_are_in_the_log_at_once(
    driver: ProcessDriver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_SECRET", "must-not-leak")
    req = request(
        tmp_path,
        'echo "index=$TITUS_TASK_INDEX attempt=$TITUS_TASK_ATTEMPT port=$PORT_HTTP";'
        ' echo "greeting=$GREETING secret=$AGENT_SECRET"; echo oops >&2; sleep 30',
        env={"GREETING": "hello"},
    )
    await driver.launch(req)
    assert req.log_path is not None
    expected = {"index=4 attempt=1 port=20123", "greeting=hello secret=", "oops"}
    deadline = time.monotonic() + 5
    while set(req.log_path.read_text().splitlines()) != expected:
        assert time.monotonic() < deadline, req.log_path.read_text()
        await asyncio.sleep(0.02)


async def test_working_dir_is_used(driver: ProcessDriver, tmp_path: Path) -> None:
    req = request(tmp_path, "pwd", working_dir=str(tmp_path))
    await run(driver, req)
    assert req.log_path is not None
    assert req.log_path.read_text().strip() == str(tmp_path)


async def test_remove_keeps_the_log_where_asked(
    driver: ProcessDriver, tmp_path: Path, state_dir: Path
) -> None:
    req = request(tmp_path, "echo kept")
    await run(driver, req)
    elsewhere = tmp_path / "kept" / "attempt-1.log"
    await driver.remove(req.name, elsewhere)
    assert elsewhere.read_text() == "kept\n"
    assert await driver.list_managed() == []
    assert sorted(p.name for p in state_dir.iterdir()) == []
    await driver.remove(req.name, elsewhere)  # gone: a no-op
    with pytest.raises(DriverError, match="no process named"):
        await driver.wait(req.name, 1)


async def test_launch_is_idempotent(driver: ProcessDriver, tmp_path: Path) -> None:
    req = request(tmp_path, "echo ran; sleep 30")
    await asyncio.gather(driver.launch(req), driver.launch(req))
    await driver.launch(req)
    managed = await driver.list_managed()
    assert [(m.name, m.task_id, m.attempt, m.running, m.agent_id) for m in managed] == [
        (req.name, req.task_id, 1, True, "pytest-process")
    ]
    await asyncio.sleep(0.2)
    assert req.log_path is not None and req.log_path.read_text() == "ran\n"


async def test_a_new_driver_adopts_a_running_process(
    driver: ProcessDriver, tmp_path: Path, state_dir: Path
) -> None:
    req = request(tmp_path, "echo ran; sleep 30")
    await driver.launch(req)
    successor = ProcessDriver(state_dir=state_dir)  # the agent restarted
    await successor.launch(req)
    assert [m.running for m in await successor.list_managed()] == [True]
    assert await successor.wait(req.name, 0.2) is None
    started = time.monotonic()
    await successor.stop(req.name, 5)
    exit_ = await successor.wait(req.name, 5)
    assert exit_ is not None and exit_.exit_code == 143  # SIGTERM
    assert time.monotonic() - started < 2
    assert req.log_path is not None and req.log_path.read_text() == "ran\n"


async def test_a_new_driver_reads_an_exit_that_happened_while_away(
    tmp_path: Path, state_dir: Path
) -> None:
    req = request(tmp_path, "exit 5")
    first = ProcessDriver(state_dir=state_dir)
    await first.launch(req)
    await first.close()  # the agent died without waiting
    successor = ProcessDriver(state_dir=state_dir)
    exit_ = await successor.wait(req.name, 5)
    assert exit_ is not None and exit_.exit_code == 5
    await successor.launch(req)  # adopts the ended attempt: no second run
    await successor.remove(req.name, None)


async def test_stop_kills_after_the_grace_period(driver: ProcessDriver, tmp_path: Path) -> None:
    req = request(tmp_path, "trap '' TERM; echo ready; sleep 300 & wait")
    await driver.launch(req)
    assert req.log_path is not None
    while "ready" not in req.log_path.read_text():  # the trap is in place
        await asyncio.sleep(0.01)
    started = time.monotonic()
    await driver.stop(req.name, 0.5)
    assert 0.4 < time.monotonic() - started < 3
    exit_ = await driver.wait(req.name, 1)
    assert exit_ is not None and exit_.exit_code == 137
    await driver.stop(req.name, 1)  # already ended: a no-op


async def test_the_whole_process_group_ends_with_the_command(
    driver: ProcessDriver, tmp_path: Path
) -> None:
    req = request(tmp_path, "sleep 300 & echo $!")
    await run(driver, req)
    assert req.log_path is not None
    orphan = int(req.log_path.read_text())
    deadline = time.monotonic() + 2
    while _exists(orphan):
        assert time.monotonic() < deadline, "the background sleep outlived its task"
        await asyncio.sleep(0.02)


async def test_a_command_that_cannot_run_exits_127(driver: ProcessDriver, tmp_path: Path) -> None:
    req = request(tmp_path, None, argv=["no-such-command-xyz"])
    exit_ = await run(driver, req)
    assert exit_.exit_code == 127
    assert "no-such-command-xyz" in exit_.error
    assert req.log_path is not None and "no-such-command-xyz" in req.log_path.read_text()


async def test_no_command_at_all_exits_127(driver: ProcessDriver, tmp_path: Path) -> None:
    exit_ = await run(driver, request(tmp_path, None))
    assert exit_.exit_code == 127
    assert "ignores the image" in exit_.error


async def test_a_killed_supervisor_is_reported(driver: ProcessDriver, tmp_path: Path) -> None:
    req = request(tmp_path, "sleep 300")
    await driver.launch(req)
    state = json.loads((driver._dir / f"{req.name}.json").read_text())
    task_pid = int((driver._dir / f"{req.name}.pid").read_text())
    os.kill(state["supervisor_pid"], signal.SIGKILL)
    try:
        exit_ = await driver.wait(req.name, 5)
        assert exit_ is not None and exit_.exit_code == 255
        assert "supervisor" in exit_.error
    finally:
        os.killpg(task_pid, signal.SIGKILL)


async def test_exec_runs_with_the_task_environment(driver: ProcessDriver, tmp_path: Path) -> None:
    req = request(tmp_path, "sleep 30", working_dir=str(tmp_path))
    await driver.launch(req)
    assert await driver.exec(req.name, ["sh", "-c", 'test "$TITUS_TASK_INDEX" = 4'], 5) == 0
    assert await driver.exec(req.name, ["sh", "-c", f'test "$PWD" = "{tmp_path}"'], 5) == 0
    assert await driver.exec(req.name, ["sh", "-c", "exit 4"], 5) == 4
    assert await driver.exec(req.name, ["no-such-command-xyz"], 5) == 127
    started = time.monotonic()
    assert await driver.exec(req.name, ["sleep", "10"], 0.3) == 124
    assert time.monotonic() - started < 2


async def test_exec_needs_a_running_process(driver: ProcessDriver, tmp_path: Path) -> None:
    req = request(tmp_path, "true")
    await run(driver, req)
    with pytest.raises(DriverError, match="not running"):
        await driver.exec(req.name, ["true"], 5)
    with pytest.raises(DriverError, match="no process named"):
        await driver.exec("tf-never-made-a1", ["true"], 5)


async def test_wait_returns_none_while_running(driver: ProcessDriver, tmp_path: Path) -> None:
    req = request(tmp_path, "sleep 30")
    await driver.launch(req)
    started = time.monotonic()
    assert await driver.wait(req.name, 0.3) is None
    assert 0.25 < time.monotonic() - started < 1.5
    assert await driver.wait(req.name, 0) is None


async def test_missing_processes(driver: ProcessDriver, tmp_path: Path) -> None:
    await driver.stop("tf-never-made-a1", 1)
    await driver.remove("tf-never-made-a1", tmp_path / "never.log")
    assert not (tmp_path / "never.log").exists()
    with pytest.raises(DriverError, match="no process named"):
        await driver.wait("tf-never-made-a1", 1)
    with pytest.raises(DriverError, match="invalid attempt name"):
        await driver.wait("../escape", 1)
    assert await driver.image_exists("anything:at-all")


def _exists(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, whose reaper may be slow, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # the latter: it went between open and read
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
