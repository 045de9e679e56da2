"""Run ``python -m titus_flow ARGS`` as tests do, without paying its imports each time.

A CLI process spends about 0.6 s of CPU importing before it does anything, and
the integration tests run hundreds of them on a 2-core machine. :func:`run_cli`
forks each one from a process that imported the CLI once (``cli_zygote.py``):
every call is still a process of its own, with its own exit code, stdout,
stderr, environment, directory and signals, running the same ``main()`` as the
``titus-flow`` command. ``TITUS_FLOW_TEST_FORK=0`` runs plain subprocesses.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

_ZYGOTE = Path(__file__).with_name("cli_zygote.py")


class _Call:
    """One CLI run in flight: its pid once forked, its exit code once ended."""

    def __init__(self) -> None:
        self.forked = threading.Event()
        self.ended = threading.Event()
        self.pid = 0
        self.code = 0


class _Zygote:
    """The preloaded process of this test process, and the calls it runs."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(_ZYGOTE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.calls: dict[int, _Call] = {}
        self.ids = itertools.count()
        self.lock = threading.Lock()
        threading.Thread(target=self._read_answers, daemon=True).start()

    def _read_answers(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            answer = json.loads(line)
            if "pid" in answer:
                call = self.calls[answer["id"]]
                call.pid = answer["pid"]
                call.forked.set()
            else:
                call = self.calls.pop(answer["id"])
                call.code = answer["code"]
                call.ended.set()
        for call in list(self.calls.values()):  # the zygote died: nothing more will come
            call.code = call.code or -signal.SIGKILL
            call.forked.set()
            call.ended.set()

    def start(self, request: dict[str, Any]) -> _Call:
        """Fork a child for ``request``; returns once it runs."""
        call = _Call()
        with self.lock:
            request["id"] = next(self.ids)
            self.calls[request["id"]] = call
            assert self.proc.stdin is not None
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
        call.forked.wait()
        return call

    def run(self, request: dict[str, Any], timeout: float | None) -> int:
        """Run a child for ``request`` to its end; its exit code (killed past ``timeout``)."""
        call = self.start(request)
        if not call.ended.wait(timeout):
            os.kill(call.pid, signal.SIGKILL)
            call.ended.wait()
            raise subprocess.TimeoutExpired(request["argv"], timeout or 0)
        return call.code

    def close(self) -> None:
        """Let the zygote go: it ends once its last child has (clusters stop theirs)."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()


_zygote: _Zygote | None = None
_zygote_lock = threading.Lock()


def _shared_zygote() -> _Zygote:
    global _zygote
    with _zygote_lock:
        if _zygote is None or _zygote.proc.poll() is not None:
            _zygote = _Zygote()
            atexit.register(_zygote.close)
        return _zygote


class ForkedProcess:
    """A long-running CLI process (worker, agent, ...) forked from the preloaded one.

    The parts of ``subprocess.Popen`` the tests use: ``pid``, ``poll``, ``wait``,
    ``returncode``, ``send_signal``, ``terminate`` and ``kill``.
    """

    def __init__(self, args: list[str], call: _Call) -> None:
        self.args = args
        self.pid = call.pid
        self._call = call

    @property
    def returncode(self) -> int | None:
        return self._call.code if self._call.ended.is_set() else None

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._call.ended.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return self._call.code

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def start_cli(
    args: Sequence[str],
    *,
    log: Path,
    env: Mapping[str, str],
    cwd: str | Path | None = None,
    python: str = sys.executable,
) -> ForkedProcess | subprocess.Popen[bytes]:
    """``Popen([python, "-m", "titus_flow", *args], start_new_session=True)``, output
    appended to ``log``; forked from the preloaded process as :func:`run_cli` is."""
    argv = [python, "-m", "titus_flow", *args]
    if python != sys.executable or os.environ.get("TITUS_FLOW_TEST_FORK") == "0":
        with log.open("ab") as out:
            return subprocess.Popen(
                argv,
                env=env,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
    log.touch()
    request = {
        "argv": list(args),
        "env": dict(env),
        "cwd": str(cwd if cwd is not None else os.getcwd()),
        "stdin": os.devnull,
        "stdout": str(log),
        "stderr": str(log),
        "append": True,
        "session": True,
    }
    return ForkedProcess(argv, _shared_zygote().start(request))


def _read(stream: IO[bytes]) -> str:
    stream.seek(0)
    return stream.read().decode(errors="replace")


def run_cli(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float | None = None,
    input: str | None = None,
    python: str = sys.executable,
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run([python, "-m", "titus_flow", *args], capture_output=True, text=True)``.

    Forked from the preloaded process when ``python`` is this interpreter
    (another venv's Python, e.g. an installed wheel's, runs as a subprocess).
    Raises ``subprocess.TimeoutExpired`` past ``timeout``, as ``subprocess.run``.
    """
    argv = [python, "-m", "titus_flow", *args]
    if python != sys.executable or os.environ.get("TITUS_FLOW_TEST_FORK") == "0":
        return subprocess.run(
            argv, env=env, cwd=cwd, timeout=timeout, input=input, capture_output=True, text=True
        )
    with (
        tempfile.NamedTemporaryFile() as stdin,
        tempfile.NamedTemporaryFile() as stdout,
        tempfile.NamedTemporaryFile() as stderr,
    ):
        stdin.write((input or "").encode())
        stdin.flush()
        try:
            code = _shared_zygote().run(
                {
                    "argv": list(args),
                    "env": dict(os.environ if env is None else env),
                    "cwd": str(cwd if cwd is not None else os.getcwd()),
                    "stdin": stdin.name if input is not None else os.devnull,
                    "stdout": stdout.name,
                    "stderr": stderr.name,
                },
                timeout,
            )
        except subprocess.TimeoutExpired as expired:
            raise subprocess.TimeoutExpired(
                argv, expired.timeout, _read(stdout), _read(stderr)
            ) from None
        return subprocess.CompletedProcess(argv, code, _read(stdout), _read(stderr))
