"""Kubernetes ``batch/v1`` Jobs and ``apps/v1`` Deployments as titus-flow jobs.

A Job becomes a batch job (``completions`` tasks, each with its index as
``TITUS_TASK_INDEX``), a Deployment a service job (``replicas`` kept running,
rolling updates, a probe as the health check). A ``v1`` ``List`` of them
becomes several jobs. Only the pod's first container runs: sidecars and init
containers are reported as dropped.
"""

from __future__ import annotations

import math
from typing import Any

from titus_flow.migrate.common import drop_all, job_name, seconds, unique
from titus_flow.migrate.exit_codes import FAILURE_CODES, decide, retry_fields
from titus_flow.migrate.k8s_export import export_job
from titus_flow.migrate.k8s_pod import PodTranslation
from titus_flow.migrate.reader import Reader
from titus_flow.migrate.report import Translation

__all__ = ["export_job", "import_document"]

DEFAULT_BACKOFF_LIMIT = 6
"""Kubernetes' ``backoffLimit`` when a Job leaves it out."""

_KINDS = {("batch/v1", "Job"), ("apps/v1", "Deployment")}
_METADATA_DROPS = {
    "namespace": "titus-flow has no namespaces",
    "annotations": "titus-flow has no annotations; use labels",
    "ownerReferences": "titus-flow jobs have no owners",
    "finalizers": "titus-flow jobs have no finalizers",
}
_JOB_DROPS = {
    "ttlSecondsAfterFinished": "titus-flow keeps a finished job's record (Temporal retention)",
    "suspend": "submit the job when it should run",
    "manualSelector": "titus-flow selects a job's tasks by job id",
    "selector": "titus-flow selects a job's tasks by job id",
    "podReplacementPolicy": "a failed attempt is replaced once it has stopped",
    "successPolicy": "a batch job succeeds when every task has",
    "maxFailedIndexes": "a batch job fails when a task has used up its attempts",
}
_DEPLOYMENT_DROPS = {
    "minReadySeconds": "a task counts as available once its health check passes",
    "revisionHistoryLimit": "titus-flow keeps every revision in the job's history",
    "paused": "titus-flow has no paused rollouts; use a canary",
}
_LIVENESS_FIRST = (
    "titus-flow has one health check, and replaces a task that fails it (a liveness probe);"
    " the livenessProbe is kept"
)


def import_document(document: dict[str, Any]) -> Translation:
    """A Job, a Deployment or a ``List`` of them as titus-flow job mappings."""
    root = Reader(document)
    if root.text("kind") == "List":
        root.required_text("apiVersion")
        items = root.children("items")
        if not items:
            raise root.fail("items", "missing: the List holds no Job or Deployment")
        jobs = [_object(item) for item in items]
        drop_all(root, {"metadata": "a List's own metadata has no counterpart"})
        return Translation({"jobs": jobs}, unique(root.report()))
    return Translation(_object(root), unique(root.report()))


def _object(reader: Reader) -> dict[str, Any]:
    kind = (reader.required_text("apiVersion"), reader.required_text("kind"))
    if kind not in _KINDS:
        raise reader.fail("kind", "expected a batch/v1 Job or an apps/v1 Deployment")
    metadata = reader.child("metadata")
    if metadata is None:
        raise reader.fail("metadata", "missing: metadata.name names the job")
    job: dict[str, Any] = {"name": job_name(metadata, "name")}
    if labels := metadata.string_map("labels"):
        job["labels"] = labels
    drop_all(metadata, _METADATA_DROPS)
    reader.drop("status", "the state of a running object is not imported")
    spec = reader.child("spec")
    if spec is None:
        raise reader.fail("spec", "missing: the object's spec is required")
    template = spec.child("template")
    pod = template.child("spec") if template is not None else None
    if template is None or pod is None:
        raise spec.fail("template", "missing: the pod template (template.spec) is required")
    if kind[1] == "Job":
        translation = PodTranslation(pod, {}, template)
        job.update(_batch(spec, pod, translation))
    else:
        selector = _selector(spec)
        translation = PodTranslation(pod, selector, template)
        job.update(_service(spec, pod, translation))
    job["container"] = translation.container
    for key, value in translation.job.items():
        job.setdefault(key, value)
    return job


def _batch(spec: Reader, pod: Reader, translation: PodTranslation) -> dict[str, Any]:
    job: dict[str, Any] = {"kind": "batch"}
    instances = spec.integer("completions", 1, minimum=1)
    if instances > 1:
        job["instances"] = instances
    spec.text("completionMode")
    parallelism = spec.integer("parallelism")
    if parallelism is None and instances > 1:
        spec.drop_path(spec.at("parallelism"), "unset means 1 in Kubernetes; " + _PARALLEL)
    elif parallelism is not None and parallelism < instances:
        spec.drop_path(spec.at("parallelism"), _PARALLEL)
    retry: dict[str, Any] = {}
    per_index = spec.integer("backoffLimitPerIndex")
    if per_index is not None:
        retry["attempts"] = per_index + 1
        spec.drop("backoffLimit", "backoffLimitPerIndex is kept: titus-flow counts per task")
    else:
        limit = spec.integer("backoffLimit", DEFAULT_BACKOFF_LIMIT)
        retry["attempts"] = limit + 1
        if instances > 1:
            spec.drop_path(
                spec.at("backoffLimit"),
                f"carried as {limit + 1} attempts per task: Kubernetes counts failures across"
                " the whole Job (default 6), titus-flow per task",
            )
    retry.update(_failure_policy(spec, translation, instances))
    if retry != {"attempts": 1}:
        job["retry"] = retry
    deadline = pod.integer("activeDeadlineSeconds")
    job_deadline = spec.integer("activeDeadlineSeconds")
    if deadline is not None:
        job["runtime_limit"] = seconds(deadline)
        if job_deadline is not None:
            spec.drop_path(spec.at("activeDeadlineSeconds"), _DEADLINE_BOTH)
    elif job_deadline is not None:
        job["runtime_limit"] = seconds(job_deadline)
        spec.drop_path(spec.at("activeDeadlineSeconds"), _DEADLINE_SEMANTICS)
    drop_all(spec, _JOB_DROPS)
    for probe in ("livenessProbe", "readinessProbe"):
        translation.first.drop(probe, "batch tasks are not health-checked")
    return job


