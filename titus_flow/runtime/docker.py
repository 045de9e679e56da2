"""The Docker driver: one container per attempt, through the Docker Engine API.

The docker SDK is blocking, so every call runs on threads the driver owns
rather than on asyncio's small default executor: ``wait``, ``stop`` and
``remove`` block for seconds (one ``wait`` per running task, all the time), so
they get a pool of their own and can never delay a launch.

Launch is the latency-critical path, so its happy path is exactly two API calls
(create, start); the image check, pull and adoption of an existing container
only happen when create answers 404 or 409.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import functools
import math
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar

import docker
import docker.errors
import docker.types
import requests.exceptions

from titus_flow.processes import poll_until, write_atomically
from titus_flow.runtime.base import (
    CONTAINER_OUTPUT_DIR,
    EXEC_TIMED_OUT,
    LABEL_AGENT_ID,
    LABEL_ATTEMPT,
    LABEL_JOB_ID,
    LABEL_TASK_ID,
    OUTPUT_FILE,
    DriverError,
    EngineUnavailableError,
    Exit,
    ImageNotFoundError,
    ImagePullError,
    LaunchRefusedError,
    LaunchRequest,
    ManagedContainer,
    run_to_end,
)
from titus_flow.runtime.engine_start import engine_started_at, socket_path
from titus_flow.runtime.mirror import OutputMirrors, TooManyMirrorsError, mirror_path
from titus_flow.runtime.policy import image_refusal

_T = TypeVar("_T")

NETWORK_MODES: Final = ("host", "none")
"""Modes an operator may force on every container (tests); by default each task's own."""

TASK_NETWORK: Final = "titus-flow-tasks"
"""The bridge network an agent makes for its tasks (``network: bridge``) unless told another."""

TASK_CAPABILITIES: Final = ("KILL", "NET_BIND_SERVICE", "SETGID", "SETUID")
"""The only capabilities a task keeps; every other one is dropped.

* ``KILL``: a task's root may signal its own processes run as other users
  (an entrypoint that dropped privileges and later stops its server).
* ``NET_BIND_SERVICE``: servers may bind ports below 1024 inside their own
  network namespace (published host ports are the agent's to choose).
* ``SETUID``, ``SETGID``: an entrypoint may switch to an unprivileged user
  (``su-exec``, ``gosu``); with ``no-new-privileges`` nothing can switch back up.

Left out on purpose: ``CHOWN``, ``DAC_OVERRIDE`` and ``FOWNER`` (root in a task
then only owns what it owns: it cannot chown or override the permissions of the
host directory mounted for its output), ``NET_RAW`` (raw sockets: spoofing),
``MKNOD``, ``SYS_CHROOT``, ``SETFCAP``, ``SETPCAP``, ``AUDIT_WRITE`` and
``FSETID``, all in Docker's default set, and ``SYS_ADMIN``
(``mount``), ``SYS_TIME`` (the clock) and ``SYS_MODULE`` (kernel modules), which
Docker never grants by default either.
"""

_ICC_OFF: Final = {"com.docker.network.bridge.enable_icc": "false"}
_TMPFS_OPTIONS: Final = "rw,nosuid,nodev"
_LOG_FILES: Final = 2  # the engine's json-file log of a container: this many files of max-size
_RUNNING_STATES: Final = frozenset({"running", "paused", "restarting"})
_QUICK_THREADS: Final = 16  # for calls that answer in milliseconds (create, start, inspect)
_ADOPT_TRIES: Final = 50
_MIN_MEMORY_MIB: Final = 6
_ADOPT_RETRY_DELAY: Final = 0.02  # seconds


