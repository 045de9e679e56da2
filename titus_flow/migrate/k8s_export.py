"""A titus-flow job as a Kubernetes ``batch/v1`` Job (batch) or ``apps/v1`` Deployment (service).

The inverse of :mod:`titus_flow.migrate.k8s` for everything that module
carries; every titus-flow field Kubernetes cannot express is reported.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from titus_flow.migrate.exit_codes import FAILURE_CODES, decisions_of
from titus_flow.migrate.fields import uncarried
from titus_flow.migrate.report import Dropped, Translation
from titus_flow.spec import BatchJob, ServiceJob
from titus_flow.spec.health import ExecCheck, HttpCheck

FIRST_PORT = 8080
"""The containerPort of an exported job's first named port (the next ones follow it)."""

SELECTOR_LABEL = "app"
"""The pod label a Deployment selects its pods by (its value: the job name)."""

TARGET = "Kubernetes"

# Fields of a titus-flow job a Job or Deployment carries (a path covers what is under
# it); every other field set away from its default is reported (titus_flow.migrate.fields).
_CARRIED = {
    "name",
    "labels",
    "volumes",
    "constraints.hard.attributes",
    *(
        f"container.{name}"
        for name in ("image", "entrypoint", "command", "env", "ports", "working_dir", "user")
    ),
    *(f"container.{name}" for name in ("read_only_root", "labels", "mounts", "network")),
    *(f"resources.{name}" for name in ("cpu", "memory", "disk", "gpu")),
    # batch jobs
    "instances",
    "runtime_limit",
    "retry.attempts",
    "retry.retry_on_exit_codes",
    "retry.never_retry_on_exit_codes",
    # service jobs
    "capacity",
    "update",
    "health_check",
}
_REASONS = {
    "owner": "Kubernetes objects have no owner field (put it in a label)",
    "capacity_group": "Kubernetes has no capacity groups (use a namespace ResourceQuota)",
    "constraints.soft": "Kubernetes has no soft constraints (use preferred node affinity)",
    "constraints.hard.unique_host": "use a pod anti-affinity on kubernetes.io/hostname",
    "constraints.hard.zone_balance": "use topologySpreadConstraints on the zone label",
    "container.secrets": "create a Kubernetes Secret and refer to it with valueFrom.secretKeyRef",
    "container.shm_size": "mount an emptyDir (medium: Memory) at /dev/shm",
    "resources.network_mbps": "Kubernetes reserves no network bandwidth",
    "security": "use a ServiceAccount bound to the IAM role (IRSA) and the VPC CNI's"
    " SecurityGroupPolicy",
    "depends_on": "Kubernetes Jobs have no dependencies (use a workflow engine)",
    "task_order": "Kubernetes Jobs have no task order",
    "retry.backoff": "Kubernetes backs off exponentially from 10 s, capped at 6 minutes",
    "retry.retry_on_runtime_limit": "a pod past activeDeadlineSeconds is never retried",
    "disruption_budget": "create a PodDisruptionBudget next to the Deployment",
    "autoscaling": "create a HorizontalPodAutoscaler next to the Deployment",
}


def export_job(job: BatchJob | ServiceJob) -> Translation:
    """``job`` as a Kubernetes Job (batch) or Deployment (service)."""
    dropped = uncarried(job, _CARRIED, _REASONS, TARGET)
    pod, pod_dropped = _pod(job)
    dropped += pod_dropped
    metadata: dict[str, Any] = {"name": job.name}
    if job.labels:
        metadata["labels"] = dict(job.labels)
    if isinstance(job, BatchJob):
        spec = _job_spec(job, pod, dropped)
        document = {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}
    else:
        spec = _deployment_spec(job, pod, dropped)
        document = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": metadata,
            "spec": spec,
        }
    return Translation(document, dropped)


