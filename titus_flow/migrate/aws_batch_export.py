"""A titus-flow batch job as an AWS Batch ``RegisterJobDefinition`` + ``SubmitJob`` pair.

The inverse of :mod:`titus_flow.migrate.aws_batch` for everything that module
carries; every titus-flow field AWS Batch cannot express is reported.
"""

from __future__ import annotations

import math
from typing import Any

from titus_flow.migrate.exit_codes import FAILURE_CODES, decisions_of, exit_code_globs
from titus_flow.migrate.fields import uncarried
from titus_flow.migrate.report import Dropped, MigrateInputError, Translation
from titus_flow.spec import BatchJob, Container, Resources, Retry, ServiceJob

MAX_ATTEMPTS = 10
"""The most attempts an AWS Batch retryStrategy allows."""

MAX_EXIT_RULES = 5
"""The most evaluateOnExit entries AWS Batch accepts."""

TARGET = "AWS Batch"

# Fields of a titus-flow batch job the pair carries (a path covers what is under it);
# every other field set away from its default is reported (titus_flow.migrate.fields).
_CARRIED = {
    "name",
    "capacity_group",
    "labels",
    "instances",
    "runtime_limit",
    "depends_on",
    "task_order",
    "volumes",
    "security.iam_role",
    "retry.attempts",
    "retry.retry_on_exit_codes",
    "retry.never_retry_on_exit_codes",
    "resources.cpu",
    "resources.memory",
    "resources.gpu",
    *(
        f"container.{name}"
        for name in ("image", "command", "env", "secrets", "user", "read_only_root")
    ),
    "container.mounts",
    "container.shm_size",
}
_REASONS = {
    "owner": "AWS Batch has no owner field (put it in tags)",
    "constraints": "AWS Batch places by compute environment, not per job",
    "container.entrypoint": "containerProperties has no entrypoint: put it in front of command",
    "container.working_dir": "containerProperties has no working directory",
    "container.ports": "AWS Batch jobs publish no ports",
    "container.labels": "containerProperties has no container labels",
    "container.network": "AWS Batch sets the network mode in the compute environment",
    "resources.disk": "EC2 job definitions have no disk size (the compute environment's volume)",
    "resources.network_mbps": "AWS Batch reserves no network bandwidth",
    "security.security_groups": "AWS Batch sets them in the compute environment",
    "retry.backoff": "AWS Batch retries at once",
    "retry.retry_on_runtime_limit": "AWS Batch never retries an attempt that timed out",
}


def export_job(job: BatchJob | ServiceJob) -> Translation:
    """``job`` as ``{"jobDefinition": ..., "submitJob": ...}``."""
    if isinstance(job, ServiceJob):
        raise MigrateInputError(
            "kind", "AWS Batch runs batch jobs only: export a service job to k8s"
        )
    dropped = uncarried(job, _CARRIED, _REASONS, TARGET)
    container, container_dropped = _container(job)
    dropped += container_dropped
    definition: dict[str, Any] = {
        "jobDefinitionName": job.name,
        "type": "container",
        "containerProperties": container,
    }
    if job.labels:
        definition["tags"] = dict(job.labels)
    retry, retry_dropped = _retry(job.retry)
    dropped += retry_dropped
    if retry:
        definition["retryStrategy"] = retry
    if job.runtime_limit is not None:
        limit = math.ceil(job.runtime_limit.total_seconds())
        definition["timeout"] = {"attemptDurationSeconds": limit}
        if limit < 60:
            dropped.append(Dropped("runtime_limit", "AWS Batch refuses timeouts under 60 seconds"))
    submit: dict[str, Any] = {
        "jobName": job.name,
        "jobQueue": job.capacity_group,
        "jobDefinition": job.name,
    }
    if job.instances > 1:
        submit["arrayProperties"] = {"size": job.instances}
    depends_on: list[dict[str, str]] = [
        {"jobId": dependency.job, "type": "N_TO_N"}
        if dependency.mode == "n_to_n"
        else {"jobId": dependency.job}
        for dependency in job.depends_on
    ]
    if job.task_order == "sequential":
        depends_on.append({"type": "SEQUENTIAL"})
    if depends_on:
        submit["dependsOn"] = depends_on
    return Translation({"jobDefinition": definition, "submitJob": submit}, dropped)


