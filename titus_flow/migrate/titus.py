"""Titus v3 ``JobDescriptor`` (proto3 JSON) to a titus-flow job, and back.

Field names follow Netflix's titus-api-definitions (``titus_job_api.proto``,
``titus_base.proto``, ``titus_volumes.proto``). proto3 JSON spells fields in
camelCase, 64-bit integers as strings and a oneof as the single key that is
set; the reader accepts exactly that. docs/migrating.md has the table of every
field and where it goes.
"""

from __future__ import annotations

import math
import re
from typing import Any

from titus_flow.migrate.common import convert_name as _dns_label
from titus_flow.migrate.reader import Reader
from titus_flow.migrate.report import MigrateInputError, Translation
from titus_flow.migrate.titus_export import export_job
from titus_flow.spec.base import LABEL_KEY_PATTERN

RESERVED_PREFIX = "titus"
"""Attribute keys starting with this (any case) are Titus's own (JobDescriptor.attributes)."""

RETRY_POLICIES = ("immediate", "delayed", "exponentialBackOff")
BUDGET_POLICIES = (
    "selfManaged",
    "availabilityPercentageLimit",
    "unhealthyTasksLimit",
    "relocationLimit",
)
BUDGET_RATES = (
    "rateUnlimited",
    "ratePercentagePerHour",
    "ratePerInterval",
    "ratePercentagePerInterval",
)
MOUNT_PERMS = {"RO": "RO", "WO": "WO", "RW": "RW", 0: "RO", 1: "WO", 2: "RW"}
MAX_RETRIES = 99  # titus-flow allows 100 attempts in all

_LABEL_KEY = re.compile(LABEL_KEY_PATTERN)
_HOSTILE = ("${", "{", "}")


def import_document(document: dict[str, Any]) -> Translation:
    """A Titus JobDescriptor as a titus-flow job mapping, with every field not carried.

    A Titus ``Job`` as the API returns it (``{id, jobDescriptor, status, ...}``)
    is accepted too: its descriptor is translated, its state reported.
    """
    top = Reader(document)
    if "jobDescriptor" not in document:
        return Translation(_descriptor(top), top.report())
    top.drop("id", "the Titus job id: titus-flow gives the job an id of its own")
    for key in ("status", "statusHistory"):
        top.drop(key, "the state of the Titus job, not part of its definition")
    return Translation(_descriptor(_child(top, "jobDescriptor")), top.report())


def _descriptor(root: Reader) -> dict[str, Any]:
    """The JobDescriptor read by ``root`` as a titus-flow job mapping."""
    kind = root.required_oneof(("batch", "service"), exclusive=False)
    job: dict[str, Any] = {"name": _job_name(root), "kind": kind}
    owner = root.child("owner")
    if owner is not None and (email := owner.text("teamEmail")):
        job["owner"] = email
    if group := root.text("capacityGroup"):
        job["capacity_group"] = _dns_label(group) or "default"
    if labels := _labels(root, "attributes"):
        job["labels"] = labels
    _container(_child(root, "container"), job)
    if kind == "batch":
        _batch(_child(root, "batch"), job)
        _batch_budget(root)
    else:
        _service(_child(root, "service"), job)
        _service_budget(root, job)
    root.drop("volumes", "Titus volumes are shared between a task's containers; a task runs one")
    return job


def _child(reader: Reader, key: str) -> Reader:
    child = reader.child(key)
    if child is None:
        raise reader.fail(key, "missing: this field is required")
    return child


def _refuse_hostile(reader: Reader, key: str, name: str) -> None:
    """Refuse a map key that looks like a template expression: it is never evaluated."""
    if any(mark in name for mark in _HOSTILE):
        raise MigrateInputError(
            f"{reader.at(key)}.{name}", "'${', '{' and '}' are not accepted in a key here"
        )


def _job_name(root: Reader) -> str:
    """``<applicationName>-<stack>-<detail>-<sequence>`` as a titus-flow name."""
    parts = [root.required_text("applicationName")]
    group = root.child("jobGroupInfo")
    if group is not None:
        parts += [part for key in ("stack", "detail", "sequence") if (part := group.text(key))]
    name = _dns_label("-".join(parts))
    if not name:
        raise root.fail("applicationName", "has no letter or digit to name the job with")
    return name


def _labels(reader: Reader, key: str) -> dict[str, str]:
    """An attributes map as labels: reserved ``titus*`` and invalid keys reported, not copied."""
    labels: dict[str, str] = {}
    for name, value in reader.string_map(key).items():
        _refuse_hostile(reader, key, name)
        path = f"{reader.at(key)}.{name}"
        if name.lower().startswith(RESERVED_PREFIX):
            reader.drop_path(
                path, "a key starting with 'titus' is reserved by Titus: not copied to labels"
            )
        elif not _LABEL_KEY.fullmatch(name):
            reader.drop_path(path, "not a valid label key (letters, digits, '-', '_', '.', '/')")
        else:
            labels[name] = value
    return labels


