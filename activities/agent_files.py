"""What an attempt leaves on its agent: its log, its JSON result, its saved exit.

Each attempt's files sit at ``<log_dir>/<task id>/attempt-<n>.*``: the log
(``.log``), the directory the task may write its result into (``.out``) and the
exit supervise saved (``.exit.json``). They outlive the container; this module
reads them (a page of the log, its tail, the result, the exit) and prunes those
of ended attempts.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import JsonValue

from titus_flow.contracts import LOGS_PAGE_BYTES, AttemptExit, LogsChunk, LogsInput
from titus_flow.processes import write_atomically
from titus_flow.runtime.base import MAX_OUTPUT_BYTES, OUTPUT_FILE

LOG_TAIL_LINES = 20
LOG_TAIL_BYTES = 4096


def log_chunk(path: Path, request: LogsInput, ended: bool) -> LogsChunk:
    """One page of the log at ``path`` from ``request.offset``, as it is now.

    ``ended``: the attempt has ended, so ``path`` is its kept log and will not grow.
    """
    data, size = read_page(path, request.offset, min(request.limit, LOGS_PAGE_BYTES))
    if not (ended and request.offset + len(data) >= size):
        data = _whole_characters(data)  # the rest of a character cut short comes next time
    next_offset = request.offset + len(data)
    return LogsChunk(
        data=data.decode(errors="replace"),
        next_offset=next_offset,
        complete=ended and next_offset >= size,
        more=next_offset < size,
        attempt=request.attempt,
    )


def save_exit(path: Path, result: AttemptExit) -> None:
    """Keep the attempt's exit on disk, whole or not at all, before anything is removed."""
    write_atomically(path, [result.model_dump_json().encode()], durable=True)


def read_saved_exit(path: Path) -> AttemptExit | None:
    """The exit :func:`save_exit` kept at ``path``; None if there is none (or it is unreadable)."""
    if not path.exists():
        return None
    try:
        return AttemptExit.model_validate(json.loads(path.read_text()))
    except (ValueError, OSError):
        return None


def read_output(directory: Path) -> tuple[JsonValue, str]:
    """The task's JSON result, and why it could not be used if so.

    A task that wrote none has none; a broken or oversized one is reported in the
    attempt's message rather than failing the task. The directory is the task's
    to write, and the agent may run as root: the file is opened without following
    a link (a ``result.json`` pointing at ``/etc/shadow`` is refused), only if it
    is a regular file with no other name (no hard link to a host file), and its
    size is checked on the open descriptor, so nothing can be swapped in between.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        dir_fd = os.open(directory, flags | os.O_DIRECTORY)
    except FileNotFoundError:
        return None, ""
    except OSError as err:
        return None, f"output ignored: cannot open its directory ({err.strerror})"
    try:
        try:
            # O_NONBLOCK: a FIFO planted as result.json must not hang the agent.
            fd = os.open(OUTPUT_FILE, flags | os.O_NONBLOCK, dir_fd=dir_fd)
        except FileNotFoundError:
            return None, ""
        except OSError as err:
            if err.errno == errno.ELOOP:
                return None, f"output ignored: {OUTPUT_FILE} is a symbolic link"
            return None, f"output ignored: cannot open {OUTPUT_FILE} ({err.strerror})"
    finally:
        os.close(dir_fd)
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None, f"output ignored: {OUTPUT_FILE} is not a regular file"
        if info.st_nlink != 1:
            return None, f"output ignored: {OUTPUT_FILE} has other names (a hard link)"
        if info.st_size > MAX_OUTPUT_BYTES:
            return None, (
                f"output ignored: {info.st_size} bytes is over the {MAX_OUTPUT_BYTES} byte limit"
            )
        data = file.read(MAX_OUTPUT_BYTES + 1)
    if len(data) > MAX_OUTPUT_BYTES:  # grew after the check
        return None, f"output ignored: over the {MAX_OUTPUT_BYTES} byte limit"
    try:
        value: JsonValue = json.loads(data.decode())
    except (ValueError, UnicodeDecodeError) as err:
        return None, f"output ignored: {OUTPUT_FILE} is not valid JSON ({err})"
    return value, ""


@dataclass(frozen=True)
class _KeptAttempt:
    """The files an ended attempt left in the log directory."""

    ended: float  # when its exit was saved (seconds since the epoch)
    size: int  # bytes
    paths: list[Path]


def prune_kept_output(
    log_dir: Path,
    *,
    max_age: float,
    max_total_bytes: int,
    min_age: float = 60.0,
    now: float | None = None,
) -> int:
    """Delete what ended attempts left (log, exit, output) beyond an age or a total size.

    An attempt older than ``max_age`` seconds goes; then the oldest go until the
    rest take at most ``max_total_bytes``. An attempt counts as ended once its
    exit is saved; none that ended less than ``min_age`` seconds ago is deleted
    (its job may still be reading its exit). Returns how many attempts went.
    """
    now = time.time() if now is None else now
    kept = sorted(_kept_attempts(log_dir), key=lambda attempt: attempt.ended)
    total = sum(attempt.size for attempt in kept)
    removed = 0
    for attempt in kept:
        age = now - attempt.ended
        if age < min_age or (age <= max_age and total <= max_total_bytes):
            continue
        for path in attempt.paths:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)  # fd-based: never follows a link
            else:
                path.unlink(missing_ok=True)
        total -= attempt.size
        removed += 1
        with contextlib.suppress(OSError):
            attempt.paths[0].parent.rmdir()  # the task's directory, once empty
    return removed


def _kept_attempts(log_dir: Path) -> list[_KeptAttempt]:
    found = []
    for exit_file in log_dir.glob("*/attempt-*.exit.json"):
        prefix = exit_file.name.removesuffix(".exit.json")
        try:
            paths = [
                path for path in exit_file.parent.iterdir() if path.name.startswith(prefix + ".")
            ]
            ended = exit_file.lstat().st_mtime
        except OSError:
            continue  # pruned meanwhile
        found.append(_KeptAttempt(ended, sum(map(_disk_bytes, paths)), paths))
    return found


def _disk_bytes(path: Path) -> int:
    """Bytes of ``path``, a file or a directory tree (links not followed)."""
    try:
        info = path.lstat()
    except OSError:
        return 0
    if not stat.S_ISDIR(info.st_mode):
        return info.st_size
    return sum(_disk_bytes(Path(root) / name) for root, _, files in os.walk(path) for name in files)


def read_page(path: Path, offset: int, limit: int) -> tuple[bytes, int]:
    """Up to ``limit`` bytes of ``path`` from ``offset``, and the file's size (0 if absent)."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            f.seek(offset)
            return f.read(limit), size
    except FileNotFoundError:
        return b"", 0


def _whole_characters(data: bytes) -> bytes:
    """``data`` without a UTF-8 character cut short at its end."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:
            continue  # a continuation byte: the character starts further back
        if byte >= 0xF0:
            length = 4
        elif byte >= 0xE0:
            length = 3
        elif byte >= 0xC0:
            length = 2
        else:
            length = 1
        return data[:-back] if length > back else data
    return data


def log_tail(path: Path) -> list[str]:
    """The last lines of a log file, bounded so they fit in workflow history."""
    if not path.exists():
        return []
    with path.open("rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - LOG_TAIL_BYTES))
        data = f.read().decode(errors="replace")
    return data.splitlines()[-LOG_TAIL_LINES:]
