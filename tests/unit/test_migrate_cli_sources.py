"""`titus-flow import` / `export` with AWS Batch and Kubernetes input, as a user runs them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from cli_fork import run_cli
from click.testing import CliRunner, Result

from titus_flow.cli import _register_commands
from titus_flow.cli.app import cli
from titus_flow.errors import UserError

ROOT = Path(__file__).parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "import"


def titus(*args: str, stdin: str | None = None) -> Result:
    """The CLI in this process; a UserError escaping it is what `titus-flow` exits 2 for."""
    _register_commands()
    return CliRunner().invoke(
        cli, list(args), input=stdin, env={**os.environ, "TITUS_FLOW_CONFIG": "/nonexistent"}
    )


def exit_code(result: Result) -> int:
    """The exit code ``titus-flow`` gives for ``result`` (2 for bad input)."""
    if isinstance(result.exception, UserError):
        return 2
    return result.exit_code


@pytest.mark.parametrize("fixture", ["aws-batch-array-n-to-n.json", "k8s-deployment-probes.yaml"])
def test_import_detects_the_source_reports_drops_and_validates(
    fixture: str, tmp_path: Path
) -> None:
    out = tmp_path / "jobs.yaml"
    result = titus("import", str(FIXTURES / fixture), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "dropped: " in result.stderr
    assert exit_code(titus("validate", str(out))) == 0
    as_json = json.loads(titus("import", str(FIXTURES / fixture), "-o", "json").stdout)
    assert as_json["dropped"] and all(set(d) == {"path", "reason"} for d in as_json["dropped"])


@pytest.mark.parametrize(
    ("document", "source", "expected"),
    [
        (
            {"jobDefinitionName": "j", "containerProperties": {"image": 7}},
            "aws-batch",
            "containerProperties.image",
        ),
        (
            {
                "jobDefinitionName": "j",
                "containerProperties": {
                    "image": "busybox",
                    "environment": [{"name": "${x}", "value": "1"}],
                },
            },
            "aws-batch",
            "container.env",
        ),
        (
            {
                "jobDefinitionName": "j",
                "containerProperties": {"image": "busybox"},
                "tags": {"{0}": "x"},
            },
            "aws-batch",
            "labels",
        ),
        (
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "w"},
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "image": "busybox",
                                    "livenessProbe": {
                                        "exec": {"command": ["true"]},
                                        "httpGet": {"port": 1},
                                    },
                                }
                            ]
                        }
                    }
                },
            },
            "k8s",
            "livenessProbe",
        ),
        (
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": "j"},
                "spec": {
                    "template": {
                        "spec": {
                            "nodeSelector": {"${jndi:ldap://x}": "1"},
                            "containers": [{"image": "busybox"}],
                        }
                    }
                },
            },
            "k8s",
            "spec.template.spec.nodeSelector",
        ),
    ],
)
def test_bad_input_exits_2_naming_the_field(
    document: dict[str, object], source: str, expected: str
) -> None:
    result = titus("import", "-", "--from", source, stdin=json.dumps(document))
    assert exit_code(result) == 2, result.output
    assert expected in str(result.exception)


def test_a_10_mb_document_exits_2_without_a_traceback() -> None:
    command = ["x" * (10 << 20)]
    document = {"jobDefinitionName": "j", "containerProperties": {"image": "b", "command": command}}
    result = run_cli(
        ["import", "-", "--from", "aws-batch"], input=json.dumps(document), cwd=ROOT, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr


def test_export_of_a_job_file_to_both(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(
        yaml.safe_dump(
            {
                "name": "hello",
                "instances": 2,
                "container": {"image": "busybox:latest", "command": "echo hi"},
            }
        )
    )
    batch = titus("export", str(jobs), "--to", "aws-batch")
    assert batch.exit_code == 0, batch.output
    assert json.loads(batch.stdout)["submitJob"]["arrayProperties"] == {"size": 2}
    kube = titus("export", str(jobs), "--to", "k8s")
    assert kube.exit_code == 0, kube.output
    assert yaml.safe_load(kube.stdout)["spec"]["completionMode"] == "Indexed"
