"""titus_flow.processes: process identity, signal escalation, atomic writes."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from titus_flow import stack
from titus_flow.config import Settings
from titus_flow.pidfiles import PidRecord, pid_path, stop_process_group, write_record
from titus_flow.processes import (
    HAVE_PROC,
    escalate,
    escalate_async,
    is_alive,
    proc_stat,
    signal_group,
    start_marker,
    start_ticks,
    wait_gone,
    wait_until,
    write_atomically,
)

needs_proc = pytest.mark.skipif(not HAVE_PROC, reason="identity by start ticks needs /proc")

# Ignores SIGTERM (and so does the sleep it starts: an ignored signal stays ignored
# across exec), so only SIGKILL ends the group.
_STUBBORN = ["sh", "-c", "trap '' TERM; sleep 60 & wait"]


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def stubborn() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(_STUBBORN, start_new_session=True)
    # The trap is set once the shell has started its child.
    assert wait_until(lambda: _has_child(proc.pid), 5)
    yield proc
    signal_group(proc.pid, signal.SIGKILL)
    proc.wait()


def _has_child(pid: int) -> bool:
    return any(
        (stat := proc_stat(int(entry))) is not None and stat.ppid == pid
        for entry in os.listdir("/proc")
        if entry.isdigit()
    )


# --- identity -------------------------------------------------------------------------------


@needs_proc
def test_a_process_is_its_pid_and_its_start(sleeper: subprocess.Popen[bytes]) -> None:
    ticks = start_ticks(sleeper.pid)
    assert ticks is not None
    assert is_alive(sleeper.pid, ticks)
    assert is_alive(sleeper.pid, None)  # recorded without a start: any process of the pid
    assert start_marker(sleeper.pid) == str(ticks)
    # The same pid with another start time is another process (the pid was reused).
    assert not is_alive(sleeper.pid, ticks + 1)


@needs_proc
def test_an_exited_unreaped_process_is_not_alive() -> None:
    proc = subprocess.Popen(["true"])
    try:
        assert wait_until(lambda: (stat := proc_stat(proc.pid)) is None or stat.exited, 5)
        ticks = start_ticks(proc.pid)  # a zombie still has its stat
        assert not is_alive(proc.pid, ticks)
        assert start_marker(proc.pid) is None
    finally:
        proc.wait()


@needs_proc
def test_a_reused_pid_in_a_pid_file_is_never_signalled(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    """`down` with a pid file whose pid now belongs to another process leaves that one alone."""
    ticks = start_ticks(sleeper.pid)
    assert ticks is not None
    reused = PidRecord(pid=sleeper.pid, start=str(ticks - 1), started_at=0.0, argv=["x"])
    assert not reused.alive()
    (tmp_path / "run").mkdir()
    write_record(pid_path(tmp_path, "worker"), reused)

    assert stack.down(Settings(home=tmp_path)) == []

    time.sleep(0.1)
    assert sleeper.poll() is None  # still running: never signalled
    assert not pid_path(tmp_path, "worker").exists()  # the stale pid file is gone


# --- escalation -----------------------------------------------------------------------------


def test_escalation_stops_at_sigterm_when_that_is_enough() -> None:
    sent: list[int] = []
    assert escalate(sent.append, lambda seconds: True, grace=1.0)
    assert sent == [signal.SIGTERM]


def test_escalation_kills_after_the_deadline_and_says_when_even_that_failed() -> None:
    sent: list[int] = []
    waits: list[float] = []

    def gone_within(seconds: float) -> bool:
        waits.append(seconds)
        return False

    assert not escalate(sent.append, gone_within, grace=2.5, kill_wait=0.5)
    assert sent == [signal.SIGTERM, signal.SIGKILL]
    assert waits == [2.5, 0.5]


@needs_proc
def test_a_group_that_ignores_sigterm_is_killed_after_the_grace(
    stubborn: subprocess.Popen[bytes],
) -> None:
    began = time.monotonic()
    stop_process_group(stubborn.pid, lambda: stubborn.poll() is None, timeout=0.5)
    assert time.monotonic() - began >= 0.5
    assert stubborn.returncode == -signal.SIGKILL


@needs_proc
def test_a_group_that_heeds_sigterm_is_not_killed(sleeper: subprocess.Popen[bytes]) -> None:
    stop_process_group(sleeper.pid, lambda: sleeper.poll() is None, timeout=30)
    assert sleeper.returncode == -signal.SIGTERM


@needs_proc
async def test_async_escalation_waits_on_the_process_identity(
    stubborn: subprocess.Popen[bytes],
) -> None:
    ticks = start_ticks(stubborn.pid)
    began = time.monotonic()
    gone = await escalate_async(
        functools.partial(signal_group, stubborn.pid),
        functools.partial(wait_gone, stubborn.pid, ticks),
        grace=0.3,
    )
    assert gone  # wait_gone sees the exit of a process it is not the parent of
    assert time.monotonic() - began >= 0.3
    assert stubborn.wait(5) == -signal.SIGKILL


@needs_proc
async def test_wait_gone_of_a_reused_pid_returns_at_once(sleeper: subprocess.Popen[bytes]) -> None:
    ticks = start_ticks(sleeper.pid)
    assert ticks is not None
    assert await wait_gone(sleeper.pid, ticks + 1, timeout=30)
    assert not await wait_gone(sleeper.pid, ticks, timeout=0.05)


# --- atomic writes --------------------------------------------------------------------------


def _fail_midway() -> Iterator[bytes]:
    yield b"half of the new "
    raise OSError("disk full")


def test_a_failed_write_leaves_the_old_content_and_no_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_atomically(path, [b"old"])
    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, _fail_midway())
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
    write_atomically(path, [b"new ", b"content"], durable=True)
    assert path.read_bytes() == b"new content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_reader_sees_old_or_new_content_never_half(tmp_path: Path) -> None:
    path = tmp_path / "record"
    old, new = json.dumps({"v": "a" * 100_000}), json.dumps({"v": "b" * 100_000})
    write_atomically(path, [old.encode()])
    seen = set()

    def chunks() -> Iterator[bytes]:
        data = new.encode()
        for at in range(0, len(data), 10_000):
            seen.add(path.read_text())  # read while the new content is being written
            yield data[at : at + 10_000]

    write_atomically(path, chunks())
    assert seen == {old}
    assert path.read_text() == new


def test_private_files_are_the_owners_only(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        write_atomically(tmp_path / "secret", [b"x"], private=True)
        write_atomically(tmp_path / "public", [b"x"])
    finally:
        os.umask(umask)
    assert (tmp_path / "secret").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "public").stat().st_mode & 0o777 == 0o644
