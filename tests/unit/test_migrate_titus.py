"""Titus import and export (issue #16): every fixture of tests/fixtures/import/titus-*,
what it becomes, what is reported, round trips, and hostile or broken input."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_fork import run_cli
from click.testing import CliRunner, Result

from titus_flow.cli import _register_commands
from titus_flow.cli.app import cli
from titus_flow.errors import UserError
from titus_flow.loader import load_jobs
from titus_flow.migrate import MAX_INPUT_BYTES, export_job, import_definition
from titus_flow.migrate.titus import import_document

FIXTURES = Path(__file__).parents[1] / "fixtures" / "import"
TITUS = sorted(FIXTURES.glob("titus-*.json"))


def expectation(fixture: Path) -> dict[str, Any]:
    """The sidecar ``<name>.expect.yaml`` of a fixture."""
    loaded: dict[str, Any] = yaml.safe_load(fixture.with_suffix(".expect.yaml").read_text())
    return loaded


def numbers(value: Any) -> Any:
    """proto3 JSON's digit strings as numbers, so "60" and 60 compare equal."""
    if isinstance(value, dict):
        return {key: numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [numbers(item) for item in value]
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def invoke(tmp_path: Path, *args: str) -> Result:
    _register_commands()
    return CliRunner().invoke(
        cli,
        ["--home", str(tmp_path / "home"), *args],
        env={**os.environ, "TITUS_FLOW_CONFIG": str(tmp_path / "none.yaml")},
    )


def test_the_corpus_has_every_retry_policy_and_budget_kind() -> None:
    documents = [json.loads(path.read_text()) for path in TITUS]
    policies = {next(iter(d["batch"]["retryPolicy"])) for d in documents if "batch" in d}
    assert policies == {"immediate", "delayed", "exponentialBackOff"}
    budgets = {
        key for d in documents for key in d.get("disruptionBudget", {}) if key.endswith("Limit")
    }
    assert {"availabilityPercentageLimit", "unhealthyTasksLimit", "relocationLimit"} <= budgets


@pytest.mark.parametrize("fixture", TITUS, ids=lambda path: path.stem)
def test_import_gives_the_expected_job_and_reports_every_field_not_carried(
    fixture: Path,
) -> None:
    expected = expectation(fixture)
    imported = import_definition(fixture.read_bytes(), "titus")
    assert imported.translation.document == expected["job"]
    assert sorted(item.path for item in imported.dropped) == sorted(expected["dropped"])
    assert all(item.reason for item in imported.dropped)


@pytest.mark.parametrize("output", ["yaml", "python"])
@pytest.mark.parametrize("fixture", TITUS, ids=lambda path: path.stem)
def test_the_printed_job_file_loads_as_the_imported_job(
    fixture: Path, output: str, tmp_path: Path
) -> None:
    job_file = tmp_path / ("job.py" if output == "python" else "job.yaml")
    result = invoke(tmp_path, "import", str(fixture), "-o", output, "--out", str(job_file))
    assert result.exit_code == 0, result.output
    [job] = load_jobs(job_file)
    assert job == import_definition(fixture.read_bytes()).job


@pytest.mark.parametrize("fixture", TITUS, ids=lambda path: path.stem)
def test_export_gives_back_an_equivalent_descriptor(fixture: Path) -> None:
    original = json.loads(fixture.read_text())
    imported = import_definition(fixture.read_bytes())
    exported = export_job(imported.job, "titus").document
    # Field by field, for what the import carries.
    for key in ("owner",):
        assert exported.get(key) == original.get(key)
    assert exported["applicationName"] == imported.job.name
    assert exported["capacityGroup"] == imported.job.capacity_group  # as a titus-flow name
    kept = {
        k: v for k, v in original.get("attributes", {}).items() if not k.lower().startswith("titus")
    }
    assert exported.get("attributes", {}) == kept
    container, was = exported["container"], original["container"]
    assert container["image"] == was["image"]
    for key in ("entryPoint", "command", "env", "attributes"):
        assert container.get(key) == (was.get(key) or None), key
    for key in ("cpu", "gpu", "memoryMB", "diskMB", "networkMbps"):
        if key in was["resources"]:
            assert numbers(container["resources"][key]) == numbers(was["resources"][key]), key
    for level in ("hardConstraints", "softConstraints"):
        rules = {
            k: v
            for k, v in was.get(level, {}).get("constraints", {}).items()
            if k != "exclusiveHost" and v != "false"
        }
        assert container.get(level, {}).get("constraints", {}) == rules
    if "batch" in original:
        batch, was_batch = exported["batch"], original["batch"]
        for key in ("size", "runtimeLimitSec", "retryOnRuntimeLimit"):
            assert numbers(batch[key]) == numbers(was_batch.get(key, False)), key
        policy = numbers(was_batch["retryPolicy"])
        if "delayed" in policy:  # one delay before every retry: the initial one is the same
            policy["delayed"]["initialDelayMs"] = policy["delayed"]["delayMs"]
        assert numbers(batch["retryPolicy"]) == policy
    else:
        assert exported["service"]["capacity"] == original["service"]["capacity"]
        budget = original["disruptionBudget"]
        for policy in ("availabilityPercentageLimit", "unhealthyTasksLimit"):
            if policy in budget:
                assert numbers(exported["disruptionBudget"][policy]) == numbers(budget[policy])
    # And the way back in gives the same job.
    assert import_definition(json.dumps(exported).encode(), "titus").job == imported.job


def test_export_reports_what_titus_cannot_express(tmp_path: Path) -> None:
    result = invoke(tmp_path, "export", "examples/web.yaml", "--to", "titus")
    assert result.exit_code == 0, result.output
    assert "dropped: health_check: a JobDescriptor has no health check" in result.stderr
    assert "dropped: container.ports:" in result.stderr
    assert json.loads(result.stdout)["service"]["capacity"] == {"min": 1, "desired": 3, "max": 6}


def test_export_reports_autoscaling_which_titus_sets_elsewhere() -> None:
    job = import_definition((FIXTURES / "titus-service-unhealthy.json").read_bytes()).job
    scaled = type(job).model_validate({**job.model_dump(), "autoscaling": {"paused": True}})
    dropped = export_job(scaled, "titus").dropped
    assert [item.path for item in dropped] == ["autoscaling"]
    assert "autoscaling API" in dropped[0].reason


def test_json_output_holds_the_job_and_the_report(tmp_path: Path) -> None:
    result = invoke(tmp_path, "import", str(FIXTURES / "titus-batch-delayed.json"), "-o", "json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["source"] == "titus" and printed["job"]["name"] == "ingest-test"
    assert "disruptionBudget.relocationLimit" in [item["path"] for item in printed["dropped"]]
    assert "dropped: disruptionBudget.relocationLimit:" in result.stderr


def test_stdin_is_read_with_a_dash(tmp_path: Path) -> None:
    _register_commands()
    result = CliRunner().invoke(
        cli,
        ["--home", str(tmp_path / "home"), "import", "-", "-o", "json"],
        input=(FIXTURES / "titus-batch-exponential.json").read_text(),
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["job"]["name"] == "reports"


def test_an_image_digest_is_carried_and_a_tag_beside_it_reported() -> None:
    digest = "sha256:" + "a" * 64
    document = json.loads((FIXTURES / "titus-batch-exponential.json").read_text())
    document["container"]["image"] = {"name": "busybox", "tag": "latest", "digest": digest}
    translation = import_document(document)
    assert translation.document["container"]["image"] == f"busybox@{digest}"
    assert [d.path for d in translation.dropped] == ["container.image.tag"]


def test_a_titus_job_as_its_api_returns_it_is_imported_by_its_descriptor() -> None:
    descriptor = json.loads((FIXTURES / "titus-batch-delayed.json").read_text())
    api_job = {
        "id": "8a1f4a9e-0000-4000-8000-000000000001",
        "jobDescriptor": descriptor,
        "status": {"state": "Finished", "reasonCode": "normal", "timestamp": "1615574101371"},
        "statusHistory": [{"state": "Accepted", "timestamp": "1615574100000"}],
    }
    imported = import_definition(json.dumps(api_job).encode())
    assert imported.job == import_definition(json.dumps(descriptor).encode()).job
    paths = [item.path for item in imported.dropped]
    assert {"id", "status", "statusHistory"} <= set(paths)
    assert "jobDescriptor.disruptionBudget.relocationLimit" in paths


# -- hostile and broken input: exit 2 naming the field, never a traceback -------------------


def _broken(change: str, value: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((FIXTURES / "titus-batch-immediate.json").read_text())
    *parents, last = change.split("/")
    target = document
    for key in parents:
        target = target[key]
    target[last] = value
    return document


@pytest.mark.parametrize(
    ("change", "value", "says"),
    [
        ("batch/retryPolicy", {"bogus": {}}, "batch.retryPolicy.bogus: unknown key"),
        (
            "batch/retryPolicy",
            {"immediate": {}, "delayed": {}},
            "batch.retryPolicy: immediate and delayed are exclusive",
        ),
        (
            "container/hardConstraints",
            {"constraints": {"${jndi:ldap://x/a}": "1"}},
            "container.hardConstraints.constraints.${jndi:ldap://x/a}: '${', '{' and '}'",
        ),
        (
            "container/softConstraints",
            {"constraints": {"{7*7}": "1"}},
            "container.softConstraints.constraints.{7*7}: '${'",
        ),
        ("attributes", {"#{T(java.lang.Runtime)}": "x"}, "attributes.#{T(java.lang.Runtime)}:"),
        ("batch/size", True, "batch.size: expected an integer"),
        ("batch/size", "many", "batch.size: expected an integer"),
        ("container/env", ["A=1"], "container.env: expected a mapping"),
        ("container/command", "echo hi", "container.command: expected a list"),
        ("container/resources", {"cpu": "lots"}, "container.resources.cpu: expected a number"),
        ("batch/retryPolicy", {"immediate": {"retries": 1000}}, "retries: at most 99"),
        ("disruptionBudget", {"weekendsOnly": {}}, "disruptionBudget.weekendsOnly: unknown key"),
        ("service", {}, "batch and service are exclusive"),
        ("container", None, "container: missing: this field is required"),
        ("container", "busybox", "container: expected a mapping"),
        ("attributes", {"team": 7}, "attributes.team: expected a string"),
    ],
)
def test_bad_input_exits_2_naming_the_field(
    change: str, value: Any, says: str, tmp_path: Path
) -> None:
    path = tmp_path / "titus.json"
    path.write_text(json.dumps(_broken(change, value)))
    result = invoke(tmp_path, "import", str(path), "--from", "titus")
    # The CLI's main() turns a UserError into one line on stderr and exit code 2.
    assert isinstance(result.exception, UserError), result.exception
    assert says in str(result.exception)


def test_an_invalid_resulting_job_names_the_field() -> None:
    document = _broken("container/env", {"1BAD": "x"})
    with pytest.raises(UserError, match=r"container\.env"):
        import_definition(json.dumps(document).encode())


def test_a_10_mb_document_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    path.write_text('{"applicationName": "' + "x" * (10 * MAX_INPUT_BYTES) + '"}')
    result = invoke(tmp_path, "import", str(path))
    assert isinstance(result.exception, UserError)
    assert "over 1048576 bytes" in str(result.exception)


def test_the_command_line_exits_2_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "titus.json"
    path.write_text(json.dumps(_broken("batch/retryPolicy", {"sometimes": {"retries": 1}})))
    done = run_cli(
        ["import", str(path)],
        timeout=60,
        env={
            "TITUS_FLOW_CONFIG": str(tmp_path / "none.yaml"),
            "PATH": "/usr/bin:/bin",
            **{k: v for k, v in __import__("os").environ.items() if k == "PYTHONPATH"},
        },
    )
    assert done.returncode == 2, done
    assert "batch.retryPolicy.sometimes: unknown key" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
