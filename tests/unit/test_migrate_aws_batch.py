"""AWS Batch import and export: mappings, reports, hostile input, round trips."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from migrate_helpers import assert_as_expected, assert_carried, jobs_of, mounted, paths, retry_rule

from titus_flow.migrate import aws_batch
from titus_flow.migrate.report import MigrateInputError
from titus_flow.spec import BatchJob, Container, Retry, ServiceJob

FIXTURES = Path(__file__).parents[1] / "fixtures" / "import"
BATCH_FIXTURES = sorted(FIXTURES.glob("aws-batch-*.json"))


def definition(**container: Any) -> dict[str, Any]:
    """A minimal RegisterJobDefinition request with ``container`` properties added."""
    return {
        "jobDefinitionName": "job",
        "type": "container",
        "containerProperties": {"image": "busybox:latest", **container},
    }


def imported(document: dict[str, Any]) -> BatchJob:
    (job,) = jobs_of(aws_batch.import_document(document))
    assert isinstance(job, BatchJob)
    return job


@pytest.mark.parametrize(
    ("properties", "read", "expected"),
    [
        ({"command": ["echo", "hi"]}, lambda j: j.container.command, ["echo", "hi"]),
        ({"environment": [{"name": "A", "value": "1"}]}, lambda j: j.container.env, {"A": "1"}),
        (
            {"resourceRequirements": [{"type": "VCPU", "value": "0.5"}]},
            lambda j: j.resources.cpu,
            0.5,
        ),
        (
            {"resourceRequirements": [{"type": "MEMORY", "value": "2048"}]},
            lambda j: j.resources.memory,
            2048,
        ),
        ({"resourceRequirements": [{"type": "GPU", "value": "2"}]}, lambda j: j.resources.gpu, 2),
        ({"vcpus": 2, "memory": 256}, lambda j: (j.resources.cpu, j.resources.memory), (2.0, 256)),
        ({"user": "1000:1000"}, lambda j: j.container.user, "1000:1000"),
        ({"readonlyRootFilesystem": True}, lambda j: j.container.read_only_root, True),
        ({"linuxParameters": {"sharedMemorySize": 128}}, lambda j: j.container.shm_size, 128),
        (
            {
                "secrets": [
                    {"name": "S", "valueFrom": "arn:aws:ssm:us-east-1:123456789012:parameter/p"}
                ]
            },
            lambda j: j.container.secrets,
            {"S": "arn:aws:ssm:us-east-1:123456789012:parameter/p"},
        ),
        (
            {"secrets": [{"name": "S", "valueFrom": "/team/p"}]},
            lambda j: j.container.secrets,
            {"S": "ssm:/team/p"},
        ),
        (
            {"jobRoleArn": "arn:aws:iam::123456789012:role/app"},
            lambda j: j.security.iam_role,
            "arn:aws:iam::123456789012:role/app",
        ),
        (
            {
                "volumes": [
                    {"name": "d", "host": {"sourcePath": "/srv/d"}},
                    {"name": "s", "host": {}},
                ],
                "mountPoints": [
                    {"sourceVolume": "d", "containerPath": "/d", "readOnly": True},
                    {"sourceVolume": "s", "containerPath": "/s"},
                ],
            },
            mounted,
            [("/d", True, "host_path", {"path": "/srv/d"}), ("/s", False, "scratch", {})],
        ),
        (
            {
                "volumes": [
                    {
                        "name": "m",
                        "efsVolumeConfiguration": {
                            "fileSystemId": "fs-12345678",
                            "rootDirectory": "/models",
                        },
                    }
                ],
                "mountPoints": [{"sourceVolume": "m", "containerPath": "/models"}],
            },
            mounted,
            [("/models", False, "efs", {"file_system_id": "fs-12345678", "path": "/models"})],
        ),
        (
            {"linuxParameters": {"tmpfs": [{"containerPath": "/fast", "size": 64}]}},
            mounted,
            [("/fast", False, "tmpfs", {"size": "64Mi"})],
        ),
    ],
)
def test_container_properties_map_to_the_spec(
    properties: dict[str, Any], read: Any, expected: Any
) -> None:
    assert read(imported(definition(**properties))) == expected


@pytest.mark.parametrize(
    ("rules", "retry_on", "never"),
    [
        ([{"onExitCode": "3", "action": "EXIT"}], None, [3]),
        ([{"onExitCode": "1", "action": "RETRY"}, {"onExitCode": "*", "action": "EXIT"}], [1], []),
        (
            [{"onExitCode": "13*", "action": "retry"}, {"onExitCode": "*", "action": "exit"}],
            [13, *range(130, 140)],
            [],
        ),
        ([{"onExitCode": "25*", "action": "EXIT"}], None, [25, *range(250, 256)]),
        ([{"onExitCode": "*", "action": "EXIT"}], [], []),
        ([{"onExitCode": "2", "action": "RETRY"}, {"onExitCode": "2", "action": "EXIT"}], None, []),
    ],
)
def test_evaluate_on_exit_becomes_exit_code_rules(
    rules: list[dict[str, str]], retry_on: list[int] | None, never: list[int]
) -> None:
    document = definition() | {"retryStrategy": {"attempts": 3, "evaluateOnExit": rules}}
    retry = imported(document).retry
    assert (retry.attempts, retry.retry_on_exit_codes, retry.never_retry_on_exit_codes) == (
        3,
        retry_on,
        never,
    )


def test_a_rule_on_a_reason_is_reported_and_left_out() -> None:
    rules = [{"onReason": "CannotPullContainer*", "onExitCode": "1", "action": "EXIT"}]
    translation = aws_batch.import_document(
        definition() | {"retryStrategy": {"attempts": 2, "evaluateOnExit": rules}}
    )
    assert "retryStrategy.evaluateOnExit[0].onReason" in paths(translation)
    assert "never_retry_on_exit_codes" not in translation.document["retry"]


def test_submission_sets_instances_dependencies_parameters_and_overrides() -> None:
    document = {
        "jobDefinition": definition(command=["echo", "Ref::what", "Ref::where", "Ref::unknown"])
        | {"parameters": {"what": "default", "where": "here"}},
        "submitJobs": [
            {
                "jobName": "first",
                "jobQueue": "q",
                "jobDefinition": "job",
                "arrayProperties": {"size": 4},
            },
            {
                "jobName": "second",
                "jobQueue": "q",
                "jobDefinition": "job:7",
                "arrayProperties": {"size": 4},
                "parameters": {"what": "override"},
                "dependsOn": [{"jobId": "first", "type": "N_TO_N"}, {"type": "SEQUENTIAL"}],
                "containerOverrides": {"resourceRequirements": [{"type": "VCPU", "value": "2"}]},
                "timeout": {"attemptDurationSeconds": 90},
            },
        ],
    }
    translation = aws_batch.import_document(document)
    first, second = jobs_of(translation)
    assert isinstance(first, BatchJob) and isinstance(second, BatchJob)
    assert first.instances == second.instances == 4
    assert first.container.command == ["echo", "default", "here", "Ref::unknown"]
    assert second.container.command == ["echo", "override", "here", "Ref::unknown"]
    assert [(d.job, d.mode) for d in second.depends_on] == [("first", "n_to_n")]
    assert second.task_order == "sequential"
    assert (first.resources.cpu, second.resources.cpu) == (1.0, 2.0)
    assert second.runtime_limit is not None and second.runtime_limit.total_seconds() == 90
    dropped = paths(translation)
    assert "Ref::unknown" in dropped["jobDefinition.containerProperties.command[3]"]
    assert "submitJobs[0].jobQueue" in dropped


def test_a_dependency_on_a_job_outside_the_file_is_reported() -> None:
    document = {
        "jobDefinition": definition(),
        "submitJob": {
            "jobName": "b",
            "jobQueue": "q",
            "jobDefinition": "job",
            "dependsOn": [{"jobId": "0a1b-uuid"}],
        },
    }
    translation = aws_batch.import_document(document)
    assert "submitJob.dependsOn[0].jobId" in paths(translation)
    assert "depends_on" not in translation.document


def test_unknown_fields_are_reported_never_silently_dropped() -> None:
    document = definition(privileged=True, somethingNew={"a": 1}) | {"futureField": 1}
    dropped = paths(aws_batch.import_document(document))
    assert dropped["containerProperties.privileged"].startswith("titus-flow never")
    assert dropped["containerProperties.somethingNew"] == "no titus-flow counterpart"
    assert dropped["futureField"] == "no titus-flow counterpart"


@pytest.mark.parametrize(
    ("document", "path"),
    [
        ({"jobDefinitionName": "j", "containerProperties": "busybox"}, "containerProperties"),
        (definition(command="echo hi"), "containerProperties.command"),
        (definition(command=["echo", 1]), "containerProperties.command[1]"),
        (definition(vcpus="lots"), "containerProperties.vcpus"),
        (
            definition(resourceRequirements=[{"type": "VCPU", "value": "{0}"}]),
            "containerProperties.resourceRequirements[0].value",
        ),
        (
            definition(environment=[{"name": "A", "value": ["x"]}]),
            "containerProperties.environment[0].value",
        ),
        (
            definition(mountPoints=[{"sourceVolume": "nope", "containerPath": "/x"}]),
            "containerProperties.mountPoints[0].sourceVolume",
        ),
        (definition() | {"type": "multinode"}, "type"),
        (
            definition()
            | {"retryStrategy": {"evaluateOnExit": [{"onExitCode": "${x}", "action": "EXIT"}]}},
            "retryStrategy.evaluateOnExit[0].onExitCode",
        ),
        (
            definition()
            | {"retryStrategy": {"evaluateOnExit": [{"onExitCode": "1", "action": "{0}"}]}},
            "retryStrategy.evaluateOnExit[0].action",
        ),
        (
            {
                "jobDefinition": definition(),
                "submitJob": {"jobName": "${jndi:x}", "jobDefinition": "other"},
            },
            "submitJob.jobDefinition",
        ),
        (
            {"jobDefinition": definition(), "submitJob": {"jobName": "{}", "jobDefinition": "job"}},
            "submitJob.jobName",
        ),
        (
            {
                "jobDefinition": definition(),
                "submitJob": {
                    "jobName": "a",
                    "jobDefinition": "job",
                    "dependsOn": [{"jobId": "x", "type": "ALL"}],
                },
            },
            "submitJob.dependsOn[0].type",
        ),
    ],
)
def test_bad_input_names_the_field(document: dict[str, Any], path: str) -> None:
    with pytest.raises(MigrateInputError) as raised:
        aws_batch.import_document(document)
    assert raised.value.path == path


def test_hostile_names_are_data_never_templates() -> None:
    name = "${jndi:ldap://x}{0.__class__}%s"
    document = {
        "jobDefinition": definition(command=["echo", name]) | {"parameters": {"p": "{0}"}},
        "submitJob": {"jobName": name, "jobQueue": "q", "jobDefinition": "job"},
    }
    translation = aws_batch.import_document(document)
    (job,) = jobs_of(translation)
    assert job.name == "jndi-ldap-x-0-class-s"
    assert job.container.command == ["echo", name]
    assert "renamed to jndi-ldap-x-0-class-s" in paths(translation)["submitJob.jobName"]


def test_a_service_job_cannot_be_exported() -> None:
    service = ServiceJob(name="web", container=Container(image="busybox:latest"))
    with pytest.raises(MigrateInputError):
        aws_batch.export_job(service)


def test_export_reports_what_aws_batch_cannot_express() -> None:
    job = BatchJob(
        name="j",
        owner="me",
        container=Container(
            image="busybox:latest",
            entrypoint=["sh"],
            ports=["http"],
            secrets={"S": "env_file:/etc/team.env#S"},
        ),
        retry=Retry(attempts=20, backoff="exponential"),
        runtime_limit="30s",
    )
    dropped = paths(aws_batch.export_job(job))
    for path in (
        "owner",
        "container.entrypoint",
        "container.ports",
        "container.secrets.S",
        "retry.attempts",
        "retry.backoff",
        "runtime_limit",
    ):
        assert path in dropped, path


CARRIED = {
    "name": lambda j: j.name,
    "instances": lambda j: j.instances,
    "image": lambda j: j.container.image,
    "command": lambda j: j.container.command,
    "env": lambda j: j.container.env,
    "secrets": lambda j: j.container.secrets,
    "user": lambda j: j.container.user,
    "read_only_root": lambda j: j.container.read_only_root,
    "shm_size": lambda j: j.container.shm_size,
    "mounts": mounted,
    "resources": lambda j: (j.resources.cpu, j.resources.memory, j.resources.gpu),
    "retry": retry_rule,
    "runtime_limit": lambda j: j.runtime_limit,
    "depends_on": lambda j: [(d.job, d.mode) for d in j.depends_on],
    "task_order": lambda j: j.task_order,
    "labels": lambda j: j.labels,
    "iam_role": lambda j: j.security.iam_role,
}


@pytest.mark.parametrize("fixture", BATCH_FIXTURES, ids=lambda path: path.name)
def test_import_export_import_carries_every_field(fixture: Path) -> None:
    for job in jobs_of(aws_batch.import_document(json.loads(fixture.read_text()))):
        exported = aws_batch.export_job(job)
        (again,) = jobs_of(aws_batch.import_document(copy.deepcopy(exported.document)))
        # A dependency names a job of the original file; alone, the export cannot keep it.
        if job.depends_on:
            assert "submitJob.dependsOn[0].jobId" not in paths(exported)
            again = again.model_copy(update={"depends_on": job.depends_on})
        assert_carried(job, again, CARRIED)


def test_export_import_of_a_titus_flow_job_carries_every_field() -> None:
    job = BatchJob.model_validate(
        {
            "name": "full",
            "instances": 5,
            "container": {
                "image": "busybox:latest",
                "command": ["sh", "-c", "exit 0"],
                "env": {"A": "1"},
                "secrets": {"S": "ssm:/a/b"},
                "user": "1000",
                "read_only_root": True,
                "shm_size": "64Mi",
                "mounts": [
                    {"volume": "s", "path": "/s"},
                    {"volume": "t", "path": "/t", "read_only": True},
                ],
            },
            "volumes": [
                {"name": "s", "scratch": {}},
                {"name": "t", "host_path": {"path": "/srv/t"}},
            ],
            "resources": {"cpu": 1.5, "memory": "3Gi", "gpu": 1},
            "retry": {"attempts": 4, "retry_on_exit_codes": [1, 2, 137]},
            "runtime_limit": "1h",
            "task_order": "sequential",
            "labels": {"team": "x"},
            "security": {"iam_role": "arn:aws:iam::123456789012:role/app"},
        }
    )
    translation = aws_batch.export_job(job)
    assert translation.dropped == []
    (again,) = jobs_of(aws_batch.import_document(translation.document))
    assert_carried(job, again, CARRIED)


def test_export_gives_back_the_fields_of_the_original_definition() -> None:
    """Field by field against the input itself, for what the import carries unchanged."""
    original = json.loads((FIXTURES / "aws-batch-volumes-linux.json").read_text())["jobDefinition"]
    (job,) = jobs_of(aws_batch.import_document(copy.deepcopy({"jobDefinition": original})))
    exported = aws_batch.export_job(job).document["jobDefinition"]
    given, back = original["containerProperties"], exported["containerProperties"]
    for key in ("image", "resourceRequirements", "volumes", "readonlyRootFilesystem"):
        assert back[key] == given[key], key
    assert back["mountPoints"] == [{"sourceVolume": "scratch", "containerPath": "/scratch"}]
    assert back["linuxParameters"] == {
        "sharedMemorySize": 64,
        "tmpfs": [{"containerPath": "/fast", "size": 16}],
    }
    assert back["command"][2] == given["command"][2].replace("Ref::frames", "4")


@pytest.mark.parametrize("fixture", BATCH_FIXTURES, ids=lambda path: path.stem)
def test_the_corpus_imports_as_its_sidecar_expects(fixture: Path) -> None:
    assert_as_expected(fixture, "aws-batch")


def test_a_json_key_of_a_secret_is_reported_and_the_whole_secret_kept() -> None:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf"
    secret = {"name": "PASSWORD", "valueFrom": arn + ":password::"}
    translation = aws_batch.import_document(definition(secrets=[secret]))
    (job,) = jobs_of(translation)
    assert job.container.secrets == {"PASSWORD": arn}
    assert "JSON key" in paths(translation)["containerProperties.secrets[0].valueFrom"]