def _job_spec(job: BatchJob, pod: dict[str, Any], dropped: list[Dropped]) -> dict[str, Any]:
    indexed = job.instances > 1
    spec: dict[str, Any] = {}
    if indexed:
        spec.update(completions=job.instances, parallelism=job.instances, completionMode="Indexed")
        spec["backoffLimitPerIndex"] = job.retry.attempts - 1
    else:
        spec["backoffLimit"] = job.retry.attempts - 1
    decisions = decisions_of(job.retry.retry_on_exit_codes, job.retry.never_retry_on_exit_codes)
    never = [code for code in FAILURE_CODES if not decisions[code]]
    if never:
        retried = [code for code in FAILURE_CODES if decisions[code]]
        action = "FailIndex" if indexed else "FailJob"
        rule = (
            {"operator": "NotIn", "values": retried}
            if len(retried) < len(never)
            else {"operator": "In", "values": never}
        )
        spec["podFailurePolicy"] = {"rules": [{"action": action, "onExitCodes": rule}]}
    if job.runtime_limit is not None:
        pod["activeDeadlineSeconds"] = _whole_seconds(job.runtime_limit, "runtime_limit", dropped)
    pod["restartPolicy"] = "Never"
    spec["template"] = {"spec": pod} | _template_metadata(pod)
    return spec


def _deployment_spec(
    job: ServiceJob, pod: dict[str, Any], dropped: list[Dropped]
) -> dict[str, Any]:
    capacity = job.capacity
    if capacity.min != 0 or capacity.max != max(capacity.desired, 10):
        dropped.append(
            Dropped(
                "capacity",
                "a Deployment keeps replicas; bound scaling with a HorizontalPodAutoscaler",
            )
        )
    labels = {SELECTOR_LABEL: job.name}
    update = job.update
    spec: dict[str, Any] = {
        "replicas": capacity.desired,
        "selector": {"matchLabels": labels},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {
                "maxSurge": update.max_surge,
                "maxUnavailable": update.max_unavailable,
            },
        },
        "progressDeadlineSeconds": _whole_seconds(
            update.healthy_deadline, "update.healthy_deadline", dropped
        ),
    }
    container = pod["containers"][0]
    if job.health_check is not None:
        probe = _probe(job, dropped)
        container["readinessProbe"] = probe
        if job.health_check.healthy_threshold == 1:  # Kubernetes: must be 1 for liveness
            container["livenessProbe"] = probe
    template = _template_metadata(pod)
    template.setdefault("metadata", {}).setdefault("labels", {}).update(labels)
    spec["template"] = {"spec": pod} | template
    return spec


def _template_metadata(pod: dict[str, Any]) -> dict[str, Any]:
    labels = pod.pop("labels", None)
    return {"metadata": {"labels": labels}} if labels else {}


def _pod(job: BatchJob | ServiceJob) -> tuple[dict[str, Any], list[Dropped]]:
    spec = job.container
    dropped: list[Dropped] = []
    container: dict[str, Any] = {"name": job.name, "image": spec.image}
    if spec.entrypoint is not None:
        container["command"] = list(spec.entrypoint)
    if spec.command is not None:
        container["args"] = list(spec.command)
    if spec.working_dir is not None:
        container["workingDir"] = spec.working_dir
    env = [{"name": name, "value": value} for name, value in spec.env.items()]
    if spec.ports:
        ports = {name: FIRST_PORT + index for index, name in enumerate(spec.ports)}
        container["ports"] = [
            {"name": name.replace("_", "-"), "containerPort": number}
            for name, number in ports.items()
        ]
        # The task listens on PORT_<NAME>, which titus-flow sets; Kubernetes does not.
        env += [{"name": f"PORT_{name.upper()}", "value": str(n)} for name, n in ports.items()]
        env.append({"name": "PORT", "value": str(FIRST_PORT)})
    if env:
        container["env"] = env
    container["resources"] = _resources(job)
    security: dict[str, Any] = {}
    if spec.read_only_root:
        security["readOnlyRootFilesystem"] = True
    if spec.user is not None:
        uid, _, gid = spec.user.partition(":")
        if uid.isdigit() and (not gid or gid.isdigit()):
            security["runAsUser"] = int(uid)
            if gid:
                security["runAsGroup"] = int(gid)
        else:
            dropped.append(Dropped("container.user", "Kubernetes takes a numeric uid[:gid]"))
    if security:
        container["securityContext"] = security
    pod: dict[str, Any] = {"containers": [container]}
    volumes, mounts = _volumes(job, dropped)
    if mounts:
        container["volumeMounts"] = mounts
    if volumes:
        pod["volumes"] = volumes
    attributes = job.constraints.hard.attributes
    selector = {key: value for key, value in attributes.items() if isinstance(value, str)}
    if selector:
        pod["nodeSelector"] = selector
    if len(selector) < len(attributes):
        dropped.append(
            Dropped("constraints.hard.attributes", "a list of values needs a node affinity")
        )
    if spec.network == "host":
        pod["hostNetwork"] = True
    elif spec.network == "none":
        dropped.append(Dropped("container.network", "pods always have a network"))
    if spec.labels:
        pod["labels"] = dict(spec.labels)  # moved to the template's metadata by the caller
    return pod, dropped


