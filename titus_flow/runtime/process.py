"""The process driver: each attempt runs as a local process, like Nomad's raw_exec.

For trusted development use only: hosts without Docker, and benchmarks. A task
runs as the agent's own user, on the agent's network, and can do whatever that
user can (reach the Temporal server, read the agent's files): never run other
people's jobs on it (docs/security.md). There is no isolation:

* the image is ignored: the entrypoint and command run directly on the host
  (one of them must be given);
* resources are reserved by the scheduler but not enforced (no cgroups; an
  ``RLIMIT_AS`` would break runtimes that reserve large address spaces), so
  ``oom_killed`` is always False;
* the environment is the task's plus a few variables of the agent's (``PATH``,
  ``HOME``, locale, ``TZ``, ``TMPDIR``), never the agent's whole environment;
* ``container.network`` and ``read_only_root`` are ignored (it runs on the host);
* ``container.user`` is honoured only when it names the agent's own user: any
  other user is refused (the task fails, saying why), never silently ignored.

Each attempt runs under a tiny supervisor (a POSIX shell script, about a
millisecond to start) in its own session. The supervisor starts the command in a
new process group (``setsid``), records the command's pid, waits for it, kills
whatever is left of its group (as a container's processes die with it) and
writes the exit code to the state directory. Because the supervisor, not the agent, is the
parent, an attempt survives an agent restart: a new driver on the same state
directory adopts a running attempt or reads the exit code of one that ended
while the agent was down. One agent per state directory.

The command's stdout and stderr go straight to the attempt's log file, so the
output is on disk at once and :meth:`ProcessDriver.remove` has little to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import grp
import json
import os
import pwd
import re
import shutil
import signal
import tempfile
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from titus_flow.runtime.base import (
    EXEC_TIMED_OUT,
    OUTPUT_FILE,
    DriverError,
    Exit,
    LaunchRefusedError,
    LaunchRequest,
    ManagedContainer,
    poll_until,
    run_to_end,
)

# Run as ``sh -c _SUPERVISOR sh <pid file> <exit file> <workdir> <argv...>`` with
# stdout a pipe to the driver and stderr the log file. A POSIX shell starts in
# about a millisecond, a Python interpreter in 25 ms of CPU: at hundreds of
# tasks a second that was most of an agent's work. ``setsid`` (util-linux) puts
# the command in a session and process group of its own, so the whole group can
# be signalled. The supervisor prints one line once the command runs (or could
# not start), then closes the pipe. Files are written as one short line each;
# a reader trusts a line only once it ends with a newline.
_SUPERVISOR: Final = r"""
pid_file=$1 exit_file=$2 workdir=$3
shift 3
code=0 error=
if [ $# -eq 0 ]; then
    code=127 error="no command (the process driver ignores the image)"
elif [ -n "$workdir" ] && ! cd "$workdir" 2>/dev/null; then
    code=127 error="cannot enter the working directory $workdir"
elif ! command -v "$1" >/dev/null 2>&1; then
    code=127 error="cannot start '$1': command not found"
fi
if [ -n "$error" ]; then
    echo "titus-flow: $error" >&2
    echo started
    echo "$code $error" >"$exit_file"
    exit 0
fi
setsid "$@" 1>&2 &
child=$!
# "started" means the command's group can be signalled: wait (briefly, with
# builtins only) until setsid has made it.
tries=0
while ! kill -0 -"$child" 2>/dev/null && kill -0 "$child" 2>/dev/null && [ $tries -lt 5000 ]; do
    tries=$((tries + 1))
done
echo "$child" >"$pid_file"
trap 'kill -TERM -$child 2>/dev/null' TERM
trap 'kill -INT -$child 2>/dev/null' INT
echo started
exec 1>&2
while :; do
    wait "$child" 2>/dev/null  # no "Terminated" line in the task's log
    code=$?
    kill -0 "$child" 2>/dev/null || break  # a trapped signal ended the wait, not the child
done
kill -KILL -"$child" 2>/dev/null
echo "$code" >"$exit_file"
"""

_INHERITED_ENV: Final = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_VANISHED: Final = 255  # exit code reported when the supervisor died without a word
_START_WAIT: Final = 5.0  # seconds for an adopted supervisor to report its command's pid
_KILL_WAIT: Final = 5.0  # seconds for a SIGKILLed attempt's supervisor to finish
_HAVE_PROC: Final = Path("/proc/self/stat").exists()


def _refuse_other_user(user: str | None) -> None:
    """Raise :class:`LaunchRefusedError` unless ``user`` is unset or the agent's own user."""
    if user is None:
        return
    uid, gid = os.getuid(), os.getgid()
    name, _, group = user.partition(":")
    try:
        wanted_uid = int(name) if name.isdigit() else pwd.getpwnam(name).pw_uid
        wanted_gid = gid
        if group:
            wanted_gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        wanted_uid = wanted_gid = -1  # no such user or group here
    if (wanted_uid, wanted_gid) != (uid, gid):
        raise LaunchRefusedError(
            f"the process driver runs tasks as the agent's user (uid {uid}, gid {gid}) and"
            f" cannot run as {user!r}: run this job on a docker agent, or drop container.user"
        )


def default_state_dir() -> Path:
    """Where the process driver keeps its state unless told otherwise."""
    return Path(tempfile.gettempdir()) / f"titus-flow-{os.getuid()}" / "process"


@dataclass(frozen=True)
class _Files:
    """The state files of one attempt."""

    state: Path  # JSON written by the driver: the request and the supervisor's pid
    pid: Path  # the command's pid (and process group), written by the supervisor
    exit: Path  # JSON exit record, written by the supervisor when the command ends
    log: Path  # the log when the request names none


@dataclass(frozen=True)
class _State:
    """What the driver recorded at launch (the state file)."""

    name: str
    job_id: str
    task_id: str
    attempt: int
    agent_id: str
    supervisor_pid: int
    supervisor_started: int | None  # start time in clock ticks: guards against pid reuse
    log_path: str
    working_dir: str | None
    env: dict[str, str]


class ProcessDriver:
    """Runs each attempt as a supervised local process group (see the module doc)."""

    name: str = "process"

    def __init__(self, *, state_dir: Path | str | None = None) -> None:
        """Keep state in ``state_dir`` (created, mode 0700; default :func:`default_state_dir`)."""
        if shutil.which("setsid") is None:
            raise DriverError("the process driver needs the setsid command (util-linux)")
        self._dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Supervisors this instance started, kept so asyncio reaps them.
        self._children: dict[str, asyncio.subprocess.Process] = {}
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    # -- the Driver interface ----------------------------------------------------

    async def launch(self, request: LaunchRequest) -> None:
        """Start the attempt under a supervisor; adopt it if it was started before.

        Cancelled, it first finishes recording a supervisor it spawned, so
        :meth:`remove` can find and end it.
        """
        await run_to_end(self._launch(request))

    async def _launch(self, request: LaunchRequest) -> None:
        _refuse_other_user(request.container.user)
        files = self._files(request.name)
        async with self._lock(request.name):
            state = _read_state(files)
            if state is None:
                await self._spawn(request, files)
            elif state.task_id != request.task_id:
                raise DriverError(f"{request.name} in {self._dir} belongs to task {state.task_id}")

    async def wait(self, name: str, timeout: float) -> Exit | None:
        """Wait up to ``timeout`` seconds for the attempt's command to exit."""
        files = self._files(name)
        state = _require_state(files)
        await _wait_gone(state.supervisor_pid, state.supervisor_started, timeout)
        return _exit_of(state, files)

    async def exec(self, name: str, command: list[str], timeout: float) -> int:
        """Run ``command`` on the host with the attempt's environment and directory."""
        files = self._files(name)
        state = _require_state(files)
        if _exit_of(state, files) is not None:
            raise DriverError(f"{name} is not running")
        if not command:
            raise DriverError("exec needs a command")
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                env=state.env,
                cwd=state.working_dir,
                start_new_session=True,
            )
        except FileNotFoundError:
            return 127
        except OSError:
            return 126
        try:
            return _exit_code(await asyncio.wait_for(process.wait(), timeout))
        except TimeoutError:
            _signal_group(process.pid, signal.SIGKILL)
            await process.wait()
            return EXEC_TIMED_OUT

    async def stop(self, name: str, grace: float) -> None:
        """SIGTERM the attempt's process group, then SIGKILL it after ``grace`` seconds."""
        files = self._files(name)
        state = _read_state(files)
        if state is None:
            return
        group = await _running_group(state, files)
        if group is None:
            return
        _signal_group(group, signal.SIGTERM)
        if not await _wait_gone(state.supervisor_pid, state.supervisor_started, grace):
            _signal_group(group, signal.SIGKILL)
            await _wait_gone(state.supervisor_pid, state.supervisor_started, _KILL_WAIT)

    async def save_output(self, name: str, log_path: Path) -> None:
        """Copy the attempt's log to ``log_path`` unless the command writes there already."""
        async with self._lock(name):
            state = _read_state(self._files(name))
            if state is not None:
                await _keep_log(state, log_path)

    async def remove(self, name: str, log_path: Path | None) -> None:
        """Kill the attempt if it still runs, keep its log at ``log_path``, forget it."""
        files = self._files(name)
        async with self._lock(name):
            state = _read_state(files)
            if state is None:
                return
            group = await _running_group(state, files)
            if group is not None:
                _signal_group(group, signal.SIGKILL)
                await _wait_gone(state.supervisor_pid, state.supervisor_started, _KILL_WAIT)
            if log_path is not None:
                await _keep_log(state, log_path)
            if log_path != files.log:
                files.log.unlink(missing_ok=True)
            # Forget the attempt last: a crash part-way leaves it to be removed again.
            for path in (files.pid, files.exit, files.state):
                path.unlink(missing_ok=True)
            self._children.pop(name, None)

    async def live_output(self, name: str, log_path: Path) -> Path | None:
        """The attempt's log file: the command writes straight into it."""
        state = _read_state(self._files(name))
        return None if state is None else Path(state.log_path)

    async def list_managed(self) -> list[ManagedContainer]:
        """Every attempt in the state directory, running or not."""
        managed = []
        for path in sorted(self._dir.glob("*.json")):
            if not _NAME.match(path.stem):
                continue  # not ours
            files = self._files(path.stem)
            state = _read_state(files)
            if state is not None:
                managed.append(
                    ManagedContainer(
                        name=state.name,
                        job_id=state.job_id,
                        task_id=state.task_id,
                        attempt=state.attempt,
                        running=_exit_of(state, files) is None,
                        agent_id=state.agent_id,
                    )
                )
        return managed

    async def image_exists(self, image: str) -> bool:
        """Always true: the process driver ignores images."""
        return True

    async def close(self) -> None:
        """Forget the supervisors this instance started; they and their tasks keep running."""
        self._children.clear()

    # -- internals ---------------------------------------------------------------

    def _files(self, name: str) -> _Files:
        if not _NAME.match(name):
            raise DriverError(f"invalid attempt name {name!r}")
        return _Files(
            state=self._dir / f"{name}.json",
            pid=self._dir / f"{name}.pid",
            exit=self._dir / f"{name}.exit",
            log=self._dir / f"{name}.log",
        )

    def _lock(self, name: str) -> asyncio.Lock:
        # Weakly held: a lock lives while someone is using it, so names don't pile up.
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    async def _spawn(self, request: LaunchRequest, files: _Files) -> None:
        spec = request.container
        argv = [*(spec.entrypoint or []), *(spec.command or [])]
        env = {key: os.environ[key] for key in _INHERITED_ENV if key in os.environ}
        env.update(
            request.environment(
                str(request.output_dir / OUTPUT_FILE) if request.output_dir else None
            )
        )
        log_path = request.log_path or files.log
        for stale in (files.pid, files.exit):  # left over by a remove that crashed
            stale.unlink(missing_ok=True)
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with log_path.open("ab") as log:
                supervisor = await asyncio.create_subprocess_exec(
                    "/bin/sh",
                    "-c",
                    _SUPERVISOR,
                    "sh",
                    str(files.pid),
                    str(files.exit),
                    spec.working_dir or "",
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=log,
                    env=env,
                    start_new_session=True,
                )
        except OSError as err:
            raise DriverError(f"cannot start a supervisor for {request.name}: {err}") from err
        self._children[request.name] = supervisor
        state = _State(
            name=request.name,
            job_id=request.job_id,
            task_id=request.task_id,
            attempt=request.attempt,
            agent_id=request.agent_id,
            supervisor_pid=supervisor.pid,
            supervisor_started=_start_ticks(supervisor.pid),
            log_path=str(log_path),
            working_dir=spec.working_dir,
            env=env,
        )
        _write_private_json(files.state, dataclasses.asdict(state))
        assert supervisor.stdout is not None  # stdout=PIPE
        # EOF once the command runs or failed to start: "started" means started.
        await supervisor.stdout.read()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as err:  # files are written atomically: this is outside tampering
        raise DriverError(f"corrupt state file {path}: {err}") from err


