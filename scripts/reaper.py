"""Run a test command so that nothing it starts outlives it, even when it is killed.

    python scripts/reaper.py [--grace S] -- COMMAND [ARGS...]

Tests start Temporal servers, workers, agents (which start task processes in
sessions of their own, meant to survive an agent crash) and Docker containers.
This wrapper makes all of them die with the run:

* It becomes a *child subreaper* (Linux ``PR_SET_CHILD_SUBREAPER``): every
  process COMMAND starts stays its descendant, even after ``setsid`` or a double
  fork, so the whole tree can be found and killed.
* It leaves its parent's process group (``setsid``), so ``timeout -s KILL`` or a
  Ctrl-C aimed at the test script does not kill it before it has cleaned up, and
  it asks the kernel for a signal when that parent dies (``PR_SET_PDEATHSIG``).
* It gives COMMAND a run id in ``TITUS_FLOW_TEST_RUN`` and
  ``TITUS_FLOW_CONTAINER_LABELS`` (``titus.flow.test-run=<id>``): agents put
  that label on every container they start, so the run's containers can be
  removed too.

When COMMAND ends by itself, anything of the run still alive after ``--grace``
seconds is a leak: it is listed, removed, and the exit status becomes 1 (or stays
COMMAND's, if that already failed). When the parent dies first, COMMAND and
everything of the run are stopped (SIGTERM, then SIGKILL) and containers removed.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterable

from titus_flow.processes import escalate, proc_stat, wait_until

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
RUN_LABEL = "titus.flow.test-run"


class ParentDied(Exception):
    """The process that started us is gone: stop the run."""


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def _descendants(root: int) -> list[int]:
    """Pids below ``root`` in the process tree (children first found, any order)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = proc_stat(int(entry))
        if stat is None or stat.state == "Z":
            continue  # gone meanwhile; a zombie holds nothing, reaping it is our wait loop's job
        children.setdefault(stat.ppid, []).append(int(entry))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _describe(pids: Iterable[int]) -> list[str]:
    lines = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        lines.append(f"  pid {pid}: {argv[:200]}")
    return lines


def _reap_zombies() -> None:
    """Collect exit statuses of orphans that were reparented to us."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _kill_tree(grace: float) -> None:
    """SIGTERM every descendant, SIGKILL what is left after ``grace`` seconds."""

    def send(signum: int) -> None:
        for pid in _descendants(os.getpid()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def gone() -> bool:
        _reap_zombies()
        return not _descendants(os.getpid())

    escalate(send, lambda seconds: wait_until(gone, seconds, interval=0.1), grace)


def _remove_run(run: str) -> None:
    """Stop every process of the run, then remove its containers.

    They are listed after the processes are gone, so none that an agent created
    while it was being stopped is missed.
    """
    _kill_tree(grace=3.0)
    containers = _containers(run)
    if containers:
        subprocess.run(["docker", "rm", "-f", *containers], capture_output=True, timeout=60)


def _containers(run: str) -> list[str]:
    try:
        listed = subprocess.run(
            ["docker", "ps", "-a", "-q", "--filter", f"label={RUN_LABEL}={run}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []  # no Docker engine: no containers
    return listed.stdout.split()


def _say(message: str) -> None:
    print(f"reaper: {message}", file=sys.stderr, flush=True)


def main() -> int:
    """Run the command; clean up after it; return its exit status (1 for leaks)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grace", type=float, default=10.0, help="seconds to let stragglers end")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")

    parent = os.getppid()
    with contextlib.suppress(PermissionError):  # a group leader already has its own group
        os.setsid()
    _prctl(PR_SET_CHILD_SUBREAPER, 1)

    def parent_died(signum: int, frame: object) -> None:
        raise ParentDied

    signal.signal(signal.SIGHUP, parent_died)
    _prctl(PR_SET_PDEATHSIG, signal.SIGHUP)
    # Always a run of its own: a reaper inside another run (its tests) must not
    # take the outer run's containers for its own leaks.
    run = secrets.token_hex(6)
    env = dict(os.environ, TITUS_FLOW_TEST_RUN=run)
    env["TITUS_FLOW_CONTAINER_LABELS"] = f"{RUN_LABEL}={run}"

    # Ctrl-C or a polite kill of the wrapper: pass it on, then clean up as usual.
    # (os.kill, not Popen's methods: those may reap the child behind os.wait's back.)
    def forward(signum: int, frame: object) -> None:
        if status is None:
            os.kill(child.pid, signum)

    status: int | None = None
    child = subprocess.Popen(command, env=env)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    try:
        if os.getppid() != parent:
            raise ParentDied  # it died before the death signal was armed
        while status is None:
            pid, raw = os.wait()  # also reaps orphans reparented to us
            if pid == child.pid:
                child.returncode = status = os.waitstatus_to_exitcode(raw)
    except ParentDied:
        _say(f"parent {parent} died: stopping run {run}")
        _remove_run(run)
        return 137

    # The command ended by itself: whatever of the run is still here is a leak.
    deadline = time.monotonic() + args.grace
    while (_descendants(os.getpid()) or _containers(run)) and time.monotonic() < deadline:
        _reap_zombies()
        time.sleep(0.2)
    leaked = _describe(_descendants(os.getpid()))
    containers = _containers(run)
    if leaked or containers:
        _say(f"the run left {len(leaked)} processes and {len(containers)} containers:")
        for line in leaked:
            print(line, file=sys.stderr)
        for container in containers:
            print(f"  container {container}", file=sys.stderr)
        _remove_run(run)
        return status or 1
    return status


if __name__ == "__main__":
    sys.exit(main())
