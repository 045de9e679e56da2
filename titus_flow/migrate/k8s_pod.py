"""A Kubernetes pod template's first container as a titus-flow container.

Shared by the Job and Deployment translations in :mod:`titus_flow.migrate.k8s`:
the container (image, command, env, ports, resources, mounts, security
context), the pod's volumes, node selector and host network, and probes as a
health check. Quantities (``500m``, ``1Gi``, ``512M``, ``1e3``) are parsed
exactly, as Kubernetes does.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any

from titus_flow.migrate.common import drop_all, mebibytes, platform_variables, seconds
from titus_flow.migrate.reader import Reader
from titus_flow.migrate.report import MigrateInputError
from titus_flow.spec.base import LABEL_KEY_PATTERN

_QUANTITY = re.compile(
    r"^([+-]?(?:[0-9]{1,30}(?:\.[0-9]{0,30})?|\.[0-9]{1,30}))"
    r"(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?[0-9]{1,2})?$"
)
_MAX_QUANTITY = 2**63 - 1
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"m": -1, "": 0, "k": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}
_EXPANSION = re.compile(r"\$\([A-Za-z_][A-Za-z0-9_]*\)")
_LABEL_KEY = re.compile(LABEL_KEY_PATTERN)
_LABEL_VALUE = re.compile(r"^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_PORT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_INDEX_VARIABLES = ("JOB_COMPLETION_INDEX",)
_INDEX_INSTEAD = "tasks see their index (0-based, as in an Indexed Job) as TITUS_TASK_INDEX"

_VALUE_FROM = (
    "values from the cluster (fieldRef, secretKeyRef) have no counterpart;"
    " a secret can be container.secrets"
)

PROBE_DEFAULTS = {"periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1}
"""Kubernetes' probe defaults that differ from titus-flow's (so they are written out)."""


def quantity(reader: Reader, key: str) -> Fraction:
    """The Kubernetes quantity at ``key`` (a number or a string such as ``500m``, ``1Gi``)."""
    value = reader.raw(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        number = Fraction(value)
    elif isinstance(value, str) and (match := _QUANTITY.fullmatch(value.strip())):
        number = Fraction(match.group(1))
        suffix = match.group(2) or ""
        if suffix in _BINARY:
            number *= 1024 ** _BINARY[suffix]
        elif suffix in _DECIMAL:
            number *= Fraction(1000) ** _DECIMAL[suffix]
        else:
            number *= Fraction(10) ** int(suffix[1:])
    else:
        raise reader.fail(key, "expected a quantity such as 500m, 2, 512Mi or 1Gi")
    if number < 0:
        raise reader.fail(key, "must not be negative")
    if number > _MAX_QUANTITY:
        raise reader.fail(key, "too large: at most 2^63 (Kubernetes' own limit)")
    return number


def port_name(given: str) -> str:
    """A Kubernetes port name as a titus-flow one (``'-'`` becomes ``'_'``)."""
    return given.replace("-", "_")


class PodTranslation:
    """The titus-flow fields read from one pod template (``template.spec``)."""

    def __init__(self, pod: Reader, selector: dict[str, str], template: Reader) -> None:
        self.job: dict[str, Any] = {}
        self.container: dict[str, Any] = {}
        self.ports: dict[int, str] = {}  # containerPort -> titus-flow port name
        self.port_paths: dict[int, str] = {}
        self.first: Reader
        containers = pod.children("containers")
        if not containers:
            raise pod.fail("containers", "missing: the pod needs a container")
        self.first = containers[0]
        for extra in containers[1:]:
            for key in list(extra.data):
                extra.raw(key)
            pod.drop_path(extra.path, "sidecars are not supported: only the first container runs")
        self._template_metadata(template, selector)
        self._container(self.first)
        self._pod(pod)

    def _template_metadata(self, template: Reader, selector: dict[str, str]) -> None:
        metadata = template.child("metadata")
        if metadata is None:
            return
        labels = {k: v for k, v in metadata.string_map("labels").items() if k not in selector}
        if labels:
            self.container["labels"] = labels
        metadata.drop("annotations", "titus-flow has no annotations; use labels")

    def _container(self, reader: Reader) -> None:
        spec = self.container
        spec["image"] = reader.required_text("image")
        reader.text("name")
        for key, field in (("command", "entrypoint"), ("args", "command")):
            if values := reader.strings(key):
                spec[field] = values
                platform_variables(reader, key, values, _INDEX_VARIABLES, _INDEX_INSTEAD)
                for index, value in enumerate(values):
                    if _EXPANSION.search(value):
                        reader.drop_path(
                            f"{reader.at(key)}[{index}]",
                            "Kubernetes expands $(VAR) here; titus-flow passes it as written"
                            " (use sh -c and $VAR)",
                        )
        if working_dir := reader.text("workingDir"):
            spec["working_dir"] = working_dir
        self._ports(reader)
        env = self._environment(reader)
        if env:
            spec["env"] = env
        self._resources(reader)
        mounts = []
        for entry in reader.children("volumeMounts"):
            mount: dict[str, Any] = {
                "volume": entry.required_text("name"),
                "path": entry.required_text("mountPath"),
            }
            if entry.flag("readOnly", False):
                mount["read_only"] = True
            entry.drop("subPath", "titus-flow mounts a whole volume")
            mounts.append(mount)
        if mounts:
            spec["mounts"] = mounts
        security = reader.child("securityContext")
        if security is not None:
            if security.flag("readOnlyRootFilesystem", False):
                spec["read_only_root"] = True
            user = security.integer("runAsUser")
            group = security.integer("runAsGroup")
            if user is not None:
                spec["user"] = str(user) if group is None else f"{user}:{group}"
            elif group is not None:
                security.drop_path(security.at("runAsGroup"), "a group needs runAsUser too")
            drop_all(
                security,
                {
                    "privileged": "titus-flow never runs privileged containers",
                    "capabilities": "the agent sets every task's capabilities",
                    "allowPrivilegeEscalation": "the agent always forbids privilege escalation",
                    "runAsNonRoot": "set runAsUser instead",
                },
            )
        drop_all(
            reader,
            {
                "imagePullPolicy": "the agent's image pull policy applies",
                "envFrom": "list each variable in env",
                "lifecycle": "lifecycle hooks are not supported",
                "startupProbe": "use the health check's start_grace_period",
                "terminationMessagePath": "the task's output file is TITUS_OUTPUT_PATH",
                "terminationMessagePolicy": "the task's output file is TITUS_OUTPUT_PATH",
            },
        )

    def _ports(self, reader: Reader) -> None:
        names = []
        for entry in reader.children("ports"):
            number = entry.integer("containerPort", minimum=1)
            if number is None:
                raise entry.fail("containerPort", "missing: the port number is required")
            given = entry.text("name") or f"port-{number}"
            name = port_name(given)
            if not _PORT_NAME.match(name):
                raise entry.fail("name", "expected a lowercase port name such as http")
            self.ports[number] = name
            self.port_paths[number] = entry.at("containerPort")
            names.append(name)
            drop_all(
                entry,
                {
                    "hostPort": "the agent picks each task's host port",
                    "hostIP": "the agent publishes on its own address",
                },
            )
            if entry.text("protocol", "TCP") != "TCP":
                entry.drop_path(entry.at("protocol"), "titus-flow publishes TCP ports only")
        if names:
            self.container["ports"] = names

    def _environment(self, reader: Reader) -> dict[str, str]:
        given: dict[str, str] = {}
        for entry in reader.children("env"):
            name = entry.required_text("name")
            if entry.has("valueFrom"):
                entry.drop("valueFrom", _VALUE_FROM)
                continue
            given[name] = entry.text("value", "")
        # An export sets PORT_<NAME> (and PORT, the first) to the containerPort, so the
        # task listens where Kubernetes expects it; titus-flow sets those itself.
        own = {f"PORT_{name.upper()}": str(number) for number, name in self.ports.items()}
        if self.ports:
            own["PORT"] = str(next(iter(self.ports)))
        for number, name in self.ports.items():
            if given.get(f"PORT_{name.upper()}") != str(number):
                reader.drop_path(
                    self.port_paths[number],
                    f"containerPort {number} is not kept: titus-flow picks each task's port"
                    f" and passes it as PORT_{name.upper()}; listen on that",
                )
        return {name: value for name, value in given.items() if own.get(name) != value}

    def _resources(self, reader: Reader) -> None:
        resources = reader.child("resources")
        if resources is None:
            return
        requests = resources.child("requests")
        limits = resources.child("limits")
        chosen: dict[str, Fraction] = {}
        for side in (limits, requests):  # requests win: they are what a pod reserves
            if side is None:
                continue
            for key in list(side.data):
                if key in ("cpu", "memory", "nvidia.com/gpu", "ephemeral-storage"):
                    chosen[key] = quantity(side, key)
                else:
                    side.drop(key, "resource has no counterpart")
        if limits is not None and requests is not None:
            for key in set(limits.data) & set(requests.data):
                if quantity(limits, key) != quantity(requests, key):
                    limits.drop_path(
                        limits.at(key),
                        "titus-flow limits a task to what it reserves (the request is kept)",
                    )
        out: dict[str, Any] = {}
        if "cpu" in chosen:
            out["cpu"] = float(max(chosen["cpu"], Fraction(1, 1000)))
        if "memory" in chosen:
            out["memory"] = mebibytes(math.ceil(chosen["memory"] / 1024**2))
        if "ephemeral-storage" in chosen:
            out["disk"] = mebibytes(math.ceil(chosen["ephemeral-storage"] / 1024**2))
        if "nvidia.com/gpu" in chosen:
            out["gpu"] = math.ceil(chosen["nvidia.com/gpu"])
        if out:
            self.job["resources"] = out

    def _pod(self, pod: Reader) -> None:
        volumes = []
        for entry in pod.children("volumes"):
            name = entry.required_text("name")
            source = entry.oneof(("emptyDir", "hostPath"), exclusive=False)
            volume: dict[str, Any] = {"name": name}
            if source == "emptyDir":
                empty = entry.child("emptyDir")
                assert empty is not None
                if empty.text("medium", "") == "Memory":
                    volume["tmpfs"] = {}
                    if empty.has("sizeLimit"):
                        size = math.ceil(quantity(empty, "sizeLimit") / 1024**2)
                        volume["tmpfs"]["size"] = mebibytes(size)
                else:
                    volume["scratch"] = {}
                    empty.drop("sizeLimit", "scratch volumes have no size limit")
            elif source == "hostPath":
                host = entry.child("hostPath")
                assert host is not None
                volume["host_path"] = {"path": host.required_text("path")}
                host.drop("type", "the agent checks the path when it mounts it")
            else:
                for key in list(entry.data):
                    entry.raw(key)
                pod.drop_path(entry.path, "only emptyDir and hostPath volumes are carried")
                self._unmount(name)
                continue
            volumes.append(volume)
        if volumes:
            self.job["volumes"] = volumes
        if selector := pod.string_map("nodeSelector"):
            for key, value in selector.items():
                # Checked here: an attribute name reaches placement rules (Titus's
                # GHSL-2020-028 came through constraint names), so only label shapes pass.
                if not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(value):
                    raise MigrateInputError(
                        pod.at("nodeSelector"),
                        "keys and values must be Kubernetes label keys and values"
                        " (letters, digits, '-', '_', '.', and '/' in keys)",
                    )
            self.job["constraints"] = {"hard": {"attributes": selector}}
        if pod.flag("hostNetwork", False):
            self.container["network"] = "host"
        pod.text("restartPolicy")
        drop_all(
            pod,
            {
                "initContainers": "init containers are not supported",
                "serviceAccountName": "use security.iam_role for the tasks' AWS identity",
                "affinity": "use constraints (hard and soft attributes)",
                "tolerations": "use constraints (hard and soft attributes)",
                "terminationGracePeriodSeconds": "the agent's stop grace period applies",
                "imagePullSecrets": "the agent pulls with its own registry credentials",
                "securityContext": "set the container's securityContext (runAsUser, ...)",
            },
        )

    def _unmount(self, volume: str) -> None:
        mounts = self.container.get("mounts", [])
        self.container["mounts"] = [mount for mount in mounts if mount["volume"] != volume]
        if not self.container["mounts"]:
            del self.container["mounts"]

    def health_check(self, reader: Reader, key: str) -> dict[str, Any] | None:
        """The probe at ``key`` of the container as a titus-flow health check (None if absent)."""
        probe = reader.child(key)
        if probe is None:
            return None
        handler = probe.required_oneof(("httpGet", "tcpSocket", "exec", "grpc"), exclusive=False)
        check: dict[str, Any]
        if handler == "exec":
            action = probe.child("exec")
            assert action is not None
            check = {"kind": "exec", "command": action.strings("command")}
        elif handler in ("httpGet", "tcpSocket"):
            action = probe.child(handler)
            assert action is not None
            check = {
                "kind": "http" if handler == "httpGet" else "tcp",
                "port": self._probe_port(action),
            }
            if handler == "httpGet":
                check["path"] = action.text("path", "/")
                if action.text("scheme", "HTTP") != "HTTP":
                    raise action.fail("scheme", "titus-flow health checks speak plain HTTP")
                drop_all(
                    action,
                    {
                        "host": "the agent probes the task itself",
                        "httpHeaders": "sent without headers",
                    },
                )
        else:
            raise probe.fail(
                "grpc", "gRPC probes are not supported: use httpGet, tcpSocket or exec"
            )
        timing = {
            "periodSeconds": "interval",
            "timeoutSeconds": "timeout",
            "initialDelaySeconds": "start_grace_period",
        }
        for name, field in timing.items():
            value = probe.integer(name, PROBE_DEFAULTS.get(name, 0))
            if value or name in PROBE_DEFAULTS:
                check[field] = seconds(value)
        check["healthy_threshold"] = probe.integer("successThreshold", 1, minimum=1)
        check["unhealthy_threshold"] = probe.integer("failureThreshold", 3, minimum=1)
        probe.drop("terminationGracePeriodSeconds", "the agent's stop grace period applies")
        return check

    def _probe_port(self, action: Reader) -> str:
        value = action.raw("port")
        if isinstance(value, int) and not isinstance(value, bool) and value in self.ports:
            return self.ports[value]
        if isinstance(value, str) and port_name(value) in self.ports.values():
            return port_name(value)
        raise MigrateInputError(action.at("port"), "names no port of the container's ports")
