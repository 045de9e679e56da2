"""The import corpus end to end (issue #16): every definition in tests/fixtures/import/,
of every source, imported, submitted to a real cluster (real Docker) and run to the end
its sidecar expects; one through the CLI (import, run), and one exported back by job id."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from test_fleet_moto import REGION, Moto, aws_env, moto  # noqa: F401  (fixtures)
from titus_cluster import Cluster

from titus_flow.client import TitusClient
from titus_flow.errors import UserError
from titus_flow.lifecycle import JobState
from titus_flow.loader import AnyJob
from titus_flow.migrate import MigrateInputError, import_definition

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="session")]

FIXTURES = Path(__file__).parents[1] / "fixtures" / "import"
CORPUS = sorted(
    path
    for path in FIXTURES.iterdir()
    if path.suffix in (".json", ".yaml", ".yml") and not path.name.endswith(".expect.yaml")
)
ENDS = {"succeeded": JobState.SUCCEEDED, "failed": JobState.FAILED}
NEEDS_AWS = [
    path for path in CORPUS if "aws" in yaml.safe_load(path.with_suffix(".expect.yaml").read_text())
]
"""Definitions whose secrets AWS resolves: run on an agent whose AWS is a moto server."""


def expectation(fixture: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(fixture.with_suffix(".expect.yaml").read_text())
    return loaded


def imported(fixture: Path) -> AnyJob | None:
    """The job ``fixture`` imports as; None when its sidecar expects the import refused."""
    expected = expectation(fixture)
    try:
        return import_definition(fixture.read_bytes(), label=fixture.name).job
    except (UserError, MigrateInputError) as err:
        assert expected["end"] == "refused", f"{fixture.name}: refused: {err}"
        assert expected["reason"] in str(err), f"{fixture.name}: {err}"
        return None


async def run_to_its_end(
    client: TitusClient, cluster: Cluster, fixture: Path, job: AnyJob | None, aws: bool = False
) -> str:
    """Submit ``job`` and wait for ``fixture``'s expected end; the job id ("" if refused)."""
    expected = expectation(fixture)
    end = expected["end"]
    if job is None or end == "imported" or (fixture in NEEDS_AWS and not aws):
        return ""  # imported and validated only, or run by the test with AWS on moto
    try:
        job_id = await client.submit(job)
    except (UserError, MigrateInputError) as err:
        assert end == "refused", f"{fixture.name}: refused: {err}"
        assert expected["reason"] in str(err), f"{fixture.name}: {err}"
        return ""
    if end == "healthy":
        try:
            await client.wait_healthy(job_id, timeout=60)
        except TimeoutError:
            view = await client.describe(job_id)
            raise AssertionError(f"{fixture.name}: {view.model_dump_json(indent=1)}") from None
        await client.kill(job_id)
        return job_id
    view = await cluster.wait_for(job_id, timeout=75)
    if end == "refused":
        said = " ".join([view.message, *(task.message for task in view.tasks)])
        assert view.state is not JobState.SUCCEEDED and expected["reason"] in said, view
    else:
        assert view.state is ENDS[end], f"{fixture.name}: {view.model_dump_json(indent=1)}"
    if "exit_code" in expected:
        assert view.tasks[0].attempts[-1].exit_code == expected["exit_code"], view
    return job_id


async def test_every_definition_of_the_corpus_runs_to_its_expected_end(
    cluster: Cluster, tmp_path: Path
) -> None:
    assert len(CORPUS) >= 5
    client = await cluster.client()
    jobs = [imported(fixture) for fixture in CORPUS]
    # Capacity groups are carried over by name: a cluster must have them before the jobs run.
    groups = {job.capacity_group for job in jobs if job is not None} - {"default"}
    created = await asyncio.gather(
        *(asyncio.to_thread(cluster.cli, "capacity-groups", "create", name) for name in groups)
    )
    assert all(done.returncode == 0 for done in created), created

    async def through_the_cli() -> None:
        # The path a user takes: titus-flow import to a Python job file, then titus-flow run.
        job_file = tmp_path / "encoder.py"
        fixture = str(FIXTURES / "titus-batch-immediate.json")
        imported = await asyncio.to_thread(
            cluster.cli, "import", fixture, "-o", "python", "--out", str(job_file)
        )
        assert imported.returncode == 0, imported.stderr
        ran = await asyncio.to_thread(cluster.cli, "run", str(job_file))
        assert ran.returncode == 0, ran.stdout + ran.stderr

    job_ids, _ = await asyncio.gather(
        asyncio.gather(
            *(run_to_its_end(client, cluster, f, job) for f, job in zip(CORPUS, jobs, strict=True))
        ),
        through_the_cli(),
    )
    # A finished job exported by its id gives back the descriptor it was imported from.
    index = CORPUS.index(FIXTURES / "titus-batch-exponential.json")
    exported = await asyncio.to_thread(cluster.cli, "export", job_ids[index], "--to", "titus")
    assert exported.returncode == 0, exported.stderr
    original = json.loads(CORPUS[index].read_text())
    descriptor = json.loads(exported.stdout)
    assert descriptor["container"]["command"] == original["container"]["command"]
    assert descriptor["batch"]["retryPolicy"] == original["batch"]["retryPolicy"]


async def test_definitions_whose_secrets_aws_resolves_run_with_them(
    dev_server: str,
    tmp_path: Path,
    moto: Moto,  # noqa: F811  (the fixture)
) -> None:
    """Secrets Manager and SSM references, as AWS Batch definitions carry them, resolved
    by the agent from a moto server holding the sidecar's values."""
    assert NEEDS_AWS, "no fixture needs AWS: the corpus lost its secrets case"
    for fixture in NEEDS_AWS:
        values = expectation(fixture)["aws"]
        for name, value in values.get("secrets", {}).items():
            boto3.client("secretsmanager", region_name=REGION, endpoint_url=moto.url).create_secret(
                Name=name, SecretString=value
            )
        for name, value in values.get("parameters", {}).items():
            boto3.client("ssm", region_name=REGION, endpoint_url=moto.url).put_parameter(
                Name=name, Value=value, Type="SecureString"
            )
    cluster = Cluster.create(
        dev_server,
        tmp_path,
        AWS_ENDPOINT_URL=moto.url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
    )
    try:
        cluster.start_worker()
        cluster.start_agent("local", "--cpu", "2", "--memory", "2Gi")
        client = await cluster.client()
        await asyncio.gather(
            *(
                run_to_its_end(client, cluster, fixture, imported(fixture), aws=True)
                for fixture in NEEDS_AWS
            )
        )
    finally:
        await asyncio.to_thread(cluster.stop_all)
