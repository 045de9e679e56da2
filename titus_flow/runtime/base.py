"""The one narrow interface every container driver implements.

An agent activity never talks to Docker or to processes directly: it asks a
:class:`Driver`. Drivers are asynchronous, idempotent where the lifecycle needs
it (``launch`` adopts an existing container of the same name) and keep each
attempt's output in a log file that outlives the container.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

from titus_flow.spec import Container, Resources, SecurityProfile, Volume
from titus_flow.spec.volumes import OUTPUT_MOUNT_PATH

# Labels on every container titus-flow makes; the agent reconciles by them.
LABEL_JOB_ID = "titus-flow.job-id"
LABEL_TASK_ID = "titus-flow.task-id"
LABEL_ATTEMPT = "titus-flow.attempt"
LABEL_AGENT_ID = "titus-flow.agent-id"

_T = TypeVar("_T")

EXEC_TIMED_OUT = 124
"""What :meth:`Driver.exec` returns for a command that outlasts its timeout (as ``timeout(1)``)."""


@dataclass(frozen=True)
class LaunchRequest:
    """Everything a driver needs to start one attempt of one task."""

    job_id: str
    task_id: str
    task_index: int  # 0-based
    attempt: int  # 1-based
    agent_id: str
    container: Container
    resources: Resources
    ports: dict[str, int] = field(default_factory=dict)  # port name -> host port
    log_path: Path | None = None  # where stdout+stderr of this attempt are kept
    output_dir: Path | None = None  # host dir for the task's result file (TITUS_OUTPUT_PATH)
    # The values of the container's secrets, resolved by the agent at launch. They
    # exist only in the agent's memory and the container's environment: never
    # printed (repr), logged or sent back through Temporal.
    secret_env: dict[str, str] = field(default_factory=dict, repr=False)
    volumes: tuple[Volume, ...] = ()  # the job's volumes; container.mounts refer to them
    # Carried for the metadata proxy and networking (not used by the drivers yet).
    security: SecurityProfile = field(default_factory=SecurityProfile)

    @property
    def name(self) -> str:
        """Deterministic container name: a retried launch finds what it made before."""
        return attempt_name(self.task_id, self.attempt)

    def environment(self, output_path: str | None = None) -> dict[str, str]:
        """The container's environment: the spec's env plus what titus-flow injects.

        ``output_path`` is where the task may write its JSON result, as the task
        sees it (inside the container for Docker, on the host for processes).
        """
        env = {**self.container.env, **self.secret_env}
        if output_path is not None:
            env["TITUS_OUTPUT_PATH"] = output_path
        env.update(
            TITUS_JOB_ID=self.job_id,
            TITUS_TASK_ID=self.task_id,
            TITUS_TASK_INDEX=str(self.task_index),
            TITUS_TASK_ATTEMPT=str(self.attempt),
            TITUS_AGENT_ID=self.agent_id,
        )
        for position, (port_name, host_port) in enumerate(self.ports.items()):
            env[f"PORT_{port_name.upper()}"] = str(host_port)
            if position == 0:
                env["PORT"] = str(host_port)
        return env

    def labels(self) -> dict[str, str]:
        """The container's labels: the spec's labels plus titus-flow's own."""
        labels = dict(self.container.labels)
        labels.update(
            {
                LABEL_JOB_ID: self.job_id,
                LABEL_TASK_ID: self.task_id,
                LABEL_ATTEMPT: str(self.attempt),
                LABEL_AGENT_ID: self.agent_id,
            }
        )
        return labels


# A task's JSON result: written by the task to $TITUS_OUTPUT_PATH, read by the agent
# after exit and returned through Temporal, so it must stay small.
OUTPUT_FILE = "result.json"
CONTAINER_OUTPUT_DIR = OUTPUT_MOUNT_PATH  # the spec refuses mounts there
MAX_OUTPUT_BYTES = 64 * 1024


def attempt_name(task_id: str, attempt: int) -> str:
    """Container name of ``attempt`` of ``task_id`` (valid as a Docker name)."""
    return f"tf-{task_id}-a{attempt}"


@dataclass(frozen=True)
class Exit:
    """How an attempt's container ended."""

    exit_code: int  # 128 + signal number for a signal, as Docker reports it (137: SIGKILL)
    oom_killed: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str = ""  # the runtime's reason when the command could not even start
    # The engine restarted as the container ended and kept no exit code: its
    # ``exit_code`` is the engine's placeholder, not the task's (a platform fault).
    lost_by_engine: bool = False


@dataclass(frozen=True)
class ManagedContainer:
    """A container (or process) the driver finds on this host, from its labels."""

    name: str
    job_id: str
    task_id: str
    attempt: int
    running: bool
    agent_id: str = ""  # the agent that launched it: several agents may share a host


class ImageNotFoundError(Exception):
    """The registry says the image does not exist (a user error: retrying cannot help)."""