def _container(container: Reader, job: dict[str, Any]) -> None:
    spec: dict[str, Any] = {"image": _image(_child(container, "image"))}
    for key, field in (("entryPoint", "entrypoint"), ("command", "command")):
        if values := container.strings(key):
            spec[field] = values
    if env := container.string_map("env"):
        spec["env"] = env
    if labels := _labels(container, "attributes"):
        spec["labels"] = labels
    resources = container.child("resources")
    if resources is not None:
        job["resources"] = _resources(resources, spec, job)
    security = container.child("securityProfile")
    if security is not None:
        profile: dict[str, Any] = {}
        if role := security.text("iamRole"):
            profile["iam_role"] = role
        if groups := security.strings("securityGroups"):
            profile["security_groups"] = groups
        security.drop("attributes", "security attributes are Titus-internal (keys under 'titus.')")
        if profile:
            job["security"] = profile
    constraints = {
        level: _constraints(container, key)
        for level, key in (("hard", "hardConstraints"), ("soft", "softConstraints"))
    }
    if constraints := {level: rules for level, rules in constraints.items() if rules}:
        job["constraints"] = constraints
    container.drop("experimental", "experimental features have no titus-flow counterpart")
    container.drop("volumeMounts", "mounts of Titus shared-container volumes (see volumes)")
    job["container"] = spec


def _image(image: Reader) -> str:
    name = image.required_text("name")
    digest, tag = image.text("digest"), image.text("tag")
    if digest:
        if tag:
            image.drop("tag", "the digest pins the image; titus-flow takes name@digest")
        return f"{name}@{digest}"
    return f"{name}:{tag}" if tag else name


