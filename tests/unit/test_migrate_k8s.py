"""Kubernetes import and export: mappings, reports, hostile input, round trips."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from migrate_helpers import assert_as_expected, assert_carried, jobs_of, mounted, paths, retry_rule

from titus_flow.migrate import k8s
from titus_flow.migrate.report import MigrateInputError, Translation
from titus_flow.spec import BatchJob, ServiceJob

FIXTURES = Path(__file__).parents[1] / "fixtures" / "import"
K8S_FIXTURES = sorted(p for p in FIXTURES.glob("k8s-*.yaml") if not p.name.endswith(".expect.yaml"))


def job_object(spec: dict[str, Any] | None = None, **container: Any) -> dict[str, Any]:
    """A minimal batch/v1 Job with ``spec`` fields and ``container`` fields added."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "job"},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox:latest", **container}],
                }
            },
            **(spec or {}),
        },
    }


def deployment(spec: dict[str, Any] | None = None, **container: Any) -> dict[str, Any]:
    """A minimal apps/v1 Deployment with ``spec`` fields and ``container`` fields added."""
    document = job_object(spec, **container)
    document.update(apiVersion="apps/v1", kind="Deployment")
    document["spec"]["template"]["spec"].pop("restartPolicy")
    return document


def one(document: dict[str, Any]) -> Any:
    (job,) = jobs_of(k8s.import_document(document))
    return job


@pytest.mark.parametrize(
    ("container", "read", "expected"),
    [
        (
            {"command": ["sh", "-c"], "args": ["echo hi"]},
            lambda j: (j.container.entrypoint, j.container.command),
            (["sh", "-c"], ["echo hi"]),
        ),
        ({"env": [{"name": "A", "value": "1"}]}, lambda j: j.container.env, {"A": "1"}),
        ({"workingDir": "/app"}, lambda j: j.container.working_dir, "/app"),
        (
            {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}},
            lambda j: (j.resources.cpu, j.resources.memory),
            (0.5, 1024),
        ),
        (
            {"resources": {"limits": {"cpu": 2, "memory": "512M"}}},
            lambda j: (j.resources.cpu, j.resources.memory),
            (2.0, 489),
        ),
        ({"resources": {"requests": {"memory": "134217728"}}}, lambda j: j.resources.memory, 128),
        ({"resources": {"requests": {"memory": "1e9"}}}, lambda j: j.resources.memory, 954),
        (
            {"resources": {"limits": {"nvidia.com/gpu": 1, "ephemeral-storage": "2Gi"}}},
            lambda j: (j.resources.gpu, j.resources.disk),
            (1, 2048),
        ),
        (
            {"securityContext": {"runAsUser": 1000, "runAsGroup": 2000}},
            lambda j: j.container.user,
            "1000:2000",
        ),
        (
            {"securityContext": {"readOnlyRootFilesystem": True}},
            lambda j: j.container.read_only_root,
            True,
        ),
    ],
)
def test_container_fields_map_to_the_spec(
    container: dict[str, Any], read: Any, expected: Any
) -> None:
    assert read(one(job_object(**container))) == expected


