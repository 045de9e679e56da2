"""Volumes a job declares and the mounts that put them into its containers.

A job lists named :class:`Volume` objects (each exactly one of a host path, a
scratch volume, a tmpfs or an EFS file system); ``container.mounts`` places
them at paths inside the container. Which host paths an agent accepts is the
agent operator's choice (``titus-flow agent --allow-host-path``), checked at
launch; the spec only checks their shape. See docs/volumes.md.
"""

from __future__ import annotations

import posixpath
from typing import Annotated

from pydantic import AfterValidator, Field, StrictBool, StrictStr, model_validator

from titus_flow.spec.base import Matches, Name, SpecModel
from titus_flow.spec.quantities import Mebibytes

RESERVED_MOUNT_ROOTS = ("/proc", "/sys", "/dev")
"""Kernel filesystems a mount may neither be at nor below: the engine owns them."""

OUTPUT_MOUNT_PATH = "/titus/output"
"""Where the agent mounts a task's output directory (runtime.base.CONTAINER_OUTPUT_DIR)."""

EFS_ID_PATTERN = r"^fs-[0-9a-f]{8,17}$"


def normal_absolute(value: str, what: str) -> str:
    """``value`` if it is an absolute, normalised POSIX path; else a ValueError naming ``what``."""
    if "\0" in value:
        raise ValueError(f"{what} {value!r} contains a NUL character; remove it")
    if not value.startswith("/"):
        raise ValueError(f"{what} {value!r} must be an absolute path, e.g. /data")
    normal = posixpath.normpath(value)
    # normpath keeps a leading "//" (POSIX leaves its meaning open): not normal either.
    if normal != value or value.startswith("//"):
        raise ValueError(
            f"{what} {value!r} is not normalised (no '..', '.', '//' or trailing '/');"
            f" write {posixpath.normpath('/' + value.lstrip('/'))!r}"
        )
    return value


def _host_path(value: str) -> str:
    return normal_absolute(value, "host path")


def _container_path(value: str) -> str:
    normal_absolute(value, "mount path")
    if value == "/":
        raise ValueError("mount path '/' would hide the image's filesystem; mount below it")
    for root in RESERVED_MOUNT_ROOTS:
        if value == root or value.startswith(root + "/"):
            raise ValueError(
                f"mount path {value!r} is at or below {root}, which the container engine"
                f" manages; choose another path (for /dev/shm use container.shm_size)"
            )
    if value == OUTPUT_MOUNT_PATH or value.startswith(OUTPUT_MOUNT_PATH + "/"):
        raise ValueError(
            f"mount path {value!r} is at or below {OUTPUT_MOUNT_PATH}, where the agent"
            " collects the task's output; choose another path"
        )
    return value


HostPath = Annotated[StrictStr, AfterValidator(_host_path)]
"""An absolute, normalised path on the agent host."""

MountPath = Annotated[StrictStr, AfterValidator(_container_path)]
"""An absolute, normalised path in the container, not ``/`` nor under /proc, /sys, /dev."""

EfsId = Annotated[
    str,
    Matches(
        EFS_ID_PATTERN, "EFS file system id", "use fs- and 8 to 17 hex digits, e.g. fs-12345678"
    ),
]
"""An Amazon EFS file system id, e.g. ``fs-12345678``."""


class HostPathVolume(SpecModel):
    """A directory of the agent host, allowed only under prefixes the agent operator set."""

    path: HostPath = Field(description="Absolute path on the agent host, e.g. /srv/data.")


class ScratchVolume(SpecModel):
    """An empty volume shared by the tasks of one job on one host, removed after them."""


class TmpfsVolume(SpecModel):
    """A memory-backed filesystem private to each task's container."""

    size: Mebibytes | None = Field(
        default=None,
        ge=1,
        description='Size, e.g. "64Mi"; default: the task\'s memory (it counts against it).',
    )


class EfsVolume(SpecModel):
    """An Amazon EFS file system, mounted through the agent host's NFS client.

    Agents without NFS client support (the embedded stack's) refuse such tasks.
    """

    file_system_id: EfsId = Field(description="The file system's id, e.g. fs-12345678.")
    path: HostPath = Field(default="/", description="Directory of the file system to mount.")


_SOURCES = ("host_path", "scratch", "tmpfs", "efs")


class Volume(SpecModel):
    """A named volume of a job; exactly one of ``host_path``, ``scratch``, ``tmpfs``, ``efs``.

    Example::

        Volume(name="scratch", scratch=ScratchVolume())
        Volume(name="data", host_path=HostPathVolume(path="/srv/data"))
    """

    name: Name = Field(description="Referenced by container.mounts[].volume.")
    host_path: HostPathVolume | None = None
    scratch: ScratchVolume | None = None
    tmpfs: TmpfsVolume | None = None
    efs: EfsVolume | None = None

    @model_validator(mode="after")
    def _exactly_one_source(self) -> Volume:
        given = [source for source in _SOURCES if getattr(self, source) is not None]
        if len(given) != 1:
            raise ValueError(
                f"volume {self.name!r} must set exactly one of {', '.join(_SOURCES)}"
                f" (got {', '.join(given) or 'none'}), e.g. scratch: {{}}"
            )
        return self

    @property
    def source(self) -> HostPathVolume | ScratchVolume | TmpfsVolume | EfsVolume:
        """The one source this volume sets."""
        return next(s for s in (self.host_path, self.scratch, self.tmpfs, self.efs) if s)

    @property
    def kind(self) -> str:
        """``host_path``, ``scratch``, ``tmpfs`` or ``efs``."""
        return next(source for source in _SOURCES if getattr(self, source) is not None)


class Mount(SpecModel):
    """One of the job's volumes at ``path`` in the container."""

    volume: Name = Field(description="Name of a volume in the job's volumes.")
    path: MountPath = Field(description="Absolute path in the container, e.g. /data.")
    read_only: StrictBool = Field(default=False, description="Refuse writes through this mount.")


def mount_errors(volumes: list[Volume], mounts: list[Mount]) -> list[str]:
    """Mounts of unknown volumes, as messages with their field path and fix."""
    known = {volume.name for volume in volumes}
    return [
        f"container.mounts[{index}].volume: no volume named {mount.volume!r} in volumes"
        f" ({', '.join(sorted(known)) or 'none declared'}); declare it or fix the name"
        for index, mount in enumerate(mounts)
        if mount.volume not in known
    ]
