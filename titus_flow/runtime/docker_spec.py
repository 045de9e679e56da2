"""What a task's container is made of: the engine's create call for one attempt.

The Docker driver creates each attempt's container from its
:class:`~titus_flow.runtime.base.LaunchRequest` and the agent's
:class:`ContainerPolicy` (least privilege, limits, network, labels), on the task
network (:class:`TaskNetwork`) when the task asks for ``bridge``.
"""

from __future__ import annotations

import fcntl
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from titus_flow.runtime.base import CONTAINER_OUTPUT_DIR, OUTPUT_FILE, LaunchRequest
from titus_flow.runtime.docker_volumes import VolumePolicy, docker_mounts
from titus_flow.runtime.policy import image_refusal

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
_MIN_MEMORY_MIB: Final = 6


@dataclass(frozen=True)
class ContainerPolicy:
    """What an agent imposes on every container it creates (the driver's options)."""

    network_mode: str | None  # one of NETWORK_MODES forced on every task, or each task's own
    publish_address: str  # host address named ports are published on
    pids_limit: int
    log_config: Any  # docker.types.LogConfig: the engine's capped log of a container
    allowed_images: tuple[str, ...] = ()
    allow_host_network: bool = False
    extra_labels: Mapping[str, str] = field(default_factory=dict)
    volumes: VolumePolicy = field(default_factory=VolumePolicy)

    def refusal(self, request: LaunchRequest) -> str | None:
        """Why this agent must not run ``request`` (None: it may)."""
        image = request.container.image
        if reason := image_refusal(image, self.allowed_images):
            return reason
        if (
            request.container.network == "host"
            and self.network_mode is None
            and not self.allow_host_network
        ):
            return (
                "network 'host' is not allowed on this agent (start it with"
                " --allow-host-network to allow it); use the default bridge network"
            )
        return self.volumes.refusal(request)

    def create_args(
        self, api: Any, request: LaunchRequest, task_network: Callable[[], str]
    ) -> dict[str, Any]:
        """Keyword arguments of ``api.create_container`` for the attempt's container.

        ``api`` is the low-level client (it builds the host config for its API
        version); ``task_network`` gives the id of the task network, made on
        first use, and is called only for a task on ``bridge``.
        """
        spec = request.container
        # Docker refuses limits under 6 MB; the spec allows 4 MiB.
        memory = max(request.resources.memory, _MIN_MEMORY_MIB) * 1024 * 1024
        network = self.network_mode or spec.network
        ports = list(request.ports.values()) if network == "bridge" else []
        mounts = docker_mounts(request)
        # A task's own mount at /tmp replaces the tmpfs a read-only root gets there.
        tmp_mounted = any(mount.path == "/tmp" for mount in spec.mounts)
        host_config = api.create_host_config(
            network_mode=task_network() if network == "bridge" else network,
            # The task listens on its host port number inside its own namespace,
            # so PORT_<NAME> means the same on every network mode.
            port_bindings={port: (self.publish_address, port) for port in ports} or None,
            nano_cpus=round(request.resources.cpu * 1e9),
            mem_limit=memory,
            memswap_limit=memory,  # equal to the memory limit: no swap
            pids_limit=self.pids_limit,
            cap_drop=["ALL"],
            cap_add=list(TASK_CAPABILITIES),
            security_opt=["no-new-privileges"],
            read_only=spec.read_only_root,
            # /tmp stays writable on a read-only root; it counts against the memory limit.
            tmpfs=(
                {"/tmp": f"{_TMPFS_OPTIONS},size={memory}"}
                if spec.read_only_root and not tmp_mounted
                else None
            ),
            mounts=mounts or None,
            shm_size=spec.shm_size * 1024 * 1024 if spec.shm_size else None,
            log_config=self.log_config,
            # A tiny init as PID 1 forwards SIGTERM (a shell or server running as
            # PID 1 ignores it, so every stop waited out its grace) and reaps zombies.
            init=True,
            binds=(
                {str(request.output_dir): {"bind": CONTAINER_OUTPUT_DIR, "mode": "rw"}}
                if request.output_dir is not None
                else None
            ),
        )
        return {
            "image": spec.image,
            "name": request.name,
            "entrypoint": spec.entrypoint,
            "command": spec.command,
            "environment": request.environment(
                f"{CONTAINER_OUTPUT_DIR}/{OUTPUT_FILE}" if request.output_dir else None
            ),
            "labels": {**self.extra_labels, **request.labels()},
            "working_dir": spec.working_dir,
            "user": spec.user,
            "ports": ports or None,
            "host_config": host_config,
            "detach": True,
        }


class TaskNetwork:
    """The bridge network an agent's tasks join (``network: bridge``), made on first use."""

    def __init__(self, name: str, api: Callable[[], Any]) -> None:
        """Network ``name``, reached through ``api()`` (the driver's low-level client)."""
        self.name = name
        self._api = api
        self._id: str | None = None  # once known

    def id(self) -> str:
        """The id of the task network, created if missing; remembered once known.

        The engine does not stop two agents from making two networks of one name
        at once, so agents on a host take a file lock around the look and the
        create, and containers name the network by id, never by a name that could
        turn ambiguous.
        """
        if self._id is not None:
            return self._id
        lock = Path(tempfile.gettempdir()) / f"titus-flow-network-{self.name}.lock"
        with lock.open("a") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            found = self._ids()
            if not found:
                self._api().create_network(
                    self.name,
                    driver="bridge",
                    # No traffic between task containers (enforced where the engine
                    # manages iptables; see docs/security.md).
                    options=_ICC_OFF,
                    labels={"titus-flow.network": "tasks"},
                )
                found = self._ids()
        self._id = found[0]
        return self._id

    def forget(self) -> None:
        """Look the network up again next time (it was removed by hand since)."""
        self._id = None

    def _ids(self) -> list[str]:
        """Ids of the networks named exactly the task network, the oldest first."""
        networks = self._api().networks(names=[self.name])
        exact = [n for n in networks if n["Name"] == self.name]
        return [n["Id"] for n in sorted(exact, key=lambda n: (n.get("Created", ""), n["Id"]))]