def test_pod_volumes_node_selector_and_host_network() -> None:
    document = job_object(
        volumeMounts=[
            {"name": "scratch", "mountPath": "/scratch"},
            {"name": "fast", "mountPath": "/fast", "readOnly": True},
            {"name": "data", "mountPath": "/data"},
            {"name": "config", "mountPath": "/config"},
        ]
    )
    pod = document["spec"]["template"]["spec"]
    pod["volumes"] = [
        {"name": "scratch", "emptyDir": {}},
        {"name": "fast", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        {"name": "data", "hostPath": {"path": "/srv/data", "type": "Directory"}},
        {"name": "config", "configMap": {"name": "app-config"}},
    ]
    pod["nodeSelector"] = {"zone": "us-east-1a"}
    pod["hostNetwork"] = True
    translation = k8s.import_document(document)
    (job,) = jobs_of(translation)
    assert mounted(job) == [
        ("/data", False, "host_path", {"path": "/srv/data"}),
        ("/fast", True, "tmpfs", {"size": "64Mi"}),
        ("/scratch", False, "scratch", {}),
    ]
    assert job.constraints.hard.attributes == {"zone": "us-east-1a"}
    assert job.container.network == "host"
    dropped = paths(translation)
    assert "spec.template.spec.volumes[3]" in dropped
    assert "spec.template.spec.volumes[2].hostPath.type" in dropped


@pytest.mark.parametrize(
    ("spec", "attempts", "retry_on", "never"),
    [
        ({}, 7, None, []),
        ({"backoffLimit": 0}, 1, None, []),
        ({"backoffLimitPerIndex": 2, "completions": 3, "completionMode": "Indexed"}, 3, None, []),
        (
            {
                "backoffLimit": 3,
                "podFailurePolicy": {
                    "rules": [
                        {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42, 43]}}
                    ]
                },
            },
            4,
            None,
            [42, 43],
        ),
        (
            {
                "backoffLimit": 3,
                "podFailurePolicy": {
                    "rules": [
                        {
                            "action": "FailJob",
                            "onExitCodes": {"operator": "NotIn", "values": [1, 2]},
                        }
                    ]
                },
            },
            4,
            [1, 2],
            [],
        ),
        (
            {
                "backoffLimit": 1,
                "podFailurePolicy": {
                    "rules": [
                        {"action": "Count", "onExitCodes": {"operator": "In", "values": [5]}},
                        {
                            "action": "FailIndex",
                            "onExitCodes": {"operator": "In", "values": [5, 6]},
                        },
                        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                    ]
                },
            },
            2,
            None,
            [6],
        ),
    ],
)
def test_backoff_limit_and_pod_failure_policy(
    spec: dict[str, Any], attempts: int, retry_on: list[int] | None, never: list[int]
) -> None:
    retry = one(job_object(spec)).retry
    assert (retry.attempts, retry.retry_on_exit_codes, retry.never_retry_on_exit_codes) == (
        attempts,
        retry_on,
        never,
    )


def test_semantic_differences_are_reported() -> None:
    document = job_object({"completions": 4, "backoffLimit": 2, "activeDeadlineSeconds": 60})
    document["spec"]["podFailurePolicy"] = {
        "rules": [
            {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [3]}},
            {"action": "FailJob", "onPodConditions": [{"type": "ConfigIssue"}]},
            {
                "action": "FailJob",
                "onExitCodes": {"containerName": "sidecar", "operator": "In", "values": [4]},
            },
        ]
    }
    translation = k8s.import_document(document)
    (job,) = jobs_of(translation)
    assert isinstance(job, BatchJob) and job.instances == 4
    assert job.runtime_limit is not None and job.runtime_limit.total_seconds() == 60
    dropped = paths(translation)
    assert "whole Job" in dropped["spec.activeDeadlineSeconds"]
    assert "per task" in dropped["spec.backoffLimit"]
    assert "unset means 1" in dropped["spec.parallelism"]
    for index in range(3):
        assert f"spec.podFailurePolicy.rules[{index}]" in dropped


def test_a_deployment_becomes_a_service_with_a_health_check() -> None:
    probe = {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 5, "failureThreshold": 2}
    document = deployment(
        {
            "replicas": 4,
            "strategy": {"rollingUpdate": {"maxSurge": "50%", "maxUnavailable": "10%"}},
        },
        ports=[{"name": "web-port", "containerPort": 8080}],
        readinessProbe=probe,
        livenessProbe={"tcpSocket": {"port": "web-port"}},
    )
    translation = k8s.import_document(document)
    (job,) = jobs_of(translation)
    assert isinstance(job, ServiceJob)
    assert job.capacity.desired == 4
    assert (job.update.max_surge, job.update.max_unavailable) == (2, 0)
    assert job.container.ports == ["web_port"]
    check = job.health_check
    assert check is not None and check.kind == "tcp" and check.timeout.total_seconds() == 1
    dropped = paths(translation)
    assert "livenessProbe is kept" in dropped["spec.template.spec.containers[0].readinessProbe"]
    assert "PORT_WEB_PORT" in dropped["spec.template.spec.containers[0].ports[0].containerPort"]
    assert "50% of 4 replicas" in dropped["spec.strategy.rollingUpdate.maxSurge"]


