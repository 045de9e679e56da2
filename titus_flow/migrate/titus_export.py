"""A titus-flow job as a Titus v3 ``JobDescriptor`` (proto3 JSON): the way back out."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from titus_flow.migrate.fields import uncarried
from titus_flow.migrate.report import Dropped, Translation
from titus_flow.spec import BatchJob, ServiceJob
from titus_flow.spec.constraints import ConstraintSet
from titus_flow.spec.retry import ExponentialBackoff, FixedBackoff, Retry

TARGET = "Titus"

# Fields of a titus-flow job the JobDescriptor carries (a path covers what is under it).
_CARRIED = {
    "name",
    "owner",
    "capacity_group",
    "labels",
    "container.image",
    "container.entrypoint",
    "container.command",
    "container.env",
    "container.labels",
    "container.shm_size",
    "container.mounts",
    "resources",
    "constraints.hard.unique_host",
    "constraints.hard.zone_balance",
    "constraints.soft.unique_host",
    "constraints.soft.zone_balance",
    "security",
    "volumes",
    "instances",
    "runtime_limit",
    "retry.attempts",
    "retry.backoff",
    "retry.retry_on_runtime_limit",
    "capacity",
    "disruption_budget",
}
_REASONS = {
    "health_check": "a JobDescriptor has no health check (Titus asks containerHealthProviders)",
    "update": "Titus updates a service by a new job (server group), not in place",
    "autoscaling": "Titus scales a job through its autoscaling API, not the JobDescriptor",
    "depends_on": "Titus jobs do not depend on each other",
    "task_order": "Titus starts a batch job's tasks together",
    "container.ports": "Titus gives each task its own IP; ports are not declared",
    "container.secrets": "Titus has no secret references; resolve them into env before the move",
    "container.network": "Titus networks each task in its own VPC interface",
    "container.read_only_root": "a JobDescriptor has no read-only root filesystem",
    "container.working_dir": "a JobDescriptor has no working directory (set it in the image)",
    "container.user": "a JobDescriptor has no user (set it in the image)",
    "retry.retry_on_exit_codes": "Titus retries whatever the exit code",
    "retry.never_retry_on_exit_codes": "Titus retries whatever the exit code",
}


def export_job(job: BatchJob | ServiceJob) -> Translation:
    """``job`` as a Titus JobDescriptor, with what it cannot express."""
    dropped = uncarried(job, _CARRIED, _REASONS, TARGET)
    descriptor: dict[str, Any] = {"applicationName": job.name}
    if job.owner:
        descriptor["owner"] = {"teamEmail": job.owner}
    descriptor["capacityGroup"] = job.capacity_group
    if job.labels:
        descriptor["attributes"] = dict(job.labels)
    descriptor["container"] = _container(job, dropped)
    if isinstance(job, BatchJob):
        descriptor["batch"] = _batch(job, dropped)
    else:
        descriptor["service"] = {
            "capacity": job.capacity.model_dump(),
            "enabled": True,
            "retryPolicy": {
                "exponentialBackOff": {"initialDelayMs": "2000", "maxDelayIntervalMs": "300000"}
            },
        }
        descriptor["disruptionBudget"] = _budget(job)
    return Translation(descriptor, dropped)


def _container(job: BatchJob | ServiceJob, dropped: list[Dropped]) -> dict[str, Any]:
    container = job.container
    name, tag, digest = _split_image(container.image)
    image = {"name": name, **({"digest": digest} if digest else {"tag": tag or "latest"})}
    resources = job.resources
    titus_resources: dict[str, Any] = {
        "cpu": resources.cpu,
        "gpu": resources.gpu,
        "memoryMB": resources.memory,
        "diskMB": resources.disk,
        "networkMbps": resources.network_mbps,
    }
    if container.shm_size:
        titus_resources["shmSizeMB"] = container.shm_size
    if efs := _efs_mounts(job, dropped):
        titus_resources["efsMounts"] = efs
    out: dict[str, Any] = {"resources": titus_resources, "image": image}
    security = job.security
    if security.iam_role or security.security_groups:
        out["securityProfile"] = {
            "iamRole": security.iam_role or "",
            "securityGroups": list(security.security_groups),
        }
    if container.labels:
        out["attributes"] = dict(container.labels)
    if container.entrypoint is not None:
        out["entryPoint"] = list(container.entrypoint)
    if container.command is not None:
        out["command"] = list(container.command)
    if container.env:
        out["env"] = dict(container.env)
    for level, key in (("hard", "hardConstraints"), ("soft", "softConstraints")):
        rules = _constraints(getattr(job.constraints, level), f"constraints.{level}", dropped)
        if rules:
            out[key] = {"constraints": rules}
    return out


def _split_image(image: str) -> tuple[str, str | None, str | None]:
    """``name``, ``tag``, ``digest`` of an image reference (a registry port is not a tag)."""
    if "@" in image:
        name, digest = image.split("@", 1)
        return name, None, digest
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon + 1 :], None
    return image, None, None


def _efs_mounts(job: BatchJob | ServiceJob, dropped: list[Dropped]) -> list[dict[str, Any]]:
    """EFS volumes with their mounts as Titus efsMounts; other volume kinds are reported."""
    volumes = {volume.name: volume for volume in job.volumes}
    mounts: list[dict[str, Any]] = []
    for index, mount in enumerate(job.container.mounts):
        efs = volumes[mount.volume].efs  # the spec checks that every mount names a volume
        if efs is None:
            dropped.append(Dropped(f"container.mounts[{index}]", "Titus mounts only EFS volumes"))
            continue
        mounts.append(
            {
                "efsId": efs.file_system_id,
                "mountPoint": mount.path,
                "mountPerm": "RO" if mount.read_only else "RW",
                "efsRelativeMountPoint": efs.path,
            }
        )
    for index, volume in enumerate(volumes.values()):
        if volume.efs is None:
            dropped.append(
                Dropped(f"volumes[{index}]", "Titus has no host-path, scratch or tmpfs volumes")
            )
    return mounts


def _constraints(rules: ConstraintSet, path: str, dropped: list[Dropped]) -> dict[str, str]:
    constraints: dict[str, str] = {}
    if rules.unique_host:
        constraints["uniqueHost"] = "true"
    if rules.zone_balance:
        constraints["zoneBalance"] = "true"
    for name, value in rules.attributes.items():
        if isinstance(value, str):
            constraints[name] = value
        else:
            dropped.append(
                Dropped(
                    f"{path}.attributes.{name}", "a Titus constraint takes one value, not a list"
                )
            )
    return constraints


def _milliseconds(delay: timedelta) -> str:
    return str(math.ceil(delay / timedelta(milliseconds=1)))


def _retry_policy(retry: Retry, dropped: list[Dropped]) -> dict[str, Any]:
    retries = retry.attempts - 1
    backoff = retry.backoff
    if isinstance(backoff, FixedBackoff):
        delay = _milliseconds(backoff.delay)
        return {"delayed": {"initialDelayMs": delay, "delayMs": delay, "retries": retries}}
    if isinstance(backoff, ExponentialBackoff):
        if backoff.multiplier != 2.0:
            dropped.append(
                Dropped("retry.backoff.multiplier", "Titus doubles the delay each retry")
            )
        return {
            "exponentialBackOff": {
                "initialDelayMs": _milliseconds(backoff.initial),
                "maxDelayIntervalMs": _milliseconds(backoff.max),
                "retries": retries,
            }
        }
    return {"immediate": {"retries": retries}}


def _batch(job: BatchJob, dropped: list[Dropped]) -> dict[str, Any]:
    limit = job.runtime_limit
    return {
        "size": job.instances,
        "runtimeLimitSec": str(math.ceil(limit.total_seconds())) if limit else "0",
        "retryPolicy": _retry_policy(job.retry, dropped),
        "retryOnRuntimeLimit": job.retry.retry_on_runtime_limit,
    }


def _budget(job: ServiceJob) -> dict[str, Any]:
    allowed = job.disruption_budget.max_unavailable
    if isinstance(allowed, int):
        policy: dict[str, Any] = {"unhealthyTasksLimit": {"limitOfUnhealthyContainers": allowed}}
    else:
        healthy = 100 - int(allowed.rstrip("%"))
        policy = {"availabilityPercentageLimit": {"percentageOfHealthyContainers": float(healthy)}}
    return {**policy, "rateUnlimited": {}}
