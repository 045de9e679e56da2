"""The Docker driver: one container per attempt, through the Docker Engine API.

The docker SDK is blocking, so every call runs on threads the driver owns
rather than on asyncio's small default executor: ``wait``, ``stop`` and
``remove`` block for seconds (one ``wait`` per running task, all the time), so
they get a pool of their own and can never delay a launch.

Launch is the latency-critical path, so its happy path is exactly two API calls
(create, start); the image check, pull and adoption of an existing container
only happen when create answers 404 or 409.

What a container is made of lives in :mod:`~titus_flow.runtime.docker_spec`,
how it ended in :mod:`~titus_flow.runtime.docker_exits`, image pulls in
:mod:`~titus_flow.runtime.docker_images`; this module drives the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, TypeVar

import docker
import docker.errors
import docker.types
import requests.exceptions

from titus_flow.processes import poll_until, write_atomically
from titus_flow.runtime.base import (
    EXEC_TIMED_OUT,
    LABEL_AGENT_ID,
    LABEL_ATTEMPT,
    LABEL_JOB_ID,
    LABEL_TASK_ID,
    DriverError,
    EngineUnavailableError,
    Exit,
    LaunchRefusedError,
    LaunchRequest,
    ManagedContainer,
    run_to_end,
)
from titus_flow.runtime.docker_exits import ContainerExits
from titus_flow.runtime.docker_images import image_exists, pull_image
from titus_flow.runtime.docker_spec import NETWORK_MODES, TASK_NETWORK, ContainerPolicy, TaskNetwork
from titus_flow.runtime.docker_usage import DockerCpu
from titus_flow.runtime.docker_volumes import (
    VolumePolicy,
    create_scratch_volumes,
    list_scratch_volumes,
    remove_scratch_volume,
)
from titus_flow.runtime.mirror import OutputMirrors, TooManyMirrorsError, mirror_path

_T = TypeVar("_T")

_LOG_FILES: Final = 2  # the engine's json-file log of a container: this many files of max-size
_RUNNING_STATES: Final = frozenset({"running", "paused", "restarting"})
_QUICK_THREADS: Final = 16  # for calls that answer in milliseconds (create, start, inspect)
_ADOPT_TRIES: Final = 50
_ADOPT_RETRY_DELAY: Final = 0.02  # seconds
_CONFLICT: Final = 409  # the engine's answer about a container dead or being removed
_REMOVAL_WAIT: Final = 30.0  # seconds: for a removal another caller started


class DockerDriver:
    """Runs each attempt as a Docker container named after the attempt.

    Least privilege by default (docs/security.md): each task has its own network
    namespace on the agent's bridge network, keeps only
    :data:`~titus_flow.runtime.docker_spec.TASK_CAPABILITIES`, cannot gain
    privileges, is limited to the task's resources (CPU, memory without swap, a
    PID limit) and to a capped log, and may have a read-only root filesystem.
    Containers are never auto-removed: :meth:`remove` first copies their output
    to the attempt's log file.
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
        allowed_host_paths: Sequence[str] = (),
        protected_paths: Sequence[str] = (),
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
        under titus-flow's own. ``host_path`` volumes are mounted only under
        ``allowed_host_paths`` and never hold a ``protected_paths`` entry (nor
        the engine's socket): see :mod:`~titus_flow.runtime.docker_volumes`.
        """
        if network_mode is not None and network_mode not in NETWORK_MODES:
            raise ValueError(
                f"network_mode {network_mode!r} is not supported: use one of {NETWORK_MODES}"
            )
        if pids_limit < 1 or max_waits < 1 or log_max_mib < _LOG_FILES:
            raise ValueError("pids_limit, max_waits and log_max_mib must be positive")
        self._base_url = base_url
        self._policy = ContainerPolicy(
            network_mode=network_mode,
            publish_address=publish_address,
            pids_limit=pids_limit,
            log_config=docker.types.LogConfig(
                type="json-file",
                config={"max-size": f"{log_max_mib // _LOG_FILES}m", "max-file": str(_LOG_FILES)},
            ),
            allowed_images=tuple(allowed_images),
            allow_host_network=allow_host_network,
            extra_labels=dict(extra_labels or {}),
            volumes=VolumePolicy.of(allowed_host_paths, protected_paths),
        )
        self._network = TaskNetwork(task_network, self._api)
        self._exits = ContainerExits(self._api, base_url)
        self._api_timeout = api_timeout
        self._pool_size = _QUICK_THREADS + max_waits
        self._quick = ThreadPoolExecutor(_QUICK_THREADS, thread_name_prefix="titus-docker")
        self._slow = ThreadPoolExecutor(max_waits, thread_name_prefix="titus-docker-wait")
        self._client: docker.DockerClient | None = None
        self._client_lock = threading.Lock()
        self._mirrors = OutputMirrors()  # live output of running containers, while read
        self._cpu = DockerCpu(self._api)

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
        return await self._call("wait", self._exits.wait, name, timeout, slow=True)

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
        self._exits.stopping(name)
        await self._call("stop", self._stop, name, grace, slow=True)

    async def save_output(self, name: str, log_path: Path) -> None:
        """Copy the container's output so far to ``log_path`` (atomically)."""
        await self._call("save output", self._save_output, name, log_path, slow=True)

    async def remove(self, name: str, log_path: Path | None) -> None:
        """Copy the container's output to ``log_path``, then force-remove it."""
        await self._call("remove", self._remove, name, log_path, slow=True)
        self._exits.forget(name)

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

    async def cpu_seconds(self, name: str) -> float | None:
        """CPU seconds the container used so far (see :mod:`~titus_flow.runtime.docker_usage`)."""
        return await self._call("cpu usage", self._cpu.seconds, name)

    async def list_managed(self) -> list[ManagedContainer]:
        """Containers in any state that carry titus-flow's task label."""
        return await self._call("list", self._list_managed)

    async def image_exists(self, image: str) -> bool:
        """Whether ``image`` is present locally."""
        return await self._call("image check", self._image_exists, image)

    async def scratch_volumes(self) -> list[tuple[str, str]]:
        """(volume name, job id) of every scratch volume on this host."""
        return await self._call("volume list", lambda: list_scratch_volumes(self._api()))

    async def remove_scratch_volume(self, name: str) -> bool:
        """Remove scratch volume ``name``; False while a container still uses it."""
        return await self._call("volume remove", lambda: remove_scratch_volume(self._api(), name))

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
        if reason := self._policy.refusal(request):
            raise LaunchRefusedError(reason)

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
                pull_image(self._api(), request.container.image)
                go_on()  # a kill during a long pull: create nothing
                created = self._create(request)
            except docker.errors.NotFound:
                # The task network is gone (removed by hand since this driver
                # made it): make it again, once per attempt to create.
                self._network.forget()
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
        create_scratch_volumes(api, request)
        try:
            api.create_container(**self._policy.create_args(api, request, self._network.id))
        except docker.errors.APIError as err:
            if err.status_code == 409:  # Conflict: the name is in use
                return False
            raise
        return True

    def _image_exists(self, image: str) -> bool:
        return image_exists(self._api(), image)

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
        self._cpu.forget(name)
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
