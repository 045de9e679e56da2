"""CPU use of tasks: the usage math and the kernel files' parsers (titus_flow.runtime.usage)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest

from titus_flow.processes import HAVE_PROC
from titus_flow.runtime.docker_usage import DockerCpu
from titus_flow.runtime.usage import (
    CpuReading,
    TaskCpuAverage,
    cgroup_cpu_files,
    parse_cpu_stat,
    parse_cpuacct_usage,
    percent_of_request,
    proc_stat_times,
    read_cpu_file,
    session_cpu_seconds,
    session_ticks,
)

# --- the math -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "request_cores", "percent"),
    [
        ((0.0, 0.0), (1.0, 2.0), 1.0, 50.0),  # half a core of one requested
        ((1.0, 10.0), (2.0, 11.0), 0.5, 200.0),  # a full core of half a core requested
        ((3.0, 0.0), (3.0, 5.0), 2.0, 0.0),  # idle
        ((5.0, 0.0), (4.0, 5.0), 1.0, 0.0),  # the counter went back: idle, never negative
        ((0.0, 5.0), (1.0, 5.0), 1.0, None),  # no time passed
    ],
)
def test_percent_of_request(
    before: tuple[float, float],
    after: tuple[float, float],
    request_cores: float,
    percent: float | None,
) -> None:
    got = percent_of_request(CpuReading(*before), CpuReading(*after), request_cores)
    assert got == (None if percent is None else pytest.approx(percent))


def test_a_task_counts_from_its_second_reading_and_is_forgotten_when_gone() -> None:
    average = TaskCpuAverage()
    assert average.observe({"a": (CpuReading(0.0, 0.0), 1.0)}) is None  # nothing to compare
    assert average.observe(
        {"a": (CpuReading(1.0, 2.0), 1.0), "b": (CpuReading(7.0, 2.0), 1.0)}
    ) == (pytest.approx(50.0), 1)
    # Two tasks now: 100 % and 25 % of their requests average to 62.5 %, weight 2.
    assert average.observe(
        {"a": (CpuReading(3.0, 4.0), 1.0), "b": (CpuReading(8.0, 4.0), 2.0)}
    ) == (pytest.approx(62.5), 2)
    # "a" unreadable this period: left out, and it starts over afterwards.
    assert average.observe({"a": (None, 1.0), "b": (CpuReading(8.0, 6.0), 2.0)}) == (0.0, 1)
    assert average.observe({"a": (CpuReading(9.0, 8.0), 1.0)}) is None
    assert average.observe({}) is None
    assert average.observe({"b": (CpuReading(9.0, 9.0), 2.0)}) is None  # "b" was forgotten


# --- the kernel's files ---------------------------------------------------------------------

# Field 2 holds a space and a parenthesis; session 4242; utime 100, stime 20, cutime 3, cstime 1.
STAT = "4242 (my (odd) task) R 1 4242 4242 0 -1 4194304 10 0 0 0 100 20 3 1 20 0 1 0 999 0 0"


def test_proc_stat_times() -> None:
    assert proc_stat_times(STAT) == (4242, 124)


def test_session_ticks_adds_the_session_and_skips_the_rest() -> None:
    other = STAT.replace("4242 4242 0", "4242 77 0")  # same group, another session
    assert session_ticks([STAT, STAT, other, "garbage"], 4242) == 248


def test_cgroup_counters() -> None:
    assert parse_cpu_stat("usage_usec 2500000\nuser_usec 2000000\n") == 2.5
    assert parse_cpuacct_usage("1500000000\n") == 1.5
    with pytest.raises(ValueError, match="usage_usec"):
        parse_cpu_stat("user_usec 1\n")


CID = "d1566a151b5c"


def test_cgroup_files_of_a_v1_host_lead_with_cpuacct() -> None:
    text = f"2:cpuacct:/docker/{CID}\n1:cpu:/docker/{CID}\n0::/docker/{CID}\n"
    files = cgroup_cpu_files(text, CID, Path("/cg"))
    assert files[0] == Path(f"/cg/cpuacct/docker/{CID}/cpuacct.usage")
    assert Path(f"/cg/docker/{CID}/cpu.stat") in files
    assert Path(f"/cg/unified/docker/{CID}/cpu.stat") in files


def test_cgroup_files_of_a_v2_host_and_of_a_foreign_pid() -> None:
    text = f"0::/system.slice/docker-{CID}.scope\n"
    assert cgroup_cpu_files(text, CID, Path("/cg"))[0] == Path(
        f"/cg/system.slice/docker-{CID}.scope/cpu.stat"
    )
    assert cgroup_cpu_files("0::/user.slice/session-1.scope\n", CID) == []  # not the container


def test_read_cpu_file_by_its_kind(tmp_path: Path) -> None:
    (tmp_path / "cpu.stat").write_text("usage_usec 1000000\n")
    (tmp_path / "cpuacct.usage").write_text("3000000000\n")
    assert read_cpu_file(tmp_path / "cpu.stat") == 1.0
    assert read_cpu_file(tmp_path / "cpuacct.usage") == 3.0


@pytest.mark.skipif(not HAVE_PROC, reason="needs /proc")
def test_session_cpu_seconds_of_a_busy_session() -> None:
    busy = subprocess.Popen(["setsid", "sh", "-c", "while :; do :; done"])
    try:
        first = session_cpu_seconds(busy.pid)
        assert first is not None

        async def used_some() -> None:
            while (session_cpu_seconds(busy.pid) or 0.0) - first < 0.05:
                await asyncio.sleep(0.05)

        asyncio.run(asyncio.wait_for(used_some(), 10))
    finally:
        busy.kill()
        busy.wait()
    assert session_cpu_seconds(busy.pid) is None  # its leader is gone


# --- the docker driver's reader -------------------------------------------------------------


class FakeEngine:
    """The low-level API calls DockerCpu makes."""

    def __init__(self, pid: int, running: bool = True) -> None:
        self.pid, self.running, self.stats_calls = pid, running, 0

    def inspect_container(self, name: str) -> dict[str, Any]:
        return {"Id": CID, "State": {"Running": self.running, "Pid": self.pid}}

    def stats(self, name: str, stream: bool, one_shot: bool) -> dict[str, Any]:
        self.stats_calls += 1
        return {"cpu_stats": {"cpu_usage": {"total_usage": 4_000_000_000}}}


def test_docker_cpu_reads_the_cgroup_file_and_falls_back_on_the_engine(tmp_path: Path) -> None:
    proc, cgroup = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "10").mkdir(parents=True)
    (proc / "10" / "cgroup").write_text(f"2:cpuacct:/docker/{CID}\n0::/docker/{CID}\n")
    counter = cgroup / "cpuacct" / "docker" / CID / "cpuacct.usage"
    counter.parent.mkdir(parents=True)
    counter.write_text("2000000000\n")
    engine = FakeEngine(pid=10)
    reader = DockerCpu(lambda: engine, proc=proc, cgroup_root=cgroup)
    assert reader.seconds("c") == 2.0
    counter.write_text("2500000000\n")
    assert reader.seconds("c") == 2.5
    assert engine.stats_calls == 0
    # A pid whose cgroup is not the container's (another host's engine): the engine's stats.
    engine.pid = 11
    (proc / "11").mkdir()
    (proc / "11" / "cgroup").write_text("0::/\n")
    counter.unlink()
    assert reader.seconds("c") == 4.0
    assert engine.stats_calls == 1
    engine.running = False
    assert reader.seconds("c") is None
