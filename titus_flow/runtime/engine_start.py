"""When the Docker engine serving a unix socket started, read from the host's ``/proc``.

An engine that restarts while a container ends cannot always learn how it
ended: it then records exit code 255, stamped as it restores its containers
(docs/faults.md). Only the engine's own start time tells that placeholder from
a task that really exited 255, and the engine API does not give it; the
socket's peer process does, when the agent shares the engine's host and PID
namespace (as an agent run by systemd next to dockerd does).
"""

from __future__ import annotations

import os
import socket
import struct
from datetime import datetime

from titus_flow.processes import started_at

_DEFAULT_SOCKET = "/var/run/docker.sock"


def socket_path(base_url: str | None) -> str | None:
    """The unix socket path of a Docker ``base_url`` (or ``DOCKER_HOST``); None if not one."""
    url = base_url or os.environ.get("DOCKER_HOST") or f"unix://{_DEFAULT_SOCKET}"
    for scheme in ("unix://", "http+unix://"):
        if url.startswith(scheme):
            return url.removeprefix(scheme)
    return None


def engine_started_at(path: str) -> datetime | None:
    """When the process listening on unix socket ``path`` started; None if it cannot be told."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(path)
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    pid = struct.unpack("3i", creds)[0]
    if pid <= 0:  # a peer in another PID namespace
        return None
    return started_at(pid)
