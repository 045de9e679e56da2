"""The CPU a Docker container used so far: its cgroup's counter, or the engine's stats.

The cgroup file is read straight from ``/sys/fs/cgroup`` (cgroup v2
``cpu.stat``, or v1 ``cpuacct.usage`` on engines that still use v1), found
through ``/proc/<container pid>/cgroup`` once per container: one file read per
sample, no engine call. Where that cannot work (the engine runs on another
host or in another PID namespace, so the pid is not the container's here), the
engine's one-shot stats answer instead (one API call per sample).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker.errors

from titus_flow.runtime.usage import CGROUP_ROOT, PROC, cgroup_cpu_files, read_cpu_file

_FROM_ENGINE = Path()  # marks a container whose counter only the engine's stats give


class DockerCpu:
    """Reads containers' CPU counters for the docker driver (blocking: run on its pool)."""

    def __init__(
        self, api: Callable[[], Any], *, proc: Path = PROC, cgroup_root: Path = CGROUP_ROOT
    ) -> None:
        """``api`` returns the engine's low-level client."""
        self._api = api
        self._proc = proc
        self._cgroup_root = cgroup_root
        self._files: dict[str, Path] = {}  # container name -> its counter file
        self._lock = threading.Lock()

    def seconds(self, name: str) -> float | None:
        """CPU seconds container ``name`` used so far; None when it does not run."""
        with self._lock:
            file = self._files.get(name)
        if file is not None and file != _FROM_ENGINE:
            try:
                return read_cpu_file(file)
            except (OSError, ValueError):
                pass  # the container ended (or was made again): look it up afresh
        try:
            info = self._api().inspect_container(name)
        except docker.errors.NotFound:
            self.forget(name)
            return None
        if not info["State"].get("Running"):
            self.forget(name)
            return None
        file = self._counter_file(info)
        with self._lock:
            self._files[name] = file
        if file != _FROM_ENGINE:
            return read_cpu_file(file)
        stats = self._api().stats(name, stream=False, one_shot=True)
        return float(stats["cpu_stats"]["cpu_usage"]["total_usage"]) / 1e9

    def forget(self, name: str) -> None:
        """Drop what is known of container ``name`` (it is gone)."""
        with self._lock:
            self._files.pop(name, None)

    def _counter_file(self, info: dict[str, Any]) -> Path:
        try:
            text = (self._proc / str(info["State"]["Pid"]) / "cgroup").read_text()
        except OSError:
            return _FROM_ENGINE
        for file in cgroup_cpu_files(text, info["Id"], self._cgroup_root):
            try:
                read_cpu_file(file)
            except (OSError, ValueError):
                continue
            return file
        return _FROM_ENGINE