def _container(job: BatchJob) -> tuple[dict[str, Any], list[Dropped]]:
    spec: Container = job.container
    dropped: list[Dropped] = []
    properties: dict[str, Any] = {"image": spec.image}
    if spec.command is not None:
        properties["command"] = list(spec.command)
    if spec.env:
        properties["environment"] = [{"name": k, "value": v} for k, v in spec.env.items()]
    secrets = []
    for name, reference in spec.secrets.items():
        if reference.startswith("env_file:"):
            dropped.append(
                Dropped(f"container.secrets.{name}", "AWS Batch reads secrets from AWS only")
            )
            continue
        source = reference.removeprefix("ssm:") if reference.startswith("ssm:") else reference
        secrets.append({"name": name, "valueFrom": source})
    if secrets:
        properties["secrets"] = secrets
    if spec.user is not None:
        properties["user"] = spec.user
    if spec.read_only_root:
        properties["readonlyRootFilesystem"] = True
    properties["resourceRequirements"] = _resources(job.resources)
    volumes, mounts, tmpfs, volume_dropped = _volumes(job)
    dropped += volume_dropped
    if volumes:
        properties["volumes"] = volumes
    if mounts:
        properties["mountPoints"] = mounts
    linux: dict[str, Any] = {}
    if spec.shm_size is not None:
        linux["sharedMemorySize"] = spec.shm_size
    if tmpfs:
        linux["tmpfs"] = tmpfs
    if linux:
        properties["linuxParameters"] = linux
    if job.security.iam_role:
        properties["jobRoleArn"] = job.security.iam_role
    return properties, dropped


def _resources(resources: Resources) -> list[dict[str, str]]:
    cpu = resources.cpu
    requirements = [
        {"type": "VCPU", "value": str(int(cpu)) if cpu.is_integer() else str(cpu)},
        {"type": "MEMORY", "value": str(resources.memory)},
    ]
    if resources.gpu:
        requirements.append({"type": "GPU", "value": str(resources.gpu)})
    return requirements


def _volumes(
    job: BatchJob,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], list[Dropped]]:
    """Volumes and mount points; tmpfs volumes become ``linuxParameters.tmpfs`` entries."""
    volumes: list[dict[str, Any]] = []
    tmpfs_sizes: dict[str, int] = {}
    dropped: list[Dropped] = []
    for volume in job.volumes:
        if volume.tmpfs is not None:
            # AWS Batch needs a size; titus-flow's default is the task's memory.
            tmpfs_sizes[volume.name] = volume.tmpfs.size or job.resources.memory
            continue
        entry: dict[str, Any] = {"name": volume.name}
        if volume.host_path is not None:
            entry["host"] = {"sourcePath": volume.host_path.path}
        elif volume.efs is not None:
            efs: dict[str, Any] = {"fileSystemId": volume.efs.file_system_id}
            if volume.efs.path:
                efs["rootDirectory"] = volume.efs.path
            entry["efsVolumeConfiguration"] = efs
        else:
            entry["host"] = {}  # Docker picks the directory: titus-flow's scratch volume
        volumes.append(entry)
    mounts: list[dict[str, Any]] = []
    tmpfs: list[dict[str, Any]] = []
    for mount in job.container.mounts:
        if mount.volume in tmpfs_sizes:
            tmpfs.append({"containerPath": mount.path, "size": tmpfs_sizes[mount.volume]})
            continue
        entry = {"sourceVolume": mount.volume, "containerPath": mount.path}
        if mount.read_only:
            entry["readOnly"] = True
        mounts.append(entry)
    return volumes, mounts, tmpfs, dropped


def _retry(retry: Retry) -> tuple[dict[str, Any], list[Dropped]]:
    """``retryStrategy``: attempts, and exit-code rules as ``evaluateOnExit`` globs."""
    dropped: list[Dropped] = []
    strategy: dict[str, Any] = {}
    if retry.attempts > 1:
        strategy["attempts"] = retry.attempts
        if retry.attempts > MAX_ATTEMPTS:
            dropped.append(Dropped("retry.attempts", "AWS Batch allows at most 10 attempts"))
    decisions = decisions_of(retry.retry_on_exit_codes, retry.never_retry_on_exit_codes)
    never = [code for code in FAILURE_CODES if not decisions[code]]
    if never:
        retried = [code for code in FAILURE_CODES if decisions[code]]
        # The first matching entry decides and an unmatched failure is retried: list the
        # smaller side, then a catch-all for the other side when it is the retried one.
        if len(retried) < len(never):
            rules = [{"onExitCode": g, "action": "RETRY"} for g in exit_code_globs(retried)]
            rules.append({"onExitCode": "*", "action": "EXIT"})
        else:
            rules = [{"onExitCode": g, "action": "EXIT"} for g in exit_code_globs(never)]
        strategy["evaluateOnExit"] = rules
        if len(rules) > MAX_EXIT_RULES:
            dropped.append(
                Dropped(
                    "retry",
                    f"the exit-code rules need {len(rules)} evaluateOnExit entries;"
                    f" AWS Batch accepts at most {MAX_EXIT_RULES}",
                )
            )
        strategy.setdefault("attempts", retry.attempts)
    return strategy, dropped