def _resources(resources: Reader, container: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    carried: dict[str, Any] = {}
    if (cpu := resources.number("cpu")) is not None:
        carried["cpu"] = cpu
    for key, field in (
        ("gpu", "gpu"),
        ("memoryMB", "memory"),
        ("diskMB", "disk"),
        ("networkMbps", "network_mbps"),
    ):
        if (value := resources.integer(key)) is not None:
            carried[field] = value
    if shm := resources.integer("shmSizeMB"):
        container["shm_size"] = shm
    resources.drop("allocateIP", "deprecated in Titus (an IP is always allocated)")
    volumes, mounts = [], []
    for index, mount in enumerate(resources.children("efsMounts")):
        name = f"efs-{index}"
        volumes.append(
            {
                "name": name,
                "efs": {
                    "file_system_id": mount.required_text("efsId"),
                    "path": mount.text("efsRelativeMountPoint") or "/",
                },
            }
        )
        perm = _mount_perm(mount)
        mounts.append(
            {"volume": name, "path": mount.required_text("mountPoint"), "read_only": perm == "RO"}
        )
        if perm == "WO":
            mount.drop_path(mount.at("mountPerm"), "write-only: titus-flow mounts it read-write")
    if volumes:
        job["volumes"] = volumes
        container["mounts"] = mounts
    return carried


def _mount_perm(mount: Reader) -> str:
    raw = mount.raw("mountPerm")
    if raw is None:
        return "RO"  # the enum's zero value
    if isinstance(raw, bool) or raw not in MOUNT_PERMS:
        raise mount.fail("mountPerm", "expected RO, WO or RW")
    return MOUNT_PERMS[raw]


def _constraints(container: Reader, key: str) -> dict[str, Any]:
    """``{constraints: {name: value}}`` as a titus-flow constraint set."""
    reader = container.child(key)
    if reader is None:
        return {}
    reader.drop(
        "expression", "constraint expressions are not supported (Titus never implemented them)"
    )
    rules: dict[str, Any] = {}
    attributes: dict[str, str] = {}
    for name, value in reader.string_map("constraints").items():
        _refuse_hostile(reader, "constraints", name)
        path = f"{reader.at('constraints')}.{name}"
        known = name.lower()
        if known in ("uniquehost", "zonebalance"):
            if value.lower() not in ("true", "false", ""):
                raise MigrateInputError(path, "expected 'true' or 'false'")
            rules["unique_host" if known == "uniquehost" else "zone_balance"] = (
                value.lower() != "false"
            )
        elif known == "exclusivehost":
            reader.drop_path(path, "titus-flow cannot reserve an agent for one job")
        elif not value:
            raise MigrateInputError(path, "an attribute constraint needs a value")
        else:
            attributes[name] = value
    if attributes:
        rules["attributes"] = attributes
    return rules


def _retry(policy: Reader | None) -> dict[str, Any]:
    if policy is None:
        return {}
    kind = policy.required_oneof(RETRY_POLICIES)
    rules = _child(policy, kind)
    retries = rules.integer("retries", 0)
    if retries > MAX_RETRIES:
        raise rules.fail(
            "retries", f"at most {MAX_RETRIES} (titus-flow allows 100 attempts in all)"
        )
    retry: dict[str, Any] = {"attempts": retries + 1}
    if kind == "immediate":
        retry["backoff"] = {"kind": "immediate"}
    elif kind == "delayed":
        delay = rules.integer("delayMs", 0)
        initial = rules.integer("initialDelayMs")
        if initial is not None and initial != delay:
            rules.drop_path(
                rules.at("initialDelayMs"),
                "titus-flow waits the same delay (delayMs) before every retry",
            )
        retry["backoff"] = {"kind": "fixed", "delay": f"{delay}ms"}
    else:
        initial = rules.integer("initialDelayMs", 1000)
        ceiling = max(rules.integer("maxDelayIntervalMs", initial), initial)
        retry["backoff"] = {
            "kind": "exponential",
            "initial": f"{initial}ms",
            "max": f"{ceiling}ms",
            "multiplier": 2.0,
        }
    return retry


def _batch(batch: Reader, job: dict[str, Any]) -> None:
    job["instances"] = batch.integer("size", 1, minimum=1)
    if limit := batch.integer("runtimeLimitSec"):
        job["runtime_limit"] = f"{limit}s"
    retry = _retry(batch.child("retryPolicy"))
    if batch.flag("retryOnRuntimeLimit"):
        retry["retry_on_runtime_limit"] = True
    if retry:
        job["retry"] = retry


def _service(service: Reader, job: dict[str, Any]) -> None:
    capacity = service.child("capacity")
    if capacity is not None:
        job["capacity"] = {key: capacity.integer(key, 0) for key in ("min", "desired", "max")}
    if service.flag("enabled") is False:
        service.drop_path(
            service.at("enabled"),
            "titus-flow has no autoscaling to disable; the job runs at desired",
        )
    service.drop(
        "retryPolicy",
        "titus-flow replaces a service's failed tasks itself, with a crash-loop backoff (2s to 5m)",
    )
    service.drop(
        "migrationPolicy", "titus-flow moves tasks off draining agents within the disruption budget"
    )
    service.drop(
        "serviceJobProcesses", "titus-flow has no autoscaling whose scaling could be disabled"
    )


def _budget(root: Reader) -> tuple[Reader, str] | None:
    """The disruption budget and its policy (None without either); rates are dealt with."""
    budget = root.child("disruptionBudget")
    if budget is None:
        return None
    known = {*BUDGET_POLICIES, *BUDGET_RATES, "timeWindows", "containerHealthProviders"}
    for key in budget.data:
        if key not in known:
            raise budget.fail(key, f"unknown key: expected one of {', '.join(sorted(known))}")
    budget.oneof(BUDGET_RATES, exclusive=False)
    budget.raw("rateUnlimited")  # titus-flow limits no rate: carried as is
    for rate in ("ratePercentagePerHour", "ratePerInterval", "ratePercentagePerInterval"):
        budget.drop(rate, "titus-flow has no disruption rate limit, only the count at once")
    budget.drop("timeWindows", "titus-flow allows voluntary disruptions at any time")
    budget.drop(
        "containerHealthProviders", "titus-flow judges health by the job's own health check"
    )
    policy = budget.oneof(BUDGET_POLICIES, exclusive=False)
    return None if policy is None else (budget, policy)


def _batch_budget(root: Reader) -> None:
    found = _budget(root)
    if found is not None:
        found[0].drop(
            found[1], "titus-flow batch jobs have no disruption budget (tasks are not relocated)"
        )


def _service_budget(root: Reader, job: dict[str, Any]) -> None:
    found = _budget(root)
    if found is None:
        return
    budget, policy = found
    if policy in ("availabilityPercentageLimit", "unhealthyTasksLimit"):
        rules = _child(budget, policy)
    if policy == "availabilityPercentageLimit":
        healthy = rules.number("percentageOfHealthyContainers", 0.0)
        if healthy > 100:
            raise rules.fail("percentageOfHealthyContainers", "must be at most 100")
        job["disruption_budget"] = {"max_unavailable": f"{math.floor(100 - healthy)}%"}
    elif policy == "unhealthyTasksLimit":
        job["disruption_budget"] = {
            "max_unavailable": rules.integer("limitOfUnhealthyContainers", 0)
        }
    elif policy == "selfManaged":
        budget.drop(
            policy,
            "titus-flow has no owner-managed relocation; the default budget (1 task) applies",
        )
    else:
        budget.drop(policy, "a relocation limit applies to batch tasks; titus-flow relocates none")


__all__ = ["export_job", "import_document"]
