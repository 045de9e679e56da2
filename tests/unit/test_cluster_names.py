"""The names every process of a cluster derives alike (titus_flow/cluster.py, issue #17).

They reach Temporal (workflow ids, task queues): a change would split a cluster
between releases, so they are pinned here. The module stays a leaf, importing
nothing from the package, so agents, workers, client, fleet and workflows can
all import it.
"""

from __future__ import annotations

import ast
from pathlib import Path

from titus_flow import cluster
from titus_flow.config import Settings


def test_names_stay_as_released() -> None:
    assert cluster.CONTROL_TASK_QUEUE == "titus-control" == Settings().control_task_queue
    assert cluster.scheduler_workflow_id("titus-control") == "titus-control-scheduler"
    assert cluster.fleet_workflow_id("titus-control", "gpu") == "titus-control-fleet-gpu"
    assert cluster.agent_task_queue("a1") == "titus-agent-a1"


def test_the_module_imports_nothing_from_the_package() -> None:
    tree = ast.parse(Path(cluster.__file__).read_text())
    imported = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    ]
    assert not [m for m in imported if m and m.split(".")[0] == "titus_flow"], imported
