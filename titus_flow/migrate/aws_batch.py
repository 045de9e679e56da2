"""AWS Batch job definitions (``RegisterJobDefinition`` + ``SubmitJob``) as titus-flow jobs.

Accepted documents:

* one ``RegisterJobDefinition`` request (``{"jobDefinitionName": ..., "containerProperties":
  ...}``): one job, named after the definition;
* ``{"jobDefinition": <request>, "submitJob": <request>}``: the definition as submitted
  (array size, dependencies, parameters, overrides); either may be a list instead
  (``jobDefinitions`` / ``submitJobs``), one job per submitted request, so that
  ``dependsOn`` can name another job of the file by its ``jobName``.

``Ref::name`` placeholders in the command are replaced, token by token, with the
definition's ``parameters`` overridden by the submission's; a placeholder
without a value stays as it is and is reported.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from titus_flow.migrate.aws_batch_export import export_job
from titus_flow.migrate.common import (
    convert_name,
    drop_all,
    job_name,
    mebibytes,
    platform_variables,
    seconds,
    unique,
)
from titus_flow.migrate.exit_codes import decide, expand_exit_code_glob, retry_fields
from titus_flow.migrate.reader import Reader
from titus_flow.migrate.report import MigrateInputError, Translation

__all__ = ["export_job", "import_document"]

_REF = re.compile(r"Ref::([A-Za-z0-9_-]+)")
_ARRAY_INDEX = ("AWS_BATCH_JOB_ARRAY_INDEX",)
_INDEX_INSTEAD = "tasks see their index (0-based, as in AWS Batch) as TITUS_TASK_INDEX"
_DEFINITION_KEYS = ("jobDefinition", "jobDefinitions", "submitJob", "submitJobs")

# Fields read and deliberately not carried, with why (anything else unread is
# reported by the reader as having no counterpart).
_DEFINITION_DROPS = {
    "propagateTags": "titus-flow labels stay on the job",
    "schedulingPriority": "titus-flow orders work by capacity group tier, not per job",
    "nodeProperties": "multi-node parallel jobs are not supported",
    "eksProperties": "only containerProperties is translated",
    "ecsProperties": "only containerProperties is translated",
}
_CONTAINER_DROPS = {
    "privileged": "titus-flow never runs privileged containers",
    "ulimits": "the agent sets the limits of every task",
    "logConfiguration": "the agent keeps every attempt's logs (titus-flow task logs)",
    "executionRoleArn": "the agent pulls images and reads secrets with its own credentials",
    "instanceType": "place by agent attributes with constraints.hard.attributes instead",
    "networkConfiguration": "Fargate networking has no counterpart",
    "fargatePlatformConfiguration": "Fargate is not supported",
    "runtimePlatform": "agents run linux containers of their own architecture",
    "ephemeralStorage": "Fargate storage has no counterpart; set resources.disk",
    "repositoryCredentials": "the agent pulls with its own registry credentials",
}
_SUBMIT_DROPS = {
    "jobQueue": "titus-flow has capacity groups instead of queues (capacity_group: default)",
    "shareIdentifier": "fair-share scheduling has no counterpart",
    "schedulingPriorityOverride": "titus-flow orders work by capacity group tier, not per job",
    "propagateTags": "titus-flow labels stay on the job",
    "nodeOverrides": "multi-node parallel jobs are not supported",
    "eksPropertiesOverride": "only containerProperties is translated",
    "ecsPropertiesOverride": "only containerProperties is translated",
}


def import_document(document: dict[str, Any]) -> Translation:
    """An AWS Batch definition (and submission) as titus-flow job mappings."""
    root = Reader(document)
    if not any(key in document for key in _DEFINITION_KEYS):
        definitions = [root]
        submits: list[Reader] = []
    else:
        definitions = _one_or_many(root, "jobDefinition", "jobDefinitions")
        submits = _one_or_many(root, "submitJob", "submitJobs")
        if not definitions:
            raise MigrateInputError("jobDefinition", "missing: the file needs the job definition")
    by_name = {_definition_name(reader): reader for reader in definitions}
    if not submits:
        jobs = [
            _job(reader, None, job_name(reader, "jobDefinitionName"), set())
            for reader in definitions
        ]
    else:
        names = [job_name(reader, "jobName") for reader in submits]
        jobs = [
            _job(_definition_of(submit, by_name), submit, name, set(names) - {name})
            for submit, name in zip(submits, names, strict=True)
        ]
    shape = jobs[0] if len(jobs) == 1 else {"jobs": jobs}
    return Translation(shape, unique(root.report()))


def _one_or_many(root: Reader, one: str, many: str) -> list[Reader]:
    if root.has(one) and root.has(many):
        raise root.fail(many, f"give {one} or {many}, not both")
    reader = root.child(one)
    return [reader] if reader is not None else root.children(many)


def _definition_name(reader: Reader) -> str:
    return reader.required_text("jobDefinitionName")


def _definition_of(submit: Reader, by_name: dict[str, Reader]) -> Reader:
    """The definition a submission names: ``name``, ``name:revision`` or its ARN."""
    given = submit.required_text("jobDefinition")
    name = given.rsplit("/", 1)[-1].split(":", 1)[0]
    if name in by_name:
        return by_name[name]
    if len(by_name) == 1:
        only = next(iter(by_name))
        raise submit.fail("jobDefinition", f"names no definition of this file (it has {only})")
    raise submit.fail("jobDefinition", "names no definition of this file")


def _job(definition: Reader, submit: Reader | None, name: str, others: set[str]) -> dict[str, Any]:
    """One titus-flow batch job from a definition and (optionally) its submission."""
    kind = definition.text("type", "container")
    if kind != "container":
        raise definition.fail("type", "only container job definitions can be imported")
    drop_all(definition, _DEFINITION_DROPS)
    container_reader = definition.child("containerProperties")
    if container_reader is None:
        raise definition.fail("containerProperties", "missing: the container to run is required")
    overrides = submit.child("containerOverrides") if submit else None
    parameters = definition.string_map("parameters")
    if submit is not None:
        parameters |= submit.string_map("parameters")
    job: dict[str, Any] = {"kind": "batch", "name": name}
    job.update(_container_and_resources(container_reader, overrides, parameters))
    labels = definition.string_map("tags") | (submit.string_map("tags") if submit else {})
    if labels:
        job["labels"] = labels
    if retry := _retry(_overriding(definition, submit, "retryStrategy")):
        job["retry"] = retry
    timeout = _overriding(definition, submit, "timeout").child("timeout")
    if timeout is not None and (limit := timeout.integer("attemptDurationSeconds")) is not None:
        job["runtime_limit"] = seconds(limit)
    capabilities = definition.strings("platformCapabilities")
    if "FARGATE" in capabilities:
        definition.drop_path(definition.at("platformCapabilities"), "Fargate is not supported")
    if submit is not None:
        drop_all(submit, _SUBMIT_DROPS)
        job.update(_submission(submit, others))
    return job


def _overriding(definition: Reader, submit: Reader | None, key: str) -> Reader:
    """The submission if it sets ``key`` (the definition's is reported), else the definition."""
    if submit is None or not submit.has(key):
        return definition
    definition.drop(key, f"replaced by submitJob.{key}")
    return submit


def _container_and_resources(
    container: Reader, overrides: Reader | None, parameters: dict[str, str]
) -> dict[str, Any]:
    """The ``container``, ``resources``, ``volumes`` and ``security`` of a job."""
    drop_all(container, _CONTAINER_DROPS)
    spec: dict[str, Any] = {"image": container.required_text("image")}
    use = container
    if overrides is not None and overrides.has("command"):
        use = overrides
        container.drop("command", "replaced by submitJob.containerOverrides.command")
    if command := use.strings("command"):
        spec["command"] = _substitute(use, command, parameters)
        platform_variables(use, "command", command, _ARRAY_INDEX, _INDEX_INSTEAD)
    env = _environment(container)
    if overrides is not None:
        env |= _environment(overrides)
    if env:
        spec["env"] = env
    if secrets := _secrets(container):
        spec["secrets"] = secrets
    if user := container.text("user"):
        spec["user"] = user
    if container.flag("readonlyRootFilesystem", False):
        spec["read_only_root"] = True
    resources = _resources(container)
    if overrides is not None:
        resources |= _resources(overrides)
    result: dict[str, Any] = {"container": spec}
    if resources:
        result["resources"] = resources
    volumes, mounts = _volumes(container)
    linux = container.child("linuxParameters")
    if linux is not None:
        if (shm := linux.integer("sharedMemorySize")) is not None:
            spec["shm_size"] = mebibytes(shm)
        tmpfs_volumes, tmpfs_mounts = _tmpfs(linux)
        volumes += tmpfs_volumes
        mounts += tmpfs_mounts
        drop_all(
            linux,
            {
                "devices": "host devices are not passed to tasks",
                "initProcessEnabled": "the container runs the command as its first process",
                "maxSwap": "tasks get no swap",
                "swappiness": "tasks get no swap",
            },
        )
    if mounts:
        spec["mounts"] = mounts
    if volumes:
        result["volumes"] = volumes
    if role := container.text("jobRoleArn"):
        result["security"] = {"iam_role": role}
    return result


def _substitute(reader: Reader, command: list[str], parameters: dict[str, str]) -> list[str]:
    """``command`` with each ``Ref::name`` replaced by its parameter; unknown ones reported."""
    result = []
    for index, argument in enumerate(command):

        def value_of(match: re.Match[str], index: int = index) -> str:
            name = match.group(1)
            if name in parameters:
                return parameters[name]
            reader.drop_path(
                f"{reader.at('command')}[{index}]",
                f"Ref::{name} has no value in parameters; it is left as written",
            )
            return match.group(0)

        result.append(_REF.sub(value_of, argument))
    return result


def _environment(reader: Reader) -> dict[str, str]:
    env: dict[str, str] = {}
    for entry in reader.children("environment"):
        env[entry.required_text("name")] = entry.text("value", "")
    return env


def _secrets(reader: Reader) -> dict[str, str]:
    secrets: dict[str, str] = {}
    for entry in reader.children("secrets"):
        name = entry.required_text("name")
        source = entry.required_text("valueFrom")
        parts = source.split(":")
        if source.startswith("arn:") and parts[2:3] == ["secretsmanager"] and len(parts) > 7:
            # name:json-key:version-stage:version-id: titus-flow passes the whole secret.
            source = ":".join(parts[:7])
            entry.drop_path(entry.at("valueFrom"), _JSON_KEY)
        # A bare name (not an ARN) is an SSM parameter of the same account and region.
        secrets[name] = source if source.startswith("arn:") else "ssm:" + source
    return secrets


_JSON_KEY = (
    "the JSON key and version after the secret's ARN are dropped: the variable gets the"
    " whole SecretString (the current version)"
)


def _resources(reader: Reader) -> dict[str, Any]:
    """``resourceRequirements`` (or the older ``vcpus`` / ``memory``) as titus-flow resources."""
    resources: dict[str, Any] = {}
    if (vcpus := reader.number("vcpus")) is not None:
        resources["cpu"] = vcpus
    if (memory := reader.integer("memory")) is not None:
        resources["memory"] = mebibytes(memory)
    parsers: dict[str, tuple[str, Callable[[str], Any]]] = {
        "VCPU": ("cpu", float),
        "MEMORY": ("memory", lambda text: mebibytes(int(text))),
        "GPU": ("gpu", int),
    }
    for entry in reader.children("resourceRequirements"):
        kind = entry.required_text("type")
        if kind not in parsers:
            entry.drop("value", f"resource type {kind} has no counterpart")
            continue
        field, parse = parsers[kind]
        value = entry.required_text("value")
        try:
            resources[field] = parse(value)
        except ValueError:
            raise entry.fail("value", f"expected a number for {kind}") from None
    return resources


def _volumes(container: Reader) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``volumes`` and ``mountPoints`` as titus-flow volumes and mounts."""
    volumes: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for entry in container.children("volumes"):
        given = entry.required_text("name")
        name = names.setdefault(given, convert_name(given) or f"volume-{len(names)}")
        volume: dict[str, Any] = {"name": name}
        efs = entry.child("efsVolumeConfiguration")
        host = entry.child("host")
        if efs is not None:
            volume["efs"] = {"file_system_id": efs.required_text("fileSystemId")}
            if root := efs.text("rootDirectory"):
                volume["efs"]["path"] = root
            drop_all(
                efs,
                {
                    "transitEncryption": "the agent's NFS client mounts without TLS",
                    "transitEncryptionPort": "the agent's NFS client mounts without TLS",
                    "authorizationConfig": "EFS access points and IAM mounts have no counterpart",
                },
            )
        elif host is not None and (path := host.text("sourcePath")):
            volume["host_path"] = {"path": path}
        else:
            # No sourcePath: Docker picks a host directory for the job, a scratch volume.
            volume["scratch"] = {}
        volumes.append(volume)
    mounts = []
    for entry in container.children("mountPoints"):
        source = entry.required_text("sourceVolume")
        if source not in names:
            raise entry.fail("sourceVolume", "names no volume of containerProperties.volumes")
        mount: dict[str, Any] = {
            "volume": names[source],
            "path": entry.required_text("containerPath"),
        }
        if entry.flag("readOnly", False):
            mount["read_only"] = True
        mounts.append(mount)
    return volumes, mounts


def _tmpfs(linux: Reader) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes, mounts = [], []
    for index, entry in enumerate(linux.children("tmpfs")):
        name = f"tmpfs-{index}"
        volumes.append({"name": name, "tmpfs": {"size": mebibytes(entry.integer("size", 0))}})
        mounts.append({"volume": name, "path": entry.required_text("containerPath")})
        entry.drop("mountOptions", "tmpfs volumes are mounted with the agent's options")
    return volumes, mounts


def _retry(reader: Reader) -> dict[str, Any]:
    """``retryStrategy`` as a titus-flow retry policy."""
    strategy = reader.child("retryStrategy")
    if strategy is None:
        return {}
    retry: dict[str, Any] = {}
    if (attempts := strategy.integer("attempts", minimum=1)) is not None:
        retry["attempts"] = attempts
    rules: list[tuple[frozenset[int], bool]] = []
    for rule in strategy.children("evaluateOnExit"):
        action = rule.required_text("action").upper()
        if action not in ("RETRY", "EXIT"):
            raise rule.fail("action", "expected RETRY or EXIT")
        pattern = rule.text("onExitCode")
        conditions = [key for key in ("onStatusReason", "onReason") if rule.has(key)]
        if conditions:
            # Conditional on a reason titus-flow does not see: the rule cannot be applied.
            for key in conditions:
                rule.drop(key, _REASON_RULE)
            rule.text("onExitCode")
            continue
        if pattern is None:
            raise rule.fail("onExitCode", "missing: set onExitCode, onReason or onStatusReason")
        codes = expand_exit_code_glob(pattern)
        if codes is None:
            raise rule.fail("onExitCode", "expected digits, optionally ending in '*'")
        rules.append((codes, action == "RETRY"))
    retry.update(retry_fields(decide(rules)))
    return retry


_REASON_RULE = (
    "titus-flow decides retries on exit codes only; this rule is left out (titus-flow retries"
    " host and platform failures itself, without using up attempts)"
)


def _submission(submit: Reader, others: set[str]) -> dict[str, Any]:
    """Array size and dependencies of a submitted job."""
    job: dict[str, Any] = {}
    array = submit.child("arrayProperties")
    if array is not None and (size := array.integer("size", minimum=1)) is not None:
        job["instances"] = size
    depends_on: list[Any] = []
    for entry in submit.children("dependsOn"):
        kind = entry.text("type")
        target = entry.text("jobId")
        if kind not in (None, "N_TO_N", "SEQUENTIAL"):
            raise entry.fail("type", "expected N_TO_N or SEQUENTIAL")
        if kind == "SEQUENTIAL" and target is None:
            job["task_order"] = "sequential"
            continue
        if target is None:
            raise entry.fail("jobId", "missing: the job this one depends on")
        name = convert_name(target)
        if name not in others:
            entry.drop_path(entry.at("jobId"), "names no other submitJob of this file (by jobName)")
            continue
        depends_on.append({"job": name, "mode": "n_to_n"} if kind == "N_TO_N" else name)
    if depends_on:
        job["depends_on"] = depends_on
    return job
