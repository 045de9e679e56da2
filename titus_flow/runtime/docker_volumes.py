"""A task's volumes as Docker mounts, and what an agent refuses to mount.

Tasks are untrusted, so the agent, not the job, decides which host files a
container may see (docs/volumes.md):

* a ``host_path`` is resolved on the host (symlinks included) and must then lie
  under a prefix the operator allowed (``--allow-host-path``); the resolved path
  is what Docker binds, so a symlink cannot lead elsewhere after the check;
* nothing that holds or lies inside a protected path (the Docker socket, the
  agent's own state directory) is ever mounted, whatever the operator allowed;
* binds are ``rprivate`` (no mount propagation either way) and the spec offers
  no other option than ``read_only``;
* EFS needs an NFS client on the host, which agents do not have yet: refused.

Scratch volumes are named Docker volumes, one per (job, volume) on a host,
labelled with the job id; the agent's reconcile removes those of jobs that no
longer run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import docker

from titus_flow.runtime.base import LABEL_JOB_ID, LaunchRequest
from titus_flow.spec import Volume

LABEL_SCRATCH_VOLUME: Final = "titus-flow.scratch-volume"
"""Label of a scratch volume: the job's volume name (the job id is in LABEL_JOB_ID)."""

DOCKER_SOCKETS: Final = ("/var/run/docker.sock", "/run/docker.sock")
"""Where the engine's socket usually is; never mountable (it is root on the host)."""

_MIB: Final = 1024 * 1024
_TMPFS_MODE: Final = 0o1777  # like /tmp: any task user may write, only owners delete
_IN_USE: Final = 409  # the engine's answer to removing a volume a container uses


def scratch_volume_name(job_id: str, volume: str) -> str:
    """The Docker volume of scratch volume ``volume`` of job ``job_id`` on a host."""
    return f"tf-scratch-{job_id}-{volume}"


def resolved(path: str) -> str:
    """``path`` with every symlink resolved (it need not exist)."""
    return os.path.realpath(path)