class LaunchRefusedError(Exception):
    """The agent will not run this task as asked (policy or an impossible request).

    A user error, as a missing image is: retrying cannot help, the message says why
    (an image outside the allowed registries, host networking on an agent that
    does not allow it, a user the driver cannot run as, a secret that does not exist).
    """


class DriverError(Exception):
    """The runtime itself failed (daemon down, API error): a system error, not the user's."""


class EngineUnavailableError(DriverError):
    """The container engine does not answer (restarting, or down): try again later."""


class ImagePullError(DriverError):
    """An image could not be pulled for a reason that may pass (registry down, 5xx, DNS, auth).

    A platform fault: the launch is retried, and the user's retry budget is not charged.
    """


@runtime_checkable
class ScratchVolumes(Protocol):
    """A driver that keeps scratch volumes on its host (the docker driver)."""

    async def scratch_volumes(self) -> list[tuple[str, str]]:
        """(volume name, job id) of every scratch volume on this host."""
        ...

    async def remove_scratch_volume(self, name: str) -> bool:
        """Remove volume ``name``; False while a container still uses it."""
        ...


@runtime_checkable
class CpuUsage(Protocol):
    """A driver that can tell how much CPU an attempt used (docker, process).

    Agents sample it for the ``cpu_utilization`` metric of autoscaled services
    (:mod:`titus_flow.activities.agent_usage`); a driver without it reports none.
    """

    async def cpu_seconds(self, name: str) -> float | None:
        """CPU seconds (user + system) attempt ``name`` used since it started.

        None when it does not run (or not yet). A counter: two readings a period
        apart give the use over the period.
        """
        ...


class Driver(Protocol):
    """A container runtime on one agent host."""

    name: str

    async def launch(self, request: LaunchRequest) -> None:
        """Create and start the attempt's container; adopt it if it already exists.

        Raises :class:`ImageNotFoundError` for a missing image and
        :class:`DriverError` when the runtime fails. A command that cannot be
        executed (not found, not executable) is not an error here: :meth:`wait`
        reports it as an :class:`Exit` with code 126 or 127 and ``error`` set,
        as ``docker run`` does.

        Cancelled, it raises :class:`asyncio.CancelledError` only once it will
        create or start nothing more (see :func:`run_to_end`), so the caller can
        then remove the attempt by name.
        """
        ...

    async def wait(self, name: str, timeout: float) -> Exit | None:
        """Wait up to ``timeout`` seconds for ``name`` to exit; None while it still runs.

        Raises :class:`DriverError` if there is no such container.
        """
        ...

    async def exec(self, name: str, command: list[str], timeout: float) -> int:
        """Run ``command`` inside the running container; return its exit code.

        A command still running after ``timeout`` seconds counts as failed and
        yields :data:`EXEC_TIMED_OUT` (124, as ``timeout(1)``). Raises :class:`DriverError`
        if the container does not exist or is not running.
        """
        ...

    async def stop(self, name: str, grace: float) -> None:
        """Stop ``name`` (SIGTERM, then SIGKILL after ``grace`` seconds); no-op if gone."""
        ...

    async def save_output(self, name: str, log_path: Path) -> None:
        """Keep the output ``name`` wrote so far at ``log_path``; ``name`` stays as it is.

        Written atomically, so a reader sees the previous copy or the whole new
        one. A no-op for a container that no longer exists.
        """
        ...

    async def remove(self, name: str, log_path: Path | None) -> None:
        """Save the remaining output to ``log_path`` (if given), then remove ``name``.

        A no-op for a container that no longer exists.
        """
        ...

    async def live_output(self, name: str, log_path: Path) -> Path | None:
        """A file holding the output of running ``name`` so far, growing as it writes.

        ``log_path`` is where :meth:`remove` keeps the output. The file holds
        the same bytes as the kept log, from the first one, though it may lag
        the container by a moment or be rewritten from its start (with the same
        bytes again). None when the driver has no live output to offer; the
        caller then reads ``log_path``. Raises :class:`DriverError` when it
        cannot offer it now (too many readers).
        """
        ...

    async def list_managed(self) -> list[ManagedContainer]:
        """Every container on this host that carries titus-flow's labels."""
        ...

    async def image_exists(self, image: str) -> bool:
        """Whether ``image`` can be run here without a pull."""
        ...

    async def close(self) -> None:
        """Release the driver's connections and threads; containers keep running."""
        ...


# -- helpers the drivers share -------------------------------------------------


async def run_to_end(work: Awaitable[_T], on_cancel: Callable[[], object] | None = None) -> _T:
    """Await ``work``; cancelled meanwhile, call ``on_cancel``, let ``work`` end, then re-raise.

    For a launch: whoever cancels it may then remove the attempt by name,
    knowing nothing is created behind its back.
    """
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if on_cancel is not None:
            on_cancel()
        await asyncio.wait([task])
        if not task.cancelled():
            task.exception()  # retrieved: the cancellation is what the caller sees
        raise