def _read_state(files: _Files) -> _State | None:
    data = _read_json(files.state)
    return None if data is None else _State(**data)


def _require_state(files: _Files) -> _State:
    state = _read_state(files)
    if state is None:
        raise DriverError(f"no process named {files.state.stem}")
    return state


def _write_private_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` atomically, readable by the owner only (it holds the environment)."""
    partial = path.with_name(path.name + ".tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out)
    partial.replace(path)


async def _keep_log(state: _State, log_path: Path) -> None:
    """Copy the attempt's log to ``log_path``, unless it is that file already."""
    source = Path(state.log_path)
    if source != log_path and source.exists():
        await asyncio.to_thread(_copy_file, source, log_path)


def _copy_file(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    shutil.copyfile(source, partial)
    partial.replace(target)


def _read_line(path: Path) -> str | None:
    """A supervisor's one-line file, once completely written (else None)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return text[:-1] if text.endswith("\n") else None


def _mtime(path: Path) -> datetime | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except FileNotFoundError:
        return None


def _exit_of(state: _State, files: _Files) -> Exit | None:
    """The attempt's exit, or None while it runs."""
    # Check liveness before reading the exit record: the supervisor writes the
    # record and then exits, so a dead supervisor's record is already there.
    alive = _alive(state.supervisor_pid, state.supervisor_started)
    record = _read_line(files.exit)
    if record is not None:
        code, _, error = record.partition(" ")
        # The pid file was written as the command started, the record as it ended.
        return Exit(
            exit_code=int(code),
            started_at=_mtime(files.pid),
            finished_at=_mtime(files.exit),
            error=error,
        )
    if alive:
        return None
    return Exit(
        exit_code=_VANISHED,
        error="the process supervisor died without recording an exit (host reboot or kill)",
    )


async def _running_group(state: _State, files: _Files) -> int | None:
    """The process group of the attempt's command while it runs, else None."""
    group: int | None = None

    def known() -> bool:
        nonlocal group
        if _exit_of(state, files) is not None:
            return True
        text = _read_line(files.pid)
        group = int(text) if text else None
        return group is not None

    # Only an adopted supervisor that is still starting has no pid file yet.
    await poll_until(known, _START_WAIT)
    return group if _exit_of(state, files) is None else None


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(group, signum)


def _exit_code(returncode: int) -> int:
    """Docker's convention: 128 + the signal number for a process a signal ended."""
    return 128 - returncode if returncode < 0 else returncode


def _start_ticks(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (None without /proc)."""
    stat = _proc_stat(pid)
    return None if stat is None else stat[1]


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """State letter and start time of ``pid`` from /proc; None if it does not exist."""
    if not _HAVE_PROC:
        return None
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses; it ends at the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def _alive(pid: int, started: int | None) -> bool:
    """Whether ``pid`` still runs and is the process that started at ``started``."""
    if not _HAVE_PROC:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    stat = _proc_stat(pid)
    return (
        stat is not None
        and stat[0] not in ("Z", "X")  # a zombie has exited
        and (started is None or stat[1] == started)
    )


async def _wait_gone(pid: int, started: int | None, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``pid`` to exit; return whether it did.

    Uses a pidfd where the kernel has them (the loop wakes the moment the
    process exits, parent or not), else polls.
    """
    if not _alive(pid, started):
        return True
    if timeout <= 0:
        return False
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except (AttributeError, OSError):
        return await poll_until(lambda: not _alive(pid, started), timeout)
    try:
        if not _alive(pid, started):  # exited, or the pid was reused, before the open
            return True
        loop = asyncio.get_running_loop()
        exited = loop.create_future()
        loop.add_reader(pidfd, _resolve, exited)
        try:
            await asyncio.wait_for(exited, timeout)
        except TimeoutError:
            return False
        finally:
            loop.remove_reader(pidfd)
        return True
    finally:
        os.close(pidfd)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
