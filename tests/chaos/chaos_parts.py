"""The parts the chaos suite takes down: a Temporal server and a Docker engine of the test's own.

Both can be killed and restarted mid-run without touching the rest of the test
session: the server keeps its state in a SQLite file and comes back on the same
port and database; the engine has its own socket and data root and runs with
``--live-restore``, as production engines should, so its restart leaves the
task containers running.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from titus_flow import stack
from titus_flow.runtime.base import LABEL_ATTEMPT, LABEL_TASK_ID


def _wait(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {timeout:g}s")
        time.sleep(0.1)


@dataclass
class TemporalServer:
    """A dev server on a fixed port and SQLite file: SIGKILL it and it comes back whole."""

    binary: Path
    port: int
    db: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = stack.server_argv(self.binary, port=self.port, ui_port=None, db_filename=self.db)
        self.proc = stack.start_process(argv, self.log)
        stack.wait_ready(self.binary, self.address, self._alive, self.log)

    def kill9(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            stack.stop_process_group(self.proc.pid, self._alive)

    def _alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


CONTAINERD_CONFIG = """version = 2
root = "{root}/ctd-root"
state = "{root}/ctd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{root}/ctd.sock"
"""


@dataclass
class DockerEngine:
    """A dockerd of this test's own (``--live-restore``), beside the machine's engine.

    It runs on a containerd of its own, started apart as hosts run it (a systemd
    unit of its own): a dockerd that manages its containerd stops it on exit,
    and containers that end meanwhile lose their exit code (255).
    """

    root: Path  # short: containerd's sockets live under it
    proc: subprocess.Popen[bytes] | None = None
    containerd: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.root}/d.sock"

    def start(self) -> None:
        """Start containerd (once) and dockerd; return when the engine answers."""
        log = (self.root / "dockerd.log").open("ab")
        if self.containerd is None:
            config = self.root / "containerd.toml"
            config.write_text(CONTAINERD_CONFIG.format(root=self.root))
            self.containerd = subprocess.Popen(
                ["containerd", "--config", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            _wait(lambda: (self.root / "ctd.sock").exists(), "the test's containerd to listen")
        argv = ["dockerd", f"--data-root={self.root / 'data'}", f"--exec-root={self.root / 'x'}"]
        argv += [f"--pidfile={self.root / 'dockerd.pid'}", f"--host={self.host}"]
        argv += [f"--containerd={self.root / 'ctd.sock'}", "--live-restore"]
        argv += ["--bridge=none", "--iptables=false", "--ip6tables=false"]
        self.proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait(self._answers, "the test's dockerd to answer")

    def restart(self) -> None:
        """Stop the engine as ``systemctl restart docker`` would, and start it again."""
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(30)
        self.start()

    def docker(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the docker CLI against this engine."""
        return subprocess.run(
            ["docker", "-H", self.host, *args], capture_output=True, text=True, check=False
        )

    def load_image(self, image: str) -> None:
        """Copy ``image`` from the machine's engine (there is no registry to pull from)."""
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        assert save.stdout is not None
        subprocess.run(
            ["docker", "-H", self.host, "load"], stdin=save.stdout, check=True, capture_output=True
        )
        assert save.wait() == 0

    def container_ids(self, *filters: str) -> list[str]:
        args = [arg for f in filters for arg in ("--filter", f)]
        return self.docker("ps", "-aq", *args).stdout.split()

    def stop(self) -> None:
        """Remove every container (live-restore would keep them), stop, unmount, delete."""
        networks: list[str] = []
        if self.proc is not None and self.proc.poll() is None:
            ids = self.container_ids()
            if ids:
                self.docker("rm", "-f", *ids)
            networks = self.docker("network", "ls", "-q", "--filter", "type=custom").stdout.split()
            self.docker("network", "prune", "-f")
        for proc in (self.proc, self.containerd):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        self._kill_strays()
        for network in networks:  # its bridge would outlive the engine, and use up the pools
            subprocess.run(["ip", "link", "delete", f"br-{network[:12]}"], capture_output=True)
        mounts = [
            line.split()[1]
            for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1].startswith(str(self.root))
        ]
        for mount in sorted(mounts, reverse=True):  # deepest first
            subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
        keep = os.environ.get("TITUS_FLOW_CHAOS_KEEP_LOG")  # debugging the engine's side
        if keep:
            shutil.copy(self.root / "dockerd.log", keep)
        shutil.rmtree(self.root, ignore_errors=True)

    def _kill_strays(self) -> None:
        """SIGKILL any shim of this engine still running, with its containers' processes."""
        parents: dict[int, int] = {}
        shims = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            if b"containerd-shim" in cmdline and str(self.root).encode() in cmdline:
                shims.append(int(entry.name))
        doomed = set(shims)
        while True:  # every descendant of a shim: its containers' processes
            more = {pid for pid, parent in parents.items() if parent in doomed} - doomed
            if not more:
                break
            doomed |= more
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"dockerd exited:\n{(self.root / 'dockerd.log').read_text()}")
        return self.docker("version", "--format", "{{.Server.Version}}").returncode == 0


class ContainerStarts:
    """Every container start of the engine, from ``docker events``, across engine restarts.

    A restart ends the event stream; :meth:`follow` is called again after it and
    asks for the events since the last one seen, so none is missed.
    """

    def __init__(self, engine: DockerEngine) -> None:
        self._engine = engine
        self._since = f"{time.time():.3f}"
        self._proc: subprocess.Popen[str] | None = None
        self.ids_by_attempt: dict[tuple[str, str], set[str]] = {}

    def follow(self) -> None:
        """(Re)start reading the stream from where it stopped."""
        self.collect()
        argv = ["docker", "-H", self._engine.host, "events", "--since", self._since]
        argv += ["--filter", "type=container", "--filter", "event=start", "--format", "{{json .}}"]
        self._proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        os.set_blocking(self._proc.stdout.fileno(), False)  # type: ignore[union-attr]

    def collect(self) -> None:
        """Read what the stream has printed so far."""
        if self._proc is None or self._proc.stdout is None:
            return
        for line in iter(self._proc.stdout.readline, ""):
            event = json.loads(line)
            labels = event["Actor"]["Attributes"]
            if LABEL_TASK_ID in labels:
                key = (labels[LABEL_TASK_ID], labels[LABEL_ATTEMPT])
                self.ids_by_attempt.setdefault(key, set()).add(event["id"])
            self._since = f"{event['timeNano'] / 1e9:.9f}"

    def close(self) -> None:
        self.collect()
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