class DockerDriver:
    """Runs each attempt as a Docker container named after the attempt.

    Least privilege by default (docs/security.md): each task has its own network
    namespace on the agent's bridge network, keeps only
    :data:`TASK_CAPABILITIES`, cannot gain privileges, is limited to the task's
    resources (CPU, memory without swap, a PID limit) and to a capped log, and
    may have a read-only root filesystem. Containers are never auto-removed:
    :meth:`remove` first copies their output to the attempt's log file.
    ``disk``, ``gpu`` and ``network_mbps`` are reserved by the scheduler but
    not enforced here.
    """

    name: str = "docker"

    def __init__(
        self,
        *,
        base_url: str | None = None,
        network_mode: str | None = None,
        task_network: str = TASK_NETWORK,
        publish_address: str = "127.0.0.1",
        allow_host_network: bool = False,
        allowed_images: Sequence[str] = (),
        pids_limit: int = 1024,
        log_max_mib: int = 32,
        api_timeout: float = 60.0,
        max_waits: int = 256,
        extra_labels: Mapping[str, str] | None = None,
    ) -> None:
        """Configure the driver; the daemon is first contacted on the first call.

        ``base_url`` defaults to ``DOCKER_HOST`` or the local socket.
        Each task runs on the network its spec asks for (``bridge``: the
        ``task_network``, created on first use, its named ports published on
        ``publish_address``); ``network_mode`` (``host`` or ``none``) forces one
        on every task instead, for tests. ``network: host`` is refused unless
        ``allow_host_network``. ``allowed_images`` restricts images (see
        :func:`~titus_flow.runtime.policy.image_refusal`). ``log_max_mib``
        caps the output the engine keeps per container. ``max_waits`` bounds
        the calls that block for seconds (``wait``, ``stop``, ``remove``)
        running at once; more queue. ``extra_labels`` go on every container,
        under titus-flow's own.
        """
        if network_mode is not None and network_mode not in NETWORK_MODES:
            raise ValueError(
                f"network_mode {network_mode!r} is not supported: use one of {NETWORK_MODES}"
            )
        if pids_limit < 1 or max_waits < 1 or log_max_mib < _LOG_FILES:
            raise ValueError("pids_limit, max_waits and log_max_mib must be positive")
        self._base_url = base_url
        self._network_mode = network_mode
        self._task_network = task_network
        self._publish_address = publish_address
        self._allow_host_network = allow_host_network
        self._allowed_images = tuple(allowed_images)
        self._log_config = docker.types.LogConfig(
            type="json-file",
            config={"max-size": f"{log_max_mib // _LOG_FILES}m", "max-file": str(_LOG_FILES)},
        )
        self._pids_limit = pids_limit
        self._network_id: str | None = None  # of the task network, once known
        self._extra_labels = dict(extra_labels or {})
        self._api_timeout = api_timeout
        self._pool_size = _QUICK_THREADS + max_waits
        self._quick = ThreadPoolExecutor(_QUICK_THREADS, thread_name_prefix="titus-docker")
        self._slow = ThreadPoolExecutor(max_waits, thread_name_prefix="titus-docker-wait")
        self._client: docker.DockerClient | None = None
        self._client_lock = threading.Lock()
        self._mirrors = OutputMirrors()  # live output of running containers, while read

    # -- the Driver interface ----------------------------------------------------

    async def launch(self, request: LaunchRequest) -> None:
        """Create and start the container, adopting one of the same name.

        Cancelled, it returns only once the engine calls under way have ended
        (a pull runs to its end) and creates or starts nothing after that, so
        the caller can then remove whatever exists by name.
        """
        aborted = threading.Event()
        await run_to_end(self._call("launch", self._launch, request, aborted), aborted.set)

    async def wait(self, name: str, timeout: float) -> Exit | None:
        """Wait up to ``timeout`` seconds for the container to exit."""
        return await self._call("wait", self._wait, name, timeout, slow=True)

    async def exec(self, name: str, command: list[str], timeout: float) -> int:
        """Run ``command`` in the container; 124 if it outlasts ``timeout``."""
        exec_id = await self._call("exec", self._exec_start, name, command)
        exit_code: int | None = None

        async def finished() -> bool:
            nonlocal exit_code
            info = await self._call("exec", self._exec_inspect, exec_id)
            if info["Running"] or info["ExitCode"] is None:
                return False
            exit_code = int(info["ExitCode"])
            return True

        # Polled rather than blocking a thread: the exec API has no per-call
        # timeout, and a hung check must not pin a worker.
        if await poll_until(finished, timeout) and exit_code is not None:
            return exit_code
        return EXEC_TIMED_OUT

    async def stop(self, name: str, grace: float) -> None:
        """Send the stop signal, then SIGKILL after ``grace`` seconds."""
        await self._call("stop", self._stop, name, grace, slow=True)

    async def save_output(self, name: str, log_path: Path) -> None:
        """Copy the container's output so far to ``log_path`` (atomically)."""
        await self._call("save output", self._save_output, name, log_path, slow=True)

    async def remove(self, name: str, log_path: Path | None) -> None:
        """Copy the container's output to ``log_path``, then force-remove it."""
        await self._call("remove", self._remove, name, log_path, slow=True)

    async def live_output(self, name: str, log_path: Path) -> Path | None:
        """A mirror of the container's output stream (see :mod:`titus_flow.runtime.mirror`)."""
        path = mirror_path(log_path)
        try:
            self._mirrors.ensure(
                name, path, lambda: self._api().logs(name, stream=True, follow=True)
            )
        except TooManyMirrorsError as err:
            raise DriverError(f"cannot read the live output of {name}: {err}") from err
        return path

    async def list_managed(self) -> list[ManagedContainer]:
        """Containers in any state that carry titus-flow's task label."""
        return await self._call("list", self._list_managed)

    async def image_exists(self, image: str) -> bool:
        """Whether ``image`` is present locally."""
        return await self._call("image check", self._image_exists, image)

    async def close(self) -> None:
        """Close the API connections and the thread pool.

        The task network stays, as Docker's own bridge does: the engine lets a
        network go while containers that are created but not yet started are on
        it, so removing it could fail another agent's launch on this host.
        """
        self._mirrors.close()
        for pool in (self._quick, self._slow):
            pool.shutdown(wait=False, cancel_futures=True)
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # -- plumbing ----------------------------------------------------------------

    async def _call(self, what: str, fn: Callable[..., _T], *args: Any, slow: bool = False) -> _T:
        """Run a blocking SDK call on a driver pool; SDK errors become DriverError."""
        pool = self._slow if slow else self._quick
        try:
            return await asyncio.get_running_loop().run_in_executor(
                pool, functools.partial(fn, *args)
            )
        except docker.errors.APIError as err:
            raise DriverError(f"docker {what} failed: {err.explanation or err}") from err
        except requests.exceptions.ConnectionError as err:
            raise EngineUnavailableError(f"docker {what} failed: {err}") from err
        except (docker.errors.DockerException, OSError) as err:  # OSError: requests, log file
            raise DriverError(f"docker {what} failed: {err}") from err

    def _api(self) -> Any:
        """Return the low-level API client (``docker.APIClient``), connecting on first use.

        The low-level client is used throughout because the high-level one adds
        an inspect round trip to nearly every call.
        """
        with self._client_lock:
            if self._client is None:
                options: dict[str, Any] = {
                    "timeout": self._api_timeout,
                    # A pooled connection per thread: none is dropped (with a warning).
                    "max_pool_size": self._pool_size,
                }
                if self._base_url is None:
                    self._client = docker.from_env(**options)
                else:
                    self._client = docker.DockerClient(base_url=self._base_url, **options)
            return self._client.api

    # -- blocking implementations (run on the pool) ------------------------------

    def _launch(self, request: LaunchRequest, aborted: threading.Event) -> None:
        self._refuse_unless_allowed(request)

        def go_on() -> None:
            if aborted.is_set():
                raise DriverError(f"launch of {request.name} cancelled")

        # A concurrent create holds the name (409) a moment before its container
        # can be inspected (404), so adoption retries briefly.
        for _ in range(_ADOPT_TRIES):
            go_on()
            try:
                created = self._create(request)
            except docker.errors.ImageNotFound:
                self._pull(request.container.image)
                go_on()  # a kill during a long pull: create nothing
                created = self._create(request)
            except docker.errors.NotFound:
                # The task network is gone (removed by hand since this driver
                # made it): make it again, once per attempt to create.
                self._network_id = None
                created = self._create(request)
            if created:
                go_on()
                self._start(request.name)
                return
            if self._adopt(request):
                return
            time.sleep(_ADOPT_RETRY_DELAY)
        raise DriverError(f"container name {request.name} is taken, yet no such container appears")

    def _create(self, request: LaunchRequest) -> bool:
        """Create the container; False if the name is taken (by an earlier launch)."""
        api = self._api()
        spec = request.container
        # Docker refuses limits under 6 MB; the spec allows 4 MiB.
        memory = max(request.resources.memory, _MIN_MEMORY_MIB) * 1024 * 1024
        network = self._network_mode or spec.network
        ports = list(request.ports.values()) if network == "bridge" else []
        host_config = api.create_host_config(
            network_mode=self._ensure_network() if network == "bridge" else network,
            # The task listens on its host port number inside its own namespace,
            # so PORT_<NAME> means the same on every network mode.
            port_bindings={port: (self._publish_address, port) for port in ports} or None,
            nano_cpus=round(request.resources.cpu * 1e9),
            mem_limit=memory,
            memswap_limit=memory,  # equal to the memory limit: no swap
            pids_limit=self._pids_limit,
            cap_drop=["ALL"],
            cap_add=list(TASK_CAPABILITIES),
            security_opt=["no-new-privileges"],
            read_only=spec.read_only_root,
            # /tmp stays writable on a read-only root; it counts against the memory limit.
            tmpfs=({"/tmp": f"{_TMPFS_OPTIONS},size={memory}"} if spec.read_only_root else None),
            log_config=self._log_config,
            # A tiny init as PID 1 forwards SIGTERM (a shell or server running as
            # PID 1 ignores it, so every stop waited out its grace) and reaps zombies.
            init=True,
            binds=(
                {str(request.output_dir): {"bind": CONTAINER_OUTPUT_DIR, "mode": "rw"}}
                if request.output_dir is not None
                else None
            ),
        )
        try:
            api.create_container(
                spec.image,
                name=request.name,
                entrypoint=spec.entrypoint,
                command=spec.command,
                environment=request.environment(
                    f"{CONTAINER_OUTPUT_DIR}/{OUTPUT_FILE}" if request.output_dir else None
                ),
                labels={**self._extra_labels, **request.labels()},
                working_dir=spec.working_dir,
                user=spec.user,
                ports=ports or None,
                host_config=host_config,
                detach=True,
            )
        except docker.errors.APIError as err:
            if err.status_code == 409:  # Conflict: the name is in use
                return False
            raise
        return True

    def _refuse_unless_allowed(self, request: LaunchRequest) -> None:
        """Raise :class:`LaunchRefusedError` if this agent's policy forbids the task."""
        image = request.container.image
        if reason := image_refusal(image, self._allowed_images):
            raise LaunchRefusedError(reason)
        if (
            request.container.network == "host"
            and self._network_mode is None
            and not self._allow_host_network
        ):
            raise LaunchRefusedError(
                "network 'host' is not allowed on this agent (start it with"
                " --allow-host-network to allow it); use the default bridge network"
            )

    def _ensure_network(self) -> str:
        """The id of the task network, created if missing; remembered once known.

        The engine does not stop two agents from making two networks of one name
        at once, so agents on a host take a file lock around the look and the
        create, and containers name the network by id, never by a name that could
        turn ambiguous.
        """
        if self._network_id is not None:
            return self._network_id
        api = self._api()
        lock = Path(tempfile.gettempdir()) / f"titus-flow-network-{self._task_network}.lock"
        with lock.open("a") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            found = self._network_ids()
            if not found:
                api.create_network(
                    self._task_network,
                    driver="bridge",
                    # No traffic between task containers (enforced where the engine
                    # manages iptables; see docs/security.md).
                    options=_ICC_OFF,
                    labels={"titus-flow.network": "tasks"},
                )
                found = self._network_ids()
        self._network_id = found[0]
        return self._network_id

    def _network_ids(self) -> list[str]:
        """Ids of the networks named exactly the task network, the oldest first."""
        networks = self._api().networks(names=[self._task_network])
        exact = [n for n in networks if n["Name"] == self._task_network]
        return [n["Id"] for n in sorted(exact, key=lambda n: (n.get("Created", ""), n["Id"]))]

    def _start(self, name: str) -> None:
        try:
            self._api().start(name)
        except docker.errors.APIError:
            # A command that cannot be executed fails the start but leaves the
            # container "created" with the exit code and reason; wait() reports it.
            state = self._api().inspect_container(name)["State"]
            if state["Status"] == "created" and state.get("Error"):
                return
            raise

    def _adopt(self, request: LaunchRequest) -> bool:
        """Adopt the existing container of the attempt; False if it cannot be seen yet."""
        try:
            info = self._api().inspect_container(request.name)
        except docker.errors.NotFound:
            return False
        labels = info["Config"].get("Labels") or {}
        if labels.get(LABEL_TASK_ID) != request.task_id:
            raise DriverError(
                f"container name {request.name} is taken by a container titus-flow did not make"
            )
        state = info["State"]
        # Created by an earlier launch that stopped short of starting it. Never
        # start an exited one: that would run the attempt a second time.
        if state["Status"] == "created" and not state.get("Error"):
            self._start(request.name)
        return True

    def _pull(self, image: str) -> None:
        """Pull ``image``, or say why not: missing for good, or for now.

        :class:`ImageNotFoundError` if the registry says the image does not
        exist, :class:`ImagePullError` for any other failure (one that may pass).
        """
        api = self._api()
        errors: list[str] = []
        missing = False
        try:
            # The pull stream reports failures in-band, after a 200 response.
            for event in api.pull(image, stream=True, decode=True):
                if "error" in event:
                    errors.append(str(event["error"]))
        except docker.errors.APIError as err:
            # The engine answers 404 when the registry says "manifest unknown" or
            # that the repository does not exist; a 5xx, refused connection, DNS
            # or auth failure comes as another status.
            missing = err.status_code == 404
            errors.append(str(err.explanation or err))
        if not errors and self._image_exists(image):
            return
        reason = "; ".join(errors) or "the pull did not produce it"
        if missing or any(_says_missing(error) for error in errors):
            raise ImageNotFoundError(f"image {image!r} not found: {reason}")
        raise ImagePullError(f"image {image!r} could not be pulled (will retry): {reason}")

    def _image_exists(self, image: str) -> bool:
        try:
            self._api().inspect_image(image)
        except docker.errors.NotFound:  # ImageNotFound is a NotFound
            return False
        return True

    def _wait(self, name: str, timeout: float) -> Exit | None:
        deadline = time.monotonic() + timeout
        # "not-running" returns at once for a container that was created but
        # never started; only "next-exit" waits for such a one to run and end.
        for condition in ("not-running", "next-exit"):
            if not self._block_until(name, condition, deadline):
                return None  # still running: no need to ask again
            state = self._inspect_state(name)
            exit_ = _exit_from_state(state)
            if exit_ is not None and exit_.exit_code in _CANNOT_EXEC and not exit_.error:
                exit_ = dataclasses.replace(exit_, error=self._init_error(name))
            if exit_ is not None and exit_.exit_code == _SIGKILLED and not exit_.oom_killed:
                exit_ = self._late_oom(name, exit_)
            if exit_ is not None and exit_.exit_code in _ENGINE_EXITS and not exit_.oom_killed:
                exit_ = self._lost_in_restart(exit_)
            if exit_ is not None or state["Status"] != "created":
                return exit_
        return None

    def _lost_in_restart(self, exit_: Exit) -> Exit:
        """Mark an exit the engine stamped around its own restart as the engine's.

        An exit it lost (255, stamped as it restores its containers) or a start
        its shutdown cut short (128, often without a finish time: then it is
        judged as seen now). A task's own 255 or 128 in that minute is read as
        the engine's too (relaunched, not charged): the rarer, cheaper mistake.
        """
        path = socket_path(self._base_url)
        started = engine_started_at(path) if path else None
        if started is None:
            return exit_
        finished = exit_.finished_at or datetime.now(UTC)
        if started - _BEFORE_START <= finished <= started + _RESTORE_WINDOW:
            return dataclasses.replace(exit_, lost_by_engine=True)
        return exit_

    def _late_oom(self, name: str, exit_: Exit) -> Exit:
        """Ask once more whether a SIGKILLed container was OOM-killed.

        The engine learns of an OOM kill from an event of its own, which on a
        busy host can arrive after it has recorded the exit: a late look keeps
        an OOM kill from reading as a plain failure.
        """
        time.sleep(_LATE_OOM_WAIT)
        late = _exit_from_state(self._inspect_state(name))
        return dataclasses.replace(exit_, oom_killed=True) if late and late.oom_killed else exit_

    def _init_error(self, name: str) -> str:
        """Why the container's init could not run the command ("" if it could).

        With an init as PID 1 the container starts even when the command cannot
        be executed; the init says why on stderr and exits 126 or 127.
        """
        try:
            tail: bytes = self._api().logs(name, stdout=False, stderr=True, tail=5)
        except docker.errors.APIError:
            return ""
        for line in tail.decode(errors="replace").splitlines():
            if line.startswith("[FATAL tini"):
                return line.partition("] ")[2].strip()
        return ""

    def _block_until(self, name: str, condition: str, deadline: float) -> bool:
        """Block until ``condition`` holds or ``deadline``; False if it timed out.

        With no time left it returns True at once, so the caller inspects.
        """
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            return True
        try:
            self._api().wait(name, timeout=timeout, condition=condition)
        except docker.errors.NotFound as err:
            raise DriverError(f"no container named {name}") from err
        except requests.exceptions.RequestException:
            # The SDK reports its read timeout as a ConnectionError. One that
            # fails early is a daemon problem: let the inspect that follows say so.
            return time.monotonic() < deadline
        return True

    def _inspect_state(self, name: str) -> dict[str, Any]:
        try:
            state: dict[str, Any] = self._api().inspect_container(name)["State"]
        except docker.errors.NotFound as err:
            raise DriverError(f"no container named {name}") from err
        return state

    def _exec_start(self, name: str, command: list[str]) -> str:
        api = self._api()
        try:
            exec_id: str = api.exec_create(name, command, stdout=False, stderr=False)["Id"]
        except docker.errors.NotFound as err:
            raise DriverError(f"no container named {name}") from err
        try:
            api.exec_start(exec_id, detach=True)
        except docker.errors.APIError:
            # A command that cannot be executed fails the start, but Docker has
            # recorded its exit code (126) for the inspect that follows.
            if self._exec_inspect(exec_id)["ExitCode"] is None:
                raise
        return exec_id

    def _exec_inspect(self, exec_id: str) -> dict[str, Any]:
        info: dict[str, Any] = self._api().exec_inspect(exec_id)
        return info

    def _stop(self, name: str, grace: float) -> None:
        # The API counts whole seconds; round up so the task gets all its grace.
        with contextlib.suppress(docker.errors.NotFound):
            self._api().stop(name, timeout=math.ceil(max(grace, 0.0)))

    def _wait_gone(self, name: str) -> None:
        """Wait (briefly) for a removal someone else started to finish."""
        deadline = time.monotonic() + _REMOVAL_WAIT
        while time.monotonic() < deadline:
            try:
                self._api().inspect_container(name)
            except docker.errors.NotFound:
                return
            time.sleep(0.1)
        raise DriverError(f"container {name} is still being removed after {_REMOVAL_WAIT:g}s")

    def _keep_output(self, name: str, log_path: Path) -> None:
        """Save the output before removal; of a dead container, keep the live copy instead.

        The engine refuses the logs of a container it marked dead (a removal cut
        short by an engine restart): failing on that would leave it forever.
        """
        try:
            self._save_output(name, log_path)
        except docker.errors.APIError as err:
            if err.status_code != _CONFLICT:
                raise
            live = mirror_path(log_path)
            if live.exists():
                live.replace(log_path)

    def _save_output(self, name: str, log_path: Path) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            chunks = self._api().logs(name, stdout=True, stderr=True, stream=True, follow=False)
            write_atomically(log_path, chunks)

    def _remove(self, name: str, log_path: Path | None) -> None:
        try:
            if log_path is not None:
                self._keep_output(name, log_path)
            self._api().remove_container(name, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as err:
            # Another caller (a reconcile, a retried supervise) is removing it already.
            if err.status_code != _CONFLICT or "already in progress" not in str(err):
                raise
            self._wait_gone(name)
        self._mirrors.stop(name)  # none can start now that the container is gone
        if log_path is not None:  # the kept log replaces the live copy
            mirror_path(log_path).unlink(missing_ok=True)

    def _list_managed(self) -> list[ManagedContainer]:
        found = self._api().containers(all=True, filters={"label": LABEL_TASK_ID})
        managed = []
        for summary in found:
            labels = summary.get("Labels") or {}
            try:
                attempt = int(labels.get(LABEL_ATTEMPT, ""))
            except ValueError:
                attempt = 0  # hand-edited labels: still report the container
            managed.append(
                ManagedContainer(
                    name=summary["Names"][0].lstrip("/"),
                    job_id=labels.get(LABEL_JOB_ID, ""),
                    task_id=labels[LABEL_TASK_ID],
                    attempt=attempt,
                    running=summary.get("State") in _RUNNING_STATES,
                    agent_id=labels.get(LABEL_AGENT_ID, ""),
                )
            )
        return managed


# Exit codes of a command that could not be executed (not executable, not found).
_CANNOT_EXEC = (126, 127)
_SIGKILLED = 128 + 9
_CONFLICT = 409  # the engine's answer about a container dead or being removed
_REMOVAL_WAIT = 30.0  # seconds: for a removal another caller started
# What the engine records for a container whose exit it lost (255) or whose start
# its own shutdown cut short (128), both stamped around its restart.
_ENGINE_EXITS = (128, 255)
_RESTORE_WINDOW = timedelta(seconds=60)  # from the engine's start to its last restored stamp
_BEFORE_START = timedelta(seconds=30)  # an engine's shutdown and restart, before its new start
_LATE_OOM_WAIT = 0.5  # seconds: how long an OOM event may trail the exit it caused

# How registries (through the engine) say an image does not exist. Anything else
# a pull reports (rate limits, 5xx, DNS, expired tokens) may pass with a retry.
_MISSING_IMAGE_MARKERS: Final = (
    "manifest unknown",
    "not found",
    "repository does not exist",
    "name unknown",
)


def _says_missing(error: str) -> bool:
    """Whether a pull error says the image does not exist (final), not that the pull failed."""
    lowered = error.lower()
    return any(marker in lowered for marker in _MISSING_IMAGE_MARKERS)


def _exit_from_state(state: dict[str, Any]) -> Exit | None:
    """Build the :class:`Exit` from an inspected ``State``; None until it has ended.

    Ended: it ran and stopped, or its start failed (``Error`` says why). The
    status alone does not tell: "removing" can be either, or neither.
    """
    started_at = parse_docker_time(state.get("StartedAt"))
    if state.get("Running") or (started_at is None and not state.get("Error")):
        return None
    finished_at = parse_docker_time(state.get("FinishedAt"))
    if started_at and finished_at and finished_at < started_at:
        # Docker stamps StartedAt once start returns, which can be after a
        # quick command has already exited: never report a negative runtime.
        started_at = finished_at
    return Exit(
        exit_code=int(state["ExitCode"]),
        oom_killed=bool(state.get("OOMKilled")),
        started_at=started_at,
        finished_at=finished_at,
        error=state.get("Error") or "",
    )


def parse_docker_time(value: str | None) -> datetime | None:
    """Parse a Docker timestamp (RFC 3339, nanoseconds); None for Docker's zero time."""
    if not value or value.startswith("0001-01-01"):
        return None
    return datetime.fromisoformat(value)