def test_probes_exec_and_defaults() -> None:
    document = deployment(
        readinessProbe={"exec": {"command": ["cat", "/ready"]}, "initialDelaySeconds": 15}
    )
    check = one(document).health_check
    assert check.kind == "exec" and check.command == ["cat", "/ready"]
    assert (check.interval.total_seconds(), check.start_grace_period.total_seconds()) == (10, 15)


def test_a_list_holds_several_jobs_and_sidecars_are_reported() -> None:
    second = job_object()
    second["metadata"]["name"] = "other"
    second["spec"]["template"]["spec"]["containers"].append(
        {"name": "side", "image": "envoy", "ports": [1]}
    )
    translation = k8s.import_document(
        {"apiVersion": "v1", "kind": "List", "items": [job_object(), second]}
    )
    assert [job.name for job in jobs_of(translation)] == ["job", "other"]
    assert "items[1].spec.template.spec.containers[1]" in paths(translation)
    assert not any("containers[1]." in path for path in paths(translation))


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda d: d.update(kind="CronJob"), "kind"),
        (lambda d: d.update(apiVersion="batch/v1beta1"), "kind"),
        (lambda d: d.pop("metadata"), "metadata"),
        (lambda d: d["metadata"].update(name=7), "metadata.name"),
        (lambda d: d["spec"].update(completions="3x"), "spec.completions"),
        (lambda d: d["spec"].update(template=[]), "spec.template"),
        (
            lambda d: d["spec"]["template"]["spec"].update(containers=[]),
            "spec.template.spec.containers",
        ),
        (
            lambda d: d["spec"]["template"]["spec"].update(nodeSelector={"${jndi:x}": "a"}),
            "spec.template.spec.nodeSelector",
        ),
        (
            lambda d: d["spec"]["template"]["spec"].update(nodeSelector={"zone": "{0}"}),
            "spec.template.spec.nodeSelector",
        ),
        (
            lambda d: d["spec"]["template"]["spec"]["containers"][0].update(
                resources={"requests": {"cpu": "lots"}}
            ),
            "spec.template.spec.containers[0].resources.requests.cpu",
        ),
        (
            lambda d: d["spec"]["template"]["spec"]["containers"][0].update(
                resources={"requests": {"memory": "1e99"}}
            ),
            "spec.template.spec.containers[0].resources.requests.memory",
        ),
        (
            lambda d: d["spec"]["template"]["spec"]["containers"][0].update(args="echo"),
            "spec.template.spec.containers[0].args",
        ),
        (
            lambda d: d["spec"].update(
                podFailurePolicy={
                    "rules": [
                        {"action": "FailJob", "onExitCodes": {"operator": "Maybe", "values": [1]}}
                    ]
                }
            ),
            "spec.podFailurePolicy.rules[0].onExitCodes.operator",
        ),
        (
            lambda d: d["spec"].update(
                podFailurePolicy={
                    "rules": [
                        {"action": "FailJob", "onExitCodes": {"operator": "In", "values": ["1"]}}
                    ]
                }
            ),
            "spec.podFailurePolicy.rules[0].onExitCodes.values",
        ),
    ],
)
def test_bad_input_names_the_field(mutate: Any, path: str) -> None:
    document = job_object()
    mutate(document)
    with pytest.raises(MigrateInputError) as raised:
        k8s.import_document(document)
    assert raised.value.path == path


