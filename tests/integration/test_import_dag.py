"""An AWS Batch array pair with an N_TO_N dependency, imported and run as a DAG (real Docker).

The import corpus test runs one job per fixture; this one runs the whole file
the way a user does (titus-flow import, then titus-flow run), so task i of
``process`` waits for task i of ``split``.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from titus_cluster import Cluster

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="session")]

FIXTURE = Path(__file__).parents[1] / "fixtures" / "import" / "aws-batch-array-n-to-n.json"


async def test_an_n_to_n_pair_runs_task_by_task(cluster: Cluster, tmp_path: Path) -> None:
    job_file = tmp_path / "pair.yaml"
    imported = cluster.cli("import", str(FIXTURE), "--out", str(job_file))
    assert imported.returncode == 0, imported.stderr
    assert "dropped: submitJobs[0].jobQueue:" in imported.stderr
    ran = cluster.cli("run", str(job_file), "-o", "json", timeout=180)
    assert ran.returncode == 0, ran.stdout + ran.stderr + cluster.logs()
    views = json.loads(ran.stdout)["views"]  # by job name
    assert {name: view["state"] for name, view in views.items()} == {
        "split": "Succeeded",
        "process": "Succeeded",
    }
    split, process = (
        sorted(views[name]["tasks"], key=lambda task: task["index"])
        for name in ("split", "process")
    )
    for before, after in zip(split, process, strict=True):
        finished = datetime.fromisoformat(before["attempts"][-1]["finished_at"])
        assert datetime.fromisoformat(after["attempts"][0]["started_at"]) >= finished
    # Exported back by job id: the pair's own fields, and the same job as a k8s Indexed Job.
    exported = cluster.cli("export", views["process"]["id"], "--to", "aws-batch")
    assert exported.returncode == 0, exported.stderr
    submit = json.loads(exported.stdout)["submitJob"]
    assert submit["arrayProperties"] == {"size": 3}
    assert submit["dependsOn"] == [{"jobId": "split", "type": "N_TO_N"}]
    kube = cluster.cli("export", views["split"]["id"], "--to", "k8s", "-o", "json")
    assert kube.returncode == 0, kube.stderr
    assert json.loads(kube.stdout)["spec"]["completions"] == 3