_PARALLEL = "titus-flow starts every task as capacity allows (no limit on tasks at once)"
_DEADLINE_SEMANTICS = (
    "carried as runtime_limit, which limits each attempt; Kubernetes limits the whole Job"
)
_DEADLINE_BOTH = "the pod's activeDeadlineSeconds (per attempt) is kept as runtime_limit"


def _failure_policy(spec: Reader, translation: PodTranslation, instances: int) -> dict[str, Any]:
    """``podFailurePolicy`` rules on exit codes as titus-flow exit-code rules."""
    policy = spec.child("podFailurePolicy")
    if policy is None:
        return {}
    rules: list[tuple[frozenset[int], bool]] = []
    container = translation.first.text("name")
    for rule in policy.children("rules"):
        action = rule.required_text("action")
        codes = rule.child("onExitCodes")
        if codes is None:
            conditions = rule.children("onPodConditions")
            types = {condition.text("type") for condition in conditions}
            for condition in conditions:
                condition.text("status")
            if action == "Ignore" and types == {"DisruptionTarget"}:
                continue  # titus-flow never counts platform disruptions against attempts
            rule.drop_path(rule.path, "only rules on exit codes are carried")
            continue
        if (name := codes.text("containerName")) is not None and name != container:
            rule.drop_path(rule.path, "the rule is about a sidecar, which does not run")
            continue
        operator = codes.required_text("operator")
        values = {value for value in _codes(codes) if value in FAILURE_CODES}
        if operator not in ("In", "NotIn"):
            raise codes.fail("operator", "expected In or NotIn")
        matched = frozenset(values if operator == "In" else set(FAILURE_CODES) - values)
        if action in ("FailJob", "FailIndex"):
            rules.append((matched, False))
            if action == "FailJob" and instances > 1:
                rule.drop_path(
                    rule.at("action"),
                    "carried as no retry for the task; the job fails when it does, but its"
                    " other tasks are not stopped at once",
                )
        elif action == "Count":
            rules.append((matched, True))
        else:
            rule.drop_path(rule.path, "titus-flow always counts a failure with an exit code")
    return retry_fields(decide(rules))


def _codes(codes: Reader) -> list[int]:
    values = codes.items("values")
    for index, value in enumerate(values):
        if not isinstance(value, int) or isinstance(value, bool):
            raise codes.fail("values", f"item {index} is not an integer exit code")
    return values


def _selector(spec: Reader) -> dict[str, str]:
    selector = spec.child("selector")
    if selector is None:
        return {}
    selector.drop("matchExpressions", "titus-flow selects a job's tasks by job id")
    return selector.string_map("matchLabels")


def _service(spec: Reader, pod: Reader, translation: PodTranslation) -> dict[str, Any]:
    job: dict[str, Any] = {"kind": "service"}
    replicas = spec.integer("replicas", 1)
    job["capacity"] = {"desired": replicas, "max": max(replicas, 10)}
    strategy = spec.child("strategy")
    rolling = None
    if strategy is not None:
        if strategy.text("type", "RollingUpdate") == "Recreate":
            strategy.drop_path(strategy.at("type"), "titus-flow always rolls (max_unavailable)")
        rolling = strategy.child("rollingUpdate")
    surge = _count(rolling, "maxSurge", replicas, math.ceil)
    unavailable = _count(rolling, "maxUnavailable", replicas, math.floor)
    if surge == 0 and unavailable == 0:
        unavailable = 1  # as Kubernetes does when both round down to 0
    update: dict[str, Any] = {"max_surge": surge, "max_unavailable": unavailable}
    if (deadline := spec.integer("progressDeadlineSeconds")) is not None:
        update["healthy_deadline"] = seconds(deadline)
    job["update"] = update
    drop_all(spec, _DEPLOYMENT_DROPS)
    liveness = translation.health_check(translation.first, "livenessProbe")
    readiness = translation.health_check(translation.first, "readinessProbe")
    if liveness is not None and readiness is not None and liveness != readiness:
        translation.first.drop_path(translation.first.at("readinessProbe"), _LIVENESS_FIRST)
    if check := liveness or readiness:
        job["health_check"] = check
    pod.drop("activeDeadlineSeconds", "service tasks run until stopped")
    return job


def _count(rolling: Reader | None, key: str, replicas: int, rounding: Any) -> int:
    """``maxSurge`` / ``maxUnavailable``: a count, or a percentage of ``replicas`` (default 25%)."""
    value = rolling.raw(key) if rolling is not None else None
    if value is None:
        return int(rounding(replicas * 25 / 100))
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    assert rolling is not None
    if isinstance(value, str) and value.endswith("%") and value[:-1].isdigit():
        count = int(rounding(replicas * int(value[:-1]) / 100))
        rolling.drop_path(
            rolling.at(key),
            f"{value} of {replicas} replicas carried as the count {count},"
            " which does not follow later scaling",
        )
        return count
    raise rolling.fail(key, "expected a count or a percentage such as 25%")
