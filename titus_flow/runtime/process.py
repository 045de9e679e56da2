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
import functools
import grp
import os
import pwd
import shutil
import signal
import tempfile
import weakref
from pathlib import Path
from typing import Final

from titus_flow.processes import (
    KILL_WAIT,
    escalate_async,
    signal_group,
    start_ticks,
    wait_gone,
)
from titus_flow.runtime.base import (
    EXEC_TIMED_OUT,
    OUTPUT_FILE,
    DriverError,
    Exit,
    LaunchRefusedError,
    LaunchRequest,
    ManagedContainer,
    run_to_end,
)
from titus_flow.runtime.process_attempts import (
    SUPERVISOR,
    AttemptFiles,
    AttemptState,
    exit_of,
    is_attempt_name,
    keep_log,
    read_state,
    require_state,
    running_group,
    write_state,
)
from titus_flow.runtime.usage import session_cpu_seconds

_INHERITED_ENV: Final = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")


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
        if request.container.mounts:
            raise LaunchRefusedError(
                "the process driver runs tasks as host processes and cannot mount volumes:"
                " run this job on a docker agent, or drop container.mounts"
            )
        files = AttemptFiles.of(self._dir, request.name)
        async with self._lock(request.name):
            state = read_state(files)
            if state is None:
                await self._spawn(request, files)
            elif state.task_id != request.task_id:
                raise DriverError(f"{request.name} in {self._dir} belongs to task {state.task_id}")

    async def wait(self, name: str, timeout: float) -> Exit | None:
        """Wait up to ``timeout`` seconds for the attempt's command to exit."""
        files = AttemptFiles.of(self._dir, name)
        state = require_state(files)
        await wait_gone(state.supervisor_pid, state.supervisor_started, timeout)
        return exit_of(state, files)

    async def exec(self, name: str, command: list[str], timeout: float) -> int:
        """Run ``command`` on the host with the attempt's environment and directory."""
        files = AttemptFiles.of(self._dir, name)
        state = require_state(files)
        if exit_of(state, files) is not None:
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
            signal_group(process.pid, signal.SIGKILL)
            await process.wait()
            return EXEC_TIMED_OUT

    async def stop(self, name: str, grace: float) -> None:
        """SIGTERM the attempt's process group, then SIGKILL it after ``grace`` seconds."""
        files = AttemptFiles.of(self._dir, name)
        state = read_state(files)
        if state is None:
            return
        group = await running_group(state, files)
        if group is None:
            return
        await escalate_async(
            functools.partial(signal_group, group),
            functools.partial(wait_gone, state.supervisor_pid, state.supervisor_started),
            grace,
        )

    async def save_output(self, name: str, log_path: Path) -> None:
        """Copy the attempt's log to ``log_path`` unless the command writes there already."""
        async with self._lock(name):
            state = read_state(AttemptFiles.of(self._dir, name))
            if state is not None:
                await keep_log(state, log_path)

    async def remove(self, name: str, log_path: Path | None) -> None:
        """Kill the attempt if it still runs, keep its log at ``log_path``, forget it."""
        files = AttemptFiles.of(self._dir, name)
        async with self._lock(name):
            state = read_state(files)
            if state is None:
                return
            group = await running_group(state, files)
            if group is not None:
                signal_group(group, signal.SIGKILL)
                await wait_gone(state.supervisor_pid, state.supervisor_started, KILL_WAIT)
            if log_path is not None:
                await keep_log(state, log_path)
            if log_path != files.log:
                files.log.unlink(missing_ok=True)
            # Forget the attempt last: a crash part-way leaves it to be removed again.
            for path in (files.pid, files.exit, files.state):
                path.unlink(missing_ok=True)
            self._children.pop(name, None)

    async def live_output(self, name: str, log_path: Path) -> Path | None:
        """The attempt's log file: the command writes straight into it."""
        state = read_state(AttemptFiles.of(self._dir, name))
        return None if state is None else Path(state.log_path)

    async def cpu_seconds(self, name: str) -> float | None:
        """CPU seconds of the attempt's session so far (see :mod:`~titus_flow.runtime.usage`)."""
        files = AttemptFiles.of(self._dir, name)
        state = read_state(files)
        group = None if state is None else await running_group(state, files)
        if group is None:
            return None
        # The command leads its own session (setsid): its pid is the session id.
        return await asyncio.to_thread(session_cpu_seconds, group)

    async def list_managed(self) -> list[ManagedContainer]:
        """Every attempt in the state directory, running or not."""
        managed = []
        for path in sorted(self._dir.glob("*.json")):
            if not is_attempt_name(path.stem):
                continue  # not ours
            files = AttemptFiles.of(self._dir, path.stem)
            state = read_state(files)
            if state is not None:
                managed.append(
                    ManagedContainer(
                        name=state.name,
                        job_id=state.job_id,
                        task_id=state.task_id,
                        attempt=state.attempt,
                        running=exit_of(state, files) is None,
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

    def _lock(self, name: str) -> asyncio.Lock:
        # Weakly held: a lock lives while someone is using it, so names don't pile up.
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    async def _spawn(self, request: LaunchRequest, files: AttemptFiles) -> None:
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
                    SUPERVISOR,
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
        state = AttemptState(
            name=request.name,
            job_id=request.job_id,
            task_id=request.task_id,
            attempt=request.attempt,
            agent_id=request.agent_id,
            supervisor_pid=supervisor.pid,
            supervisor_started=start_ticks(supervisor.pid),
            log_path=str(log_path),
            working_dir=spec.working_dir,
            env=env,
        )
        write_state(files, state)
        assert supervisor.stdout is not None  # stdout=PIPE
        # EOF once the command runs or failed to start: "started" means started.
        await supervisor.stdout.read()


def _exit_code(returncode: int) -> int:
    """Docker's convention: 128 + the signal number for a process a signal ended."""
    return 128 - returncode if returncode < 0 else returncode