def test_a_probe_with_two_handlers_or_an_unknown_port_is_refused() -> None:
    for probe, path in [
        (
            {"exec": {"command": ["true"]}, "tcpSocket": {"port": 1}},
            "spec.template.spec.containers[0].livenessProbe",
        ),
        (
            {"tcpSocket": {"port": 9999}},
            "spec.template.spec.containers[0].livenessProbe.tcpSocket.port",
        ),
        ({"grpc": {"port": 1}}, "spec.template.spec.containers[0].livenessProbe.grpc"),
    ]:
        with pytest.raises(MigrateInputError) as raised:
            k8s.import_document(deployment(livenessProbe=probe))
        assert raised.value.path == path


CARRIED = {
    "name": lambda j: j.name,
    "labels": lambda j: j.labels,
    "image": lambda j: j.container.image,
    "entrypoint": lambda j: j.container.entrypoint,
    "command": lambda j: j.container.command,
    "env": lambda j: j.container.env,
    "ports": lambda j: j.container.ports,
    "working_dir": lambda j: j.container.working_dir,
    "user": lambda j: j.container.user,
    "read_only_root": lambda j: j.container.read_only_root,
    "container labels": lambda j: j.container.labels,
    "network": lambda j: j.container.network,
    "mounts": mounted,
    "resources": lambda j: (j.resources.cpu, j.resources.memory, j.resources.disk, j.resources.gpu),
    "attributes": lambda j: j.constraints.hard.attributes,
}
BATCH_CARRIED = {
    "instances": lambda j: j.instances,
    "retry": retry_rule,
    "runtime_limit": lambda j: j.runtime_limit,
}
SERVICE_CARRIED = {
    "desired": lambda j: j.capacity.desired,
    "update": lambda j: (j.update.max_surge, j.update.max_unavailable, j.update.healthy_deadline),
    "health_check": lambda j: j.health_check,
}


def carried(job: Any) -> dict[str, Any]:
    return CARRIED | (BATCH_CARRIED if isinstance(job, BatchJob) else SERVICE_CARRIED)


@pytest.mark.parametrize("fixture", K8S_FIXTURES, ids=lambda path: path.name)
def test_import_export_import_carries_every_field(fixture: Path) -> None:
    for job in jobs_of(k8s.import_document(yaml.safe_load(fixture.read_text()))):
        exported = k8s.export_job(job)
        (again,) = jobs_of(k8s.import_document(copy.deepcopy(exported.document)))
        assert_carried(job, again, carried(job))


@pytest.mark.parametrize(
    "raw",
    [
        {
            "kind": "batch",
            "name": "full",
            "instances": 6,
            "labels": {"team": "x"},
            "container": {
                "image": "busybox:latest",
                "entrypoint": ["sh", "-c"],
                "command": ["exit 0"],
                "env": {"A": "1"},
                "working_dir": "/w",
                "user": "1000:1000",
                "read_only_root": True,
                "labels": {"role": "worker"},
                "mounts": [
                    {"volume": "s", "path": "/s"},
                    {"volume": "t", "path": "/t", "read_only": True},
                ],
            },
            "volumes": [{"name": "s", "scratch": {}}, {"name": "t", "tmpfs": {"size": "32Mi"}}],
            "resources": {"cpu": 0.75, "memory": "3Gi", "disk": "10Gi", "gpu": 1},
            "retry": {"attempts": 4, "never_retry_on_exit_codes": [2, 3]},
            "runtime_limit": "10m",
            "constraints": {"hard": {"attributes": {"zone": "a"}}},
        },
        {
            "kind": "service",
            "name": "web",
            "container": {
                "image": "busybox:latest",
                "command": ["httpd", "-f"],
                "ports": ["http", "admin_port"],
            },
            "capacity": {"desired": 3},
            "update": {"max_surge": 2, "max_unavailable": 1, "healthy_deadline": "3m"},
            "health_check": {
                "kind": "http",
                "port": "admin_port",
                "path": "/h",
                "interval": "3s",
                "timeout": "2s",
                "unhealthy_threshold": 5,
                "start_grace_period": "20s",
            },
        },
        {
            "kind": "service",
            "name": "ready",
            "container": {"image": "busybox:latest", "ports": ["http"]},
            "health_check": {"kind": "tcp", "port": "http", "healthy_threshold": 3},
        },
    ],
    ids=["batch", "service", "readiness-only"],
)
def test_export_import_of_a_titus_flow_job_carries_every_field(raw: dict[str, Any]) -> None:
    (job,) = jobs_of(k8s.import_document(k8s.export_job(jobs_of_raw(raw)).document))
    assert_carried(jobs_of_raw(raw), job, carried(job))


