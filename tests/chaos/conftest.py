"""Fixtures of the chaos suite: a Temporal server and a Docker engine of the test's own."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from chaos_parts import DockerEngine, TemporalServer

# The cluster helpers the integration tests use (tests/integration is not a package).
sys.path.insert(0, str(Path(__file__).parents[1] / "integration"))


@pytest.fixture
def chaos_server(temporal_bin: Path, free_port: Callable[[], int]) -> Iterator[TemporalServer]:
    """A dev server of the test's own on a SQLite file (the shared one must not be killed)."""
    home = Path(tempfile.mkdtemp(prefix="tfchaos-t"))
    server = TemporalServer(temporal_bin, free_port(), home / "temporal.db", home / "temporal.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def chaos_engine(docker_available: bool) -> Iterator[DockerEngine]:
    """A Docker engine of the test's own, with busybox loaded."""
    if not docker_available or shutil.which("dockerd") is None:
        pytest.skip("the chaos suite starts a dockerd of its own")
    engine = DockerEngine(Path(tempfile.mkdtemp(prefix="tfc", dir="/tmp")))
    try:
        engine.start()
        engine.load_image("busybox:latest")
        yield engine
    finally:
        engine.stop()