def is_within(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or below it (both resolved, absolute)."""
    return path == root or path.startswith(root.rstrip("/") + "/")


@dataclass(frozen=True)
class VolumePolicy:
    """Which volumes an agent mounts: the operator's allowed host path prefixes.

    ``protected`` paths are never mounted, nor any directory that holds one,
    even under an allowed prefix.
    """

    allowed_host_paths: tuple[str, ...] = ()
    protected: tuple[str, ...] = DOCKER_SOCKETS

    @classmethod
    def of(cls, allowed: Iterable[str], protected: Iterable[str] = ()) -> VolumePolicy:
        """A policy with every path resolved now (the agent's view of its host)."""
        return cls(
            allowed_host_paths=tuple(resolved(p) for p in allowed),
            protected=tuple(dict.fromkeys(resolved(p) for p in (*DOCKER_SOCKETS, *protected))),
        )

    def refusal(self, request: LaunchRequest) -> str | None:
        """Why this agent must not mount ``request``'s volumes (None: it may)."""
        for volume in _mounted(request):
            if volume.efs is not None:
                return (
                    f"volume {volume.name!r} is EFS file system {volume.efs.file_system_id},"
                    " which needs an NFS client on the agent host; titus-flow agents (the"
                    " embedded stack's included) have none yet: use a host_path volume of"
                    " an NFS mount the operator allowed, or another volume kind"
                )
            if volume.host_path is not None and (
                reason := self.host_path_refusal(volume.name, volume.host_path.path)
            ):
                return reason
        return None

    def host_path_refusal(self, name: str, path: str) -> str | None:
        """Why host path ``path`` of volume ``name`` must not be mounted (None: it may)."""
        real = resolved(path)
        shown = path if real == path else f"{path} (resolved: {real})"
        if not any(is_within(real, prefix) for prefix in self.allowed_host_paths):
            allowed = ", ".join(self.allowed_host_paths) or "none"
            return (
                f"volume {name!r}: host path {shown} is not under a path this agent allows"
                f" (allowed: {allowed}); the operator allows prefixes with"
                " titus-flow agent --allow-host-path PREFIX (or TITUS_FLOW_ALLOWED_HOST_PATHS)"
            )
        for protected in self.protected:
            if is_within(real, protected) or is_within(protected, real):
                return (
                    f"volume {name!r}: host path {shown} is or holds {protected}, which an"
                    " agent never mounts into a task (the engine's socket or the agent's"
                    " own state); mount a directory beside it"
                )
        if not os.path.isdir(real) and not os.path.isfile(real):
            return f"volume {name!r}: host path {shown} does not exist on this agent"
        return None


def _mounted(request: LaunchRequest) -> list[Volume]:
    """The volumes the container mounts, each once."""
    by_name = {volume.name: volume for volume in request.volumes}
    names = dict.fromkeys(mount.volume for mount in request.container.mounts)
    return [by_name[name] for name in names if name in by_name]


def docker_mounts(request: LaunchRequest) -> list[dict[str, Any]]:
    """The ``HostConfig.Mounts`` entries of the container's mounts (already checked).

    Host paths are bound at their resolved path, without propagation; scratch
    volumes are the job's named volume, empty at first (no copy of the image's
    files); tmpfs defaults to the task's memory, which it counts against.
    """
    by_name = {volume.name: volume for volume in request.volumes}
    mounts: list[dict[str, Any]] = []
    for mount in request.container.mounts:
        volume = by_name[mount.volume]
        entry: dict[str, Any] = {"Target": mount.path, "ReadOnly": mount.read_only}
        if volume.host_path is not None:
            entry |= {
                "Type": "bind",
                "Source": resolved(volume.host_path.path),
                "BindOptions": {"Propagation": "rprivate"},
            }
        elif volume.scratch is not None:
            entry |= {
                "Type": "volume",
                "Source": scratch_volume_name(request.job_id, volume.name),
                "VolumeOptions": {"NoCopy": True},
            }
        elif volume.tmpfs is not None:
            size = volume.tmpfs.size or request.resources.memory
            entry |= {
                "Type": "tmpfs",
                "TmpfsOptions": {"SizeBytes": size * _MIB, "Mode": _TMPFS_MODE},
            }
        else:  # efs: refused before (VolumePolicy.refusal)
            raise ValueError(f"volume {volume.name!r} cannot be mounted by this agent")
        mounts.append(entry)
    return mounts


def scratch_volumes(request: LaunchRequest) -> list[tuple[str, dict[str, str]]]:
    """The (name, labels) of the scratch volumes the container mounts, to create first."""
    return [
        (
            scratch_volume_name(request.job_id, volume.name),
            {LABEL_JOB_ID: request.job_id, LABEL_SCRATCH_VOLUME: volume.name},
        )
        for volume in _mounted(request)
        if volume.scratch is not None
    ]


# -- engine calls (blocking: the driver runs them on its pool) -------------------------


def create_scratch_volumes(api: Any, request: LaunchRequest) -> None:
    """Create the scratch volumes the container mounts (a no-op for those that exist)."""
    for name, labels in scratch_volumes(request):
        api.create_volume(name, labels=labels)


def list_scratch_volumes(api: Any) -> list[tuple[str, str]]:
    """(volume name, job id) of every scratch volume on the host."""
    found = api.volumes(filters={"label": LABEL_SCRATCH_VOLUME}).get("Volumes") or []
    return [(v["Name"], (v.get("Labels") or {}).get(LABEL_JOB_ID, "")) for v in found]


def remove_scratch_volume(api: Any, name: str) -> bool:
    """Remove volume ``name``; False when a container still uses it (it stays)."""
    try:
        api.remove_volume(name)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as err:
        if err.status_code == _IN_USE:
            return False
        raise
    return True
