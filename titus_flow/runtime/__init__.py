"""Container drivers: the one interface (:class:`Driver`) and its implementations."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from titus_flow.runtime.base import (
    EXEC_TIMED_OUT,
    LABEL_AGENT_ID,
    LABEL_ATTEMPT,
    LABEL_JOB_ID,
    LABEL_TASK_ID,
    Driver,
    DriverError,
    Exit,
    ImageNotFoundError,
    ImagePullError,
    LaunchRequest,
    ManagedContainer,
    attempt_name,
)

DRIVER_NAMES = ("docker", "process", "sim")


def make_driver(
    name: str,
    *,
    state_dir: Path | str | None = None,
    labels: Mapping[str, str] | None = None,
    **options: Any,
) -> Driver:
    """Create the driver called ``name``.

    ``state_dir`` is where a driver may keep state across agent restarts: the
    process driver does; Docker keeps it in the daemon, so the docker driver
    ignores it. ``labels`` are added to every container (the docker driver;
    processes have none). ``sim`` pretends to run tasks (hollow agents, benchmarks)
    and ignores both. Other ``options`` go to the driver's constructor:
    :class:`~titus_flow.runtime.docker.DockerDriver` takes ``base_url``,
    ``network_mode``, ``pids_limit``, ``api_timeout`` and ``max_waits``.
    """
    # Imported here so a host without Docker never loads the docker SDK.
    if name == "docker":
        from titus_flow.runtime.docker import DockerDriver

        return DockerDriver(extra_labels=labels, **options)
    if name == "process":
        from titus_flow.runtime.process import ProcessDriver

        return ProcessDriver(state_dir=state_dir, **options)
    if name == "sim":
        from titus_flow.runtime.sim import SimDriver

        return SimDriver(**options)
    raise ValueError(f"unknown driver {name!r}: use one of {', '.join(DRIVER_NAMES)}")


__all__ = [
    "DRIVER_NAMES",
    "EXEC_TIMED_OUT",
    "LABEL_AGENT_ID",
    "LABEL_ATTEMPT",
    "LABEL_JOB_ID",
    "LABEL_TASK_ID",
    "Driver",
    "DriverError",
    "Exit",
    "ImageNotFoundError",
    "ImagePullError",
    "LaunchRequest",
    "ManagedContainer",
    "attempt_name",
    "make_driver",
]
