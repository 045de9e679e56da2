"""The process that CLI test runs fork from (see ``cli_fork.py``); not a test module.

It imports the CLI once, starts no thread, then serves requests on stdin, one
JSON object a line: ``{"id", "argv", "env", "cwd", "stdin", "stdout", "stderr"}``
(the last three are file paths; optional ``append``: append to the output files,
``session``: start a new session, as ``Popen(start_new_session=True)``). For each
it forks a child that becomes ``python -m titus_flow ARGV`` in ``cwd`` with
exactly ``env``, and answers ``{"id", "pid"}`` at once and ``{"id", "code"}``
when the child has exited.
It exits when stdin closes (its test process is gone).
"""

from __future__ import annotations

import importlib
import json
import os
import select
import signal
import sys
import threading
import traceback
from typing import Any

PRELOADED = (
    "titus_flow.client",
    "titus_flow.worker",
    "titus_flow.userflows",
    "titus_flow.runtime.docker",
    "titus_flow.runtime.process",
)


def _preload() -> None:
    """Import what every command imports, so no child pays for it."""
    import titus_flow.cli as cli_package

    # Imported lazily by the commands: most use the client; workers and agents the rest.
    for module in PRELOADED:
        importlib.import_module(module)
    cli_package._register_commands()
    # A fork copies one thread only: with more, a lock another thread held
    # could stay locked forever in the child.
    assert threading.active_count() == 1, threading.enumerate()


def _become_cli(request: dict[str, Any]) -> None:
    """In the child: take the request's files, directory and environment, run the CLI."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        if request.get("session"):
            os.setsid()  # as Popen(start_new_session=True): a group of its own to kill
        write = os.O_WRONLY | (os.O_APPEND if request.get("append") else os.O_TRUNC)
        for fd, path, flags in (
            (0, request["stdin"], os.O_RDONLY),
            (1, request["stdout"], write),
            (2, request["stderr"], write),
        ):
            opened = os.open(path, flags)
            os.dup2(opened, fd)
            os.close(opened)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = [sys.argv[0], *request["argv"]]
        sys.path[0] = os.getcwd()  # as `python -m` has it

        from titus_flow.cli import main

        main()  # ends the process itself (os._exit)
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    except BaseException:
        traceback.print_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _answer(message: dict[str, Any]) -> None:
    # os.write, never sys.stdout: a child must not inherit buffered answers.
    os.write(1, (json.dumps(message) + "\n").encode())


def serve() -> None:
    """Fork a CLI child per request line until stdin closes."""
    _preload()
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: dict[int, int] = {}  # pid -> request id
    pending = b""
    open_input = True
    while open_input or children:
        watched = [wake_read, 0] if open_input else [wake_read]
        ready, _, _ = select.select(watched, [], [], 1.0)
        if wake_read in ready:
            os.read(wake_read, 4096)
        while children:  # reap every child that has ended
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            _answer({"id": children.pop(pid), "code": os.waitstatus_to_exitcode(status)})
        if 0 not in ready:
            continue
        chunk = os.read(0, 65536)
        open_input = bool(chunk)
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            request = json.loads(line)
            pid = os.fork()
            if pid == 0:
                os.close(wake_read)
                os.close(wake_write)
                _become_cli(request)
            children[pid] = request["id"]
            _answer({"id": request["id"], "pid": pid})


if __name__ == "__main__":
    serve()
