"""scripts/reaper.py: nothing a test run starts outlives it, even when it is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REAPER = Path(__file__).parents[2] / "scripts" / "reaper.py"

# What a test run does that would leak: a process in a session of its own (as the
# process driver's tasks and `titus-flow up`'s daemons are), and a container with
# the labels the agents would put on it. It writes their ids, then waits or exits.
_RUN = """
import os, subprocess, sys, time
out = sys.argv[1]
sleeper = subprocess.Popen(["sleep", "300"], start_new_session=True)
ids = [str(sleeper.pid)]
if sys.argv[2] == "docker":
    label = os.environ["TITUS_FLOW_CONTAINER_LABELS"]
    ids.append(subprocess.run(
        ["docker", "run", "-d", "--network", "none", "--label", label, "busybox:latest",
         "sleep", "300"], capture_output=True, text=True, check=True).stdout.strip())
with open(out + ".tmp", "w") as f:
    f.write("\\n".join(ids))
os.rename(out + ".tmp", out)
if sys.argv[3] == "wait":
    time.sleep(300)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _container_exists(container: str) -> bool:
    return subprocess.run(["docker", "inspect", container], capture_output=True).returncode == 0


def _wait_for_file(path: Path, timeout: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    return path.read_text().split("\n")


def _gone_within(seconds: float, pid: int, container: str | None) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid) and (container is None or not _container_exists(container)):
            return True
        time.sleep(0.1)
    return False


def test_a_run_that_leaves_a_process_fails_and_the_process_is_removed(tmp_path: Path) -> None:
    ids = tmp_path / "ids"
    leaky_run = [sys.executable, "-c", _RUN, str(ids), "none", "exit"]
    done = subprocess.run(
        [sys.executable, str(REAPER), "--grace", "1", "--", *leaky_run],
        capture_output=True,
        text=True,
        timeout=60,
    )
    (pid,) = map(int, _wait_for_file(ids))
    assert done.returncode == 1, done.stderr
    assert "the run left 1 processes" in done.stderr and "sleep 300" in done.stderr
    assert not _alive(pid)


def test_a_clean_run_keeps_its_exit_status(tmp_path: Path) -> None:
    for code in (0, 3):
        done = subprocess.run(
            [sys.executable, str(REAPER), "--", sys.executable, "-c", f"raise SystemExit({code})"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == code, done.stderr
        assert "left" not in done.stderr


@pytest.mark.docker
def test_killing_the_test_script_removes_everything_the_run_started(tmp_path: Path) -> None:
    # As `timeout -s KILL 120 scripts/test.sh` does: the script and its process
    # group die at once; the reaper, outside that group, cleans up after them.
    ids, run = tmp_path / "ids", tmp_path / "run.py"
    run.write_text(_RUN)
    script = tmp_path / "test.sh"
    script.write_text(
        f"#!/bin/bash\n{sys.executable} {REAPER} -- {sys.executable} {run} {ids} docker wait\n"
    )
    script.chmod(0o755)
    killer = subprocess.Popen(["timeout", "-s", "KILL", "600", str(script)])
    container = None
    try:
        pid_text, container = _wait_for_file(ids)
        assert _alive(int(pid_text)) and _container_exists(container)
        os.kill(killer.pid, signal.SIGALRM)  # timeout's own timer: "the time is up"
        assert killer.wait(timeout=10) == -signal.SIGKILL
        assert _gone_within(10, int(pid_text), container), "the run's leftovers outlived it"
    finally:
        killer.kill()
        if container:
            subprocess.run(["docker", "rm", "-f", container], capture_output=True)
