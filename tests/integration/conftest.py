"""A titus-flow cluster for integration tests: real dev server, real processes.

Each cluster gets its own control task queue (hence its own scheduler) and its
own state dir, so tests share the session's dev server without sharing capacity.
Worker and agents run as separate processes, exactly as users run them, so a
test can ``kill -9`` any of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from titus_cluster import Cluster

_CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """Remember whether the test's call failed (clusters print their logs then)."""
    report = yield
    if call.when == "call":
        item.stash[_CALL_FAILED] = report.failed  # type: ignore[attr-defined]
    return report


@pytest.fixture
def cluster_factory(
    dev_server: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[type[Cluster] | object]:
    """Make clusters on the session's dev server; all are stopped at teardown.

    Keyword arguments are environment variables of the cluster's processes and
    client (``TITUS_FLOW_PARTITION_SIZE="100"``: partitions with few tasks).
    """
    made: list[Cluster] = []

    def make(**env: str) -> Cluster:
        cluster = Cluster.create(dev_server, tmp_path, **env)
        made.append(cluster)
        return cluster

    yield make
    failed = request.node.stash.get(_CALL_FAILED, False)
    for cluster in made:
        if failed:  # shown under "Captured stdout teardown" of the failure
            print(f"=== logs of cluster {cluster.control_queue}\n{cluster.logs()}")
        cluster.stop_all()


@pytest.fixture
def cluster(cluster_factory: Callable[[], Cluster]) -> Cluster:
    """A cluster with one control worker and one docker agent ("local")."""
    c = cluster_factory()
    c.start_worker()
    c.start_agent("local", "--cpu", "2", "--memory", "2Gi")
    return c
