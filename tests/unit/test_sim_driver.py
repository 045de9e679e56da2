"""The sim driver: simulated runtimes and exit codes, the Driver lifecycle, and its cost."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from titus_flow.runtime import DriverError, LaunchRequest, make_driver
from titus_flow.runtime.sim import KILLED_EXIT, SimDriver, simulate, simulate_command
from titus_flow.spec import Container, Resources


def _request(command: str | list[str] = "true", task: str = "job-1-0", **env: str) -> LaunchRequest:
    return LaunchRequest(
        job_id="job-1",
        task_id=task,
        task_index=0,
        attempt=1,
        agent_id="hollow-0001",
        container=Container(image="busybox:latest", command=command, env=env),
        resources=Resources(),
    )


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["true"], (0.0, 0)),
        (["false"], (0.0, 1)),
        (["sleep", "2;", "exit", "3"], (2.0, 3)),  # "sleep 2; exit 3" as the spec splits it
        (["sh", "-c", "sleep 1.5\nexit 4"], (1.5, 4)),
        (["sh", "-c", "sleep 1 && sleep 2"], (3.0, 0)),
        (["sh", "-c", "false && sleep 5"], (0.0, 1)),
        (["sh", "-c", "false || exit 9"], (0.0, 9)),
        (["sh", "-c", "false; echo done"], (0.0, 0)),  # the last command's status
        (["sleep", "1m"], (60.0, 0)),
        (["sleep", "1d"], (86400.0, 0)),
        (["exit", "300"], (0.0, 44)),  # truncated to a byte, as a shell does
        (["python", "train.py"], (0.0, 0)),  # anything else: an instant success
        (["sh", "-c", 'echo "unbalanced'], (0.0, 0)),
        ([], (0.0, 0)),
    ],
)
def test_simulate_command(command: list[str], expected: tuple[float, int]) -> None:
    assert simulate_command(command) == expected


def test_environment_wins_over_the_command() -> None:
    assert simulate(["sleep", "9"], {"TITUS_SIM_RUNTIME": "0.5", "TITUS_SIM_EXIT": "2"}) == (0.5, 2)
    assert simulate(["exit", "3"], {"TITUS_SIM_RUNTIME": "1"}) == (1.0, 3)
    with pytest.raises(DriverError, match="TITUS_SIM_RUNTIME"):
        simulate(["true"], {"TITUS_SIM_RUNTIME": "soon"})


def test_make_driver_builds_the_sim_driver(tmp_path: Path) -> None:
    driver = make_driver("sim", state_dir=tmp_path, labels={"run": "x"})
    assert isinstance(driver, SimDriver) and driver.name == "sim"


async def test_an_attempt_runs_for_its_runtime_and_exits_with_its_code(tmp_path: Path) -> None:
    driver = SimDriver()
    request = _request("sleep 0.2; exit 3")
    await driver.launch(request)
    await driver.launch(request)  # a retried launch adopts it
    assert await driver.wait(request.name, 0.01) is None
    assert await driver.exec(request.name, ["check"], 1.0) == 0
    [managed] = await driver.list_managed()
    assert (managed.name, managed.running, managed.agent_id) == (request.name, True, "hollow-0001")
    exit_ = await driver.wait(request.name, 5.0)
    assert exit_ is not None and exit_.exit_code == 3 and not exit_.oom_killed
    assert exit_.started_at and exit_.finished_at
    assert 0.15 <= (exit_.finished_at - exit_.started_at).total_seconds() < 2
    assert not (await driver.list_managed())[0].running
    with pytest.raises(DriverError, match="not running"):
        await driver.exec(request.name, ["check"], 1.0)

    log = tmp_path / "attempt-1.log"
    live = await driver.live_output(request.name, log)
    assert live == log and b"job-1-0 attempt 1" in log.read_bytes()
    await driver.save_output(request.name, log)
    await driver.remove(request.name, log)
    assert await driver.list_managed() == []
    assert log.read_bytes().startswith(b"titus-flow sim: job-1-0 attempt 1")
    with pytest.raises(DriverError, match="no such simulated attempt"):
        await driver.wait(request.name, 0.0)
    await driver.remove(request.name, log)  # gone: a no-op
    await driver.stop(request.name, 1.0)
    await driver.close()


async def test_stop_kills_a_running_attempt_with_137() -> None:
    driver = SimDriver()
    request = _request("sleep 3600", TITUS_SIM_EXIT="0")
    await driver.launch(request)
    await driver.stop(request.name, 10.0)
    exit_ = await driver.wait(request.name, 0.0)
    assert exit_ is not None and exit_.exit_code == KILLED_EXIT
    await driver.stop(request.name, 10.0)  # already ended: the first exit stays
    assert (await driver.wait(request.name, 0.0)) == exit_


async def test_thousands_of_attempts_run_on_timers_alone() -> None:
    driver = SimDriver()
    requests = [_request(task=f"job-1-{i}", TITUS_SIM_RUNTIME="0.3") for i in range(5000)]
    threads = threading.active_count()
    for request in requests:
        await driver.launch(request)
    assert threading.active_count() == threads
    exits = await asyncio.gather(*(driver.wait(r.name, 30.0) for r in requests))
    assert {e.exit_code for e in exits if e is not None} == {0} and None not in exits
    # No thread per attempt, and every one ended within the 30 s wait: how fast
    # is for bench/scale.py, not an assertion on a shared machine.
    for request in requests:
        await driver.remove(request.name, None)
    assert await driver.list_managed() == []
