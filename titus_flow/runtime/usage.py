"""How much CPU a task used: read from the kernel's accounting, and turned into percent.

Two sources, one per driver, both counters of CPU seconds (user + system)
since the task started:

* a container's cgroup: ``cpu.stat`` (``usage_usec``) under cgroup v2, or
  ``cpuacct.usage`` (nanoseconds) under cgroup v1 (what this machine's Docker
  engine uses); see :mod:`~titus_flow.runtime.docker_usage`;
* a process driver task's session in ``/proc``: every process of the session
  the task's command leads, its own time plus that of the children it reaped
  (``/proc/<pid>/stat`` fields 14-17). A process that left the session
  (``setsid``) or whose parent died before reaping it is not counted: the
  process driver has no cgroup to hold them.

The percent is of the task's CPU *request* (``resources.cpu``), as Titus and
ECS report service CPU: 100 means the task used as many cores as it asked for,
and a task that uses more than it asked (the process driver does not limit it)
shows more than 100.

The parsers are pure functions of the files' text, so they are tested without
a kernel; the readers around them only open the files.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

PROC: Final = Path("/proc")
CGROUP_ROOT: Final = Path("/sys/fs/cgroup")

_V1_MOUNTS: Final = ("cpuacct", "cpu,cpuacct", "cpuacct,cpu")  # where distributions mount it


@dataclass(frozen=True)
class CpuReading:
    """A task's CPU counter at one moment (``at``: monotonic seconds)."""

    cpu_seconds: float
    at: float


def percent_of_request(before: CpuReading, after: CpuReading, cpu_request: float) -> float | None:
    """CPU used between two readings, in percent of ``cpu_request`` cores; None if no time passed.

    A counter that went back (a process of the session was reaped by someone
    outside it and took its time along) counts as an idle period, never as a
    negative use.
    """
    elapsed = after.at - before.at
    if elapsed <= 0 or cpu_request <= 0:
        return None
    used = max(0.0, after.cpu_seconds - before.cpu_seconds)
    return 100.0 * used / (elapsed * cpu_request)


class TaskCpuAverage:
    """The CPU use of one job's tasks on one agent, period after period.

    Each :meth:`observe` takes the tasks' current readings and returns the
    average percent of their requests since the previous one, with how many
    tasks it stands for. A task seen for the first time has nothing to compare
    with: it counts from the next period on. Tasks that are gone are forgotten,
    so the state is bounded by the tasks that run.
    """

    def __init__(self) -> None:
        """Start with no readings."""
        self._last: dict[str, CpuReading] = {}

    def observe(
        self, readings: Mapping[str, tuple[CpuReading | None, float]]
    ) -> tuple[float, int] | None:
        """(average percent, tasks) over ``readings`` (name -> (reading, cpu request)).

        A reading of None (the task does not run, or its use cannot be told
        now) leaves the task out and forgets its previous reading. None when no
        task could be counted.
        """
        previous, self._last = self._last, {}
        percents = []
        for name, (reading, request) in readings.items():
            if reading is None:
                continue
            self._last[name] = reading
            before = previous.get(name)
            if before is not None:
                percent = percent_of_request(before, reading, request)
                if percent is not None:
                    percents.append(percent)
        if not percents:
            return None
        return sum(percents) / len(percents), len(percents)


# --- the process driver: a session in /proc ---------------------------------------------


def proc_stat_times(text: str) -> tuple[int, int]:
    """(session id, CPU clock ticks incl. reaped children) from a ``/proc/<pid>/stat`` line."""
    # The command name (field 2) may hold spaces and parentheses; it ends at the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): session is field 6, utime..cstime fields 14-17.
    return int(fields[3]), sum(int(value) for value in fields[11:15])


def session_ticks(stats: Iterable[str], session: int) -> int:
    """CPU ticks of every process of ``session`` among ``/proc/<pid>/stat`` texts."""
    total = 0
    for text in stats:
        try:
            sid, ticks = proc_stat_times(text)
        except (ValueError, IndexError):  # not a stat line: skip it
            continue
        if sid == session:
            total += ticks
    return total


def _stat_texts(proc: Path) -> Iterable[str]:
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            yield (entry / "stat").read_text()
        except OSError:  # it ended while we looked
            continue


def session_cpu_seconds(session: int, proc: Path = PROC) -> float | None:
    """CPU seconds used by session ``session`` so far; None if its leader is gone.

    Blocking (a scan of ``/proc``): call it on a thread.
    """
    if not (proc / str(session)).exists():
        return None
    return session_ticks(_stat_texts(proc), session) / os.sysconf("SC_CLK_TCK")


# --- containers: a cgroup --------------------------------------------------------------


def parse_cpu_stat(text: str) -> float:
    """CPU seconds from a cgroup v2 ``cpu.stat`` (its ``usage_usec`` line)."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) / 1e6
    raise ValueError("no usage_usec in cpu.stat")


def parse_cpuacct_usage(text: str) -> float:
    """CPU seconds from a cgroup v1 ``cpuacct.usage`` (nanoseconds)."""
    return int(text.strip()) / 1e9


def cgroup_cpu_files(proc_cgroup: str, must_hold: str, root: Path = CGROUP_ROOT) -> list[Path]:
    """Candidate CPU counter files of a process, from its ``/proc/<pid>/cgroup``.

    Only cgroups whose path holds ``must_hold`` (the container's id) count: a
    pid that is not the container's (the engine runs elsewhere, or the pid was
    reused) yields nothing. Under cgroup v2 the ``0::`` line names the group
    (``cpu.stat``, also under ``unified/`` on hybrid hosts); under v1 the line
    of the ``cpuacct`` controller does (``cpuacct.usage``).
    """
    files: list[Path] = []
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[2].startswith("/") or must_hold not in parts[2]:
            continue
        controllers, path = parts[1], parts[2]
        relative = path.lstrip("/")
        if controllers == "":
            files += [root / relative / "cpu.stat", root / "unified" / relative / "cpu.stat"]
        elif "cpuacct" in controllers.split(","):
            files += [root / mount / relative / "cpuacct.usage" for mount in _V1_MOUNTS]
    # cgroup v1's counter first: on a hybrid host v2's cpu.stat may lack the cpu controller.
    return sorted(files, key=lambda file: file.name != "cpuacct.usage")


def read_cpu_file(path: Path) -> float:
    """CPU seconds from a counter file :func:`cgroup_cpu_files` named; OSError/ValueError if not."""
    text = path.read_text()
    return parse_cpuacct_usage(text) if path.name == "cpuacct.usage" else parse_cpu_stat(text)