def _resources(job: BatchJob | ServiceJob) -> dict[str, Any]:
    resources = job.resources
    millicores = resources.millicores
    amounts: dict[str, Any] = {
        "cpu": str(millicores // 1000) if millicores % 1000 == 0 else f"{millicores}m",
        "memory": f"{resources.memory}Mi",
    }
    if type(resources).model_fields["disk"].default != resources.disk:
        amounts["ephemeral-storage"] = f"{resources.disk}Mi"
    if resources.gpu:
        amounts["nvidia.com/gpu"] = resources.gpu
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _volumes(
    job: BatchJob | ServiceJob, dropped: list[Dropped]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = []
    for index, volume in enumerate(job.volumes):
        if volume.host_path is not None:
            volumes.append({"name": volume.name, "hostPath": {"path": volume.host_path.path}})
        elif volume.tmpfs is not None:
            empty: dict[str, Any] = {"medium": "Memory"}
            if volume.tmpfs.size is not None:
                empty["sizeLimit"] = f"{volume.tmpfs.size}Mi"
            volumes.append({"name": volume.name, "emptyDir": empty})
        elif volume.scratch is not None:
            volumes.append({"name": volume.name, "emptyDir": {}})
        else:
            dropped.append(
                Dropped(f"volumes[{index}]", "EFS needs a PersistentVolume (the EFS CSI driver)")
            )
    known = {volume["name"] for volume in volumes}
    mounts = []
    for mount in job.container.mounts:
        if mount.volume not in known:
            continue
        entry: dict[str, Any] = {"name": mount.volume, "mountPath": mount.path}
        if mount.read_only:
            entry["readOnly"] = True
        mounts.append(entry)
    return volumes, mounts


def _probe(job: ServiceJob, dropped: list[Dropped]) -> dict[str, Any]:
    check = job.health_check
    assert check is not None
    probe: dict[str, Any]
    if isinstance(check, ExecCheck):
        probe = {"exec": {"command": list(check.command)}}
    elif isinstance(check, HttpCheck):
        probe = {"httpGet": {"path": check.path, "port": check.port.replace("_", "-")}}
    else:
        probe = {"tcpSocket": {"port": check.port.replace("_", "-")}}
    timing = {
        "periodSeconds": ("interval", check.interval),
        "timeoutSeconds": ("timeout", check.timeout),
        "initialDelaySeconds": ("start_grace_period", check.start_grace_period),
    }
    for key, (field, value) in timing.items():
        probe[key] = _whole_seconds(value, f"health_check.{field}", dropped)
    probe["successThreshold"] = check.healthy_threshold
    probe["failureThreshold"] = check.unhealthy_threshold
    return probe


def _whole_seconds(value: timedelta, path: str, dropped: list[Dropped]) -> int:
    """``value`` in whole seconds (rounded up; a fraction is reported as not carried)."""
    whole = math.ceil(value.total_seconds())
    if whole != value.total_seconds():
        dropped.append(Dropped(path, f"Kubernetes counts whole seconds: rounded up to {whole}s"))
    return whole