def jobs_of_raw(raw: dict[str, Any]) -> Any:
    (job,) = jobs_of(Translation(raw))
    return job


def test_export_reports_what_kubernetes_cannot_express() -> None:
    job = jobs_of_raw(
        {
            "kind": "batch",
            "name": "j",
            "owner": "me",
            "depends_on": ["x"],
            "container": {
                "image": "busybox:latest",
                "secrets": {"S": "ssm:/a"},
                "user": "app",
                "shm_size": "64Mi",
            },
            "volumes": [{"name": "m", "efs": {"file_system_id": "fs-12345678"}}],
            "retry": {"backoff": "exponential"},
            "runtime_limit": "1.5s",
            "security": {"iam_role": "arn:aws:iam::123456789012:role/app"},
            "constraints": {"hard": {"unique_host": True, "attributes": {"zone": ["a", "b"]}}},
        }
    )
    dropped = paths(k8s.export_job(job))
    for path in (
        "owner",
        "depends_on",
        "container.secrets",
        "container.user",
        "container.shm_size",
        "volumes[0]",
        "retry.backoff",
        "runtime_limit",
        "security",
        "constraints.hard.unique_host",
        "constraints.hard.attributes",
    ):
        assert path in dropped, path


def test_export_gives_back_the_fields_of_the_original_objects() -> None:
    """Field by field against the input itself, for what the import carries unchanged."""
    for name, keys in [
        ("k8s-indexed-job.yaml", ("completions", "completionMode", "backoffLimitPerIndex")),
        ("k8s-deployment-probes.yaml", ("replicas", "progressDeadlineSeconds", "selector")),
    ]:
        original = yaml.safe_load((FIXTURES / name).read_text())
        (job,) = jobs_of(k8s.import_document(copy.deepcopy(original)))
        exported = k8s.export_job(job).document
        assert exported["metadata"]["labels"] == original["metadata"]["labels"]
        for key in keys:
            assert exported["spec"][key] == original["spec"][key], (name, key)
        given = original["spec"]["template"]["spec"]["containers"][0]
        back = exported["spec"]["template"]["spec"]["containers"][0]
        for key in ("image", "command", "args"):
            assert back.get(key) == given.get(key), (name, key)
        if "readinessProbe" in given:  # every field given is given back (defaults are added)
            probe = given["readinessProbe"]
            assert {field: back["readinessProbe"][field] for field in probe} == probe
        assert back["resources"]["requests"] == given["resources"]["requests"]


@pytest.mark.parametrize("fixture", K8S_FIXTURES, ids=lambda path: path.stem)
def test_the_corpus_imports_as_its_sidecar_expects(fixture: Path) -> None:
    assert_as_expected(fixture, "k8s")


def test_export_reports_autoscaling_as_a_horizontal_pod_autoscaler() -> None:
    job = jobs_of_raw({"kind": "service", "name": "w", "container": {"image": "busybox:latest"}})
    scaled = type(job).model_validate({**job.model_dump(), "autoscaling": {"paused": True}})
    assert "HorizontalPodAutoscaler" in paths(k8s.export_job(scaled))["autoscaling"]
