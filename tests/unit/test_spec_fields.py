"""Every spec field, valid and invalid; each error names the field and says what to do.

A case sets one field (by dotted path) on an otherwise valid job mapping, validates
it the way the loader does, and for invalid values checks the formatted error:
one line, pointing at the field, without pydantic's noise.
"""

from __future__ import annotations

import copy
from typing import Any, get_args

import pytest
from pydantic import BaseModel, ValidationError

from titus_flow.errors import format_validation_error
from titus_flow.spec import BatchJob, ServiceJob

SHA = "a" * 64
AS_TARGET = {"name": "t", "kind": "target_tracking", "metric": "cpu_utilization", "target": 60}
PROMETHEUS = {"port": "http", "path": "/metrics", "metric": "q", "labels": {"queue": "high"}}
AS_STEP = {
    "name": "s",
    "kind": "step",
    "metric": "requests_per_task",
    "threshold": 100,
    "steps": [{"upper": 0, "adjustment": -1}, {"lower": 0, "upper": 50, "adjustment": 1}],
}


def base_job(kind: str) -> dict[str, Any]:
    job: dict[str, Any] = {
        "name": "job",
        "container": {"image": "busybox", "ports": ["http"]},
        "volumes": [{"name": "data", "scratch": {}}],
    }
    if kind == "service":
        job["kind"] = "service"
    return job


def with_field(kind: str, path: str, value: Any) -> dict[str, Any]:
    """``base_job(kind)`` with ``value`` set at dotted ``path`` (mappings made as needed)."""
    job = base_job(kind)
    *parents, last = path.split(".")
    target = job
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = copy.deepcopy(value)
    return job


def validate(job: dict[str, Any]) -> BatchJob | ServiceJob:
    model = ServiceJob if job.get("kind") == "service" else BatchJob
    return model.model_validate(job)


# (kind, field path, value). Paths below health_check / retry.backoff assume the
# mapping given there carries its kind.
VALID: list[tuple[str, str, Any]] = [
    # job
    ("batch", "name", "a"),
    ("batch", "name", "a-1"),
    ("batch", "name", "x" * 63),
    ("batch", "owner", "team@example.com"),
    ("batch", "owner", ""),
    ("batch", "capacity_group", "gpu-pool"),
    ("batch", "labels", {"com.example/team": "infra", "a": ""}),
    ("batch", "instances", 1),
    ("batch", "instances", 10_000),
    ("batch", "runtime_limit", "10m"),
    ("batch", "runtime_limit", 60),
    ("batch", "runtime_limit", 0.5),
    ("batch", "runtime_limit", None),
    ("batch", "depends_on", ["other", "third"]),
    ("batch", "depends_on", []),
    ("batch", "depends_on", ["other", {"job": "split", "mode": "n_to_n"}, {"job": "x"}]),
    ("batch", "depends_on", [{"job": "other", "mode": "all"}]),
    ("batch", "task_order", "sequential"),
    ("batch", "task_order", "parallel"),
    ("batch", "security", {}),
    (
        "batch",
        "security",
        {
            "iam_role": "arn:aws:iam::123456789012:role/team/app-role",
            "security_groups": ["sg-0123abcd", "sg-0123456789abcdef0"],
        },
    ),
    ("service", "security.iam_role", "arn:aws-cn:iam::123456789012:role/app"),
    ("batch", "security.iam_role", None),
    ("batch", "volumes", []),
    (
        "batch",
        "volumes",
        [
            {"name": "data", "host_path": {"path": "/srv/data"}},
            {"name": "scratch", "scratch": {}},
            {"name": "fast", "tmpfs": {"size": "64Mi"}},
            {"name": "tmp", "tmpfs": {}},
            {"name": "models", "efs": {"file_system_id": "fs-12345678", "path": "/models"}},
            {"name": "root", "efs": {"file_system_id": "fs-0123456789abcdef0"}},
        ],
    ),
    ("service", "volumes", [{"name": "data", "host_path": {"path": "/"}}]),
    # container
    ("batch", "container.image", "busybox:1.36"),
    ("batch", "container.image", "ghcr.io/org/app:v1.2"),
    ("batch", "container.image", "localhost:5000/a/b"),
    ("batch", "container.image", f"repo/app@sha256:{SHA}"),
    ("batch", "container.entrypoint", ["/bin/sh", "-c"]),
    ("batch", "container.entrypoint", "sh -c"),
    ("batch", "container.entrypoint", None),
    ("batch", "container.command", ["echo", "hello world"]),
    ("batch", "container.command", "echo 'hello world'"),
    ("batch", "container.command", []),
    ("batch", "container.env", {"A": "1", "_X": "", "LOG_LEVEL": "debug"}),
    ("batch", "container.working_dir", "/app"),
    ("batch", "container.working_dir", None),
    ("batch", "container.user", "1000:1000"),
    ("batch", "container.user", "nobody"),
    ("batch", "container.ports", ["http", "grpc_2"]),
    ("batch", "container.ports", []),
    ("batch", "container.labels", {"team": "infra"}),
    ("batch", "container.network", "bridge"),
    ("batch", "container.network", "host"),
    ("service", "container.network", "host"),
    ("batch", "container.read_only_root", True),
    ("batch", "container.read_only_root", False),
    ("batch", "container.mounts", []),
    (
        "batch",
        "container.mounts",
        [
            {"volume": "data", "path": "/data", "read_only": True},
            {"volume": "data", "path": "/data/again"},
            {"volume": "data", "path": "/devices"},
        ],
    ),
    ("service", "container.mounts", [{"volume": "data", "path": "/var/lib/app"}]),
    ("batch", "container.shm_size", "128Mi"),
    ("batch", "container.shm_size", 64),
    ("batch", "container.shm_size", None),
    ("batch", "container.secrets", {"DB_PASSWORD": "env_file:/etc/titus/db.env"}),
    ("batch", "container.secrets", {"TOKEN": "env_file:/etc/titus/all.env#API_TOKEN"}),
    (
        "batch",
        "container.secrets",
        {"A": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-pass-AbCdEf"},
    ),
    ("batch", "container.secrets", {"B": "ssm:/team/app/token", "C": "ssm:plain-name"}),
    ("batch", "container.secrets", {"D": "arn:aws:ssm:eu-west-1:123456789012:parameter/a/b"}),
    # resources
    ("batch", "resources.cpu", 0.5),
    ("batch", "resources.cpu", 2),
    ("batch", "resources.cpu", 0.001),
    ("batch", "resources.cpu", 1024),
    ("batch", "resources.memory", 6),
    ("batch", "resources.memory", "6Mi"),
    ("batch", "resources.memory", "2Gi"),
    ("batch", "resources.memory", "1G"),
    ("batch", "resources.memory", 512.0),
    ("batch", "resources.disk", 0),
    ("batch", "resources.disk", "10Gi"),
    ("batch", "resources.network_mbps", 0),
    ("batch", "resources.network_mbps", 1000),
    ("batch", "resources.gpu", 0),
    ("batch", "resources.gpu", 64),
    # constraints
    ("batch", "constraints.hard.unique_host", True),
    ("batch", "constraints.soft.zone_balance", False),
    ("batch", "constraints.hard.attributes", {"zone": "us-east-1a"}),
    ("batch", "constraints.soft.attributes", {"zone": ["us-east-1a", "us-east-1b"]}),
    # retry
    ("batch", "retry.attempts", 1),
    ("batch", "retry.attempts", 100),
    ("batch", "retry.backoff", "immediate"),
    ("batch", "retry.backoff", "fixed"),
    ("batch", "retry.backoff", {"kind": "fixed", "delay": "5s"}),
    ("batch", "retry.backoff", {"kind": "fixed", "delay": 0}),
    ("batch", "retry.backoff", {"kind": "exponential", "initial": "1s", "max": "1m"}),
    ("batch", "retry.backoff", {"kind": "exponential", "multiplier": 1}),
    ("batch", "retry.backoff", {"kind": "exponential", "multiplier": 100}),
    ("batch", "retry.retry_on_exit_codes", [1, 2, 255]),
    ("batch", "retry.retry_on_exit_codes", None),
    ("batch", "retry.retry_on_exit_codes", []),
    ("batch", "retry.never_retry_on_exit_codes", [0, 2]),
    ("batch", "retry.retry_on_runtime_limit", True),
    # service
    ("service", "capacity", {"min": 0, "desired": 0, "max": 0}),
    ("service", "capacity", {"min": 1, "desired": 3, "max": 5}),
    ("service", "capacity.max", 10_000),
    ("service", "health_check", None),
    ("service", "health_check", {"kind": "http", "port": "http"}),
    ("service", "health_check", {"kind": "http", "port": "http", "path": "/healthz?x=1"}),
    ("service", "health_check", {"kind": "tcp", "port": "http"}),
    ("service", "health_check", {"kind": "exec", "command": "pg_isready"}),
    ("service", "health_check", {"kind": "exec", "command": ["test", "-f", "/ready"]}),
    (
        "service",
        "health_check",
        {
            "kind": "tcp",
            "port": "http",
            "interval": "1s",
            "timeout": "500ms",
            "healthy_threshold": 2,
            "unhealthy_threshold": 5,
            "start_grace_period": "30s",
        },
    ),
    ("service", "update", {"max_surge": 0, "max_unavailable": 1}),
    ("service", "update.healthy_deadline", "10m"),
    ("service", "disruption_budget.max_unavailable", 0),
    ("service", "disruption_budget.max_unavailable", 3),
    ("service", "disruption_budget.max_unavailable", "25%"),
    ("service", "disruption_budget.max_unavailable", "100%"),
    ("service", "autoscaling", None),
    ("service", "autoscaling", {"policies": [], "scheduled": [], "paused": True}),
    ("service", "autoscaling", {"interval": "5s", "window": "30s"}),
    (
        "service",
        "load_balancers",
        [
            "local:web",
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef",
        ],
    ),
    ("service", "load_balancer_check_interval", "30s"),
    (
        "service",
        "autoscaling.policies",
        [{**AS_TARGET, "metric": "custom:q", "metric_source": {"prometheus": PROMETHEUS}}],
    ),
    ("service", "load_balancer_check_interval", 5),
    (
        "service",
        "autoscaling.policies",
        [
            {
                **AS_TARGET,
                "metric": "custom:rps",
                "metric_source": {"prometheus": {**PROMETHEUS, "rate": True}},
            }
        ],
    ),
    (
        "service",
        "autoscaling.policies",
        [
            {
                **AS_TARGET,
                "metric": "custom:p99",
                "metric_source": {"prometheus": {**PROMETHEUS, "quantile": 0.99}},
            }
        ],
    ),
    ("service", "autoscaling.policies", [AS_TARGET, {**AS_STEP, "name": "s"}]),
    (
        "service",
        "autoscaling.policies",
        [
            {
                **AS_TARGET,
                "scale_out_cooldown": "30s",
                "scale_in_cooldown": 0,
                "disable_scale_in": True,
                "tolerance": 0,
                "metric": "custom:queue.depth",
            }
        ],
    ),
    (
        "service",
        "autoscaling.policies",
        [
            {
                **AS_STEP,
                "adjustment_type": "percent_change_in_capacity",
                "cooldown": "1m",
                "min_adjustment_magnitude": 2,
            }
        ],
    ),
    (
        "service",
        "autoscaling.scheduled",
        [{"name": "am", "cron": "0 8 * * mon-fri", "min": 1, "desired": 2, "max": 3}],
    ),
]

HTTP = {"kind": "http", "port": "http"}

# (kind, field path, value, where the error points (None: at the field path itself),
# text the message must contain)
INVALID: list[tuple[str, str, Any, str | None, str]] = [
    # job
    ("batch", "name", "Hello", None, "lowercase"),
    ("batch", "name", "-a", None, "invalid name"),
    ("batch", "name", "a-", None, "invalid name"),
    ("batch", "name", "a_b", None, "invalid name"),
    ("batch", "name", "x" * 64, None, "1-63"),
    ("batch", "name", "", None, "invalid name"),
    ("batch", "name", "abc\n", None, "invalid name"),  # "$" alone would allow the newline
    ("batch", "name", 5, None, 'quote it, e.g. "5"'),
    ("batch", "owner", "x" * 257, None, "at most 256 characters"),
    ("batch", "owner", 5, None, "must be a string"),
    ("batch", "capacity_group", "GPU", None, "invalid name"),
    ("batch", "labels", {"titus-flow.job": "x"}, 'labels["titus-flow.job"]', "reserves"),
    ("batch", "labels", {"-bad": "x"}, 'labels["-bad"]', "invalid label key"),
    ("batch", "labels", {"a": 1}, "labels.a", "quote it"),
    ("batch", "labels", ["a=1"], None, "valid dictionary"),
    ("batch", "instances", 0, None, "greater than or equal to 1"),
    ("batch", "instances", 10_001, None, "less than or equal to 10000"),
    ("batch", "instances", True, None, "valid integer (got True)"),
    ("batch", "instances", "3", None, "valid integer (got '3')"),
    ("batch", "instances", 2.0, None, "valid integer"),
    ("batch", "runtime_limit", "0s", None, "greater than 0s"),
    ("batch", "runtime_limit", 0, None, "greater than 0s"),
    ("batch", "runtime_limit", "-5s", None, "invalid duration"),
    ("batch", "runtime_limit", "soon", None, '"30s"'),
    ("batch", "runtime_limit", "5M", None, "invalid duration"),
    ("batch", "runtime_limit", True, None, "invalid duration"),
    ("batch", "depends_on", ["Bad"], "depends_on[0]", "invalid name"),
    ("batch", "depends_on", ["job"], None, "cannot depend on itself"),
    ("batch", "depends_on", ["a", "a"], None, "listed twice"),
    ("batch", "depends_on", "other", None, "valid list"),
    ("batch", "depends_on", [{"job": "Bad"}], "depends_on[0].job", "invalid name"),
    ("batch", "depends_on", [{"job": "a", "mode": "n_to_1"}], "depends_on[0].mode", "'n_to_n'"),
    ("batch", "depends_on", [{"mode": "n_to_n"}], "depends_on[0].job", "missing"),
    ("batch", "depends_on", ["a", {"job": "a", "mode": "n_to_n"}], None, "listed twice"),
    ("batch", "depends_on", [{"job": "job"}], None, "cannot depend on itself"),
    ("batch", "depends_on", [3], "depends_on[0]", "mapping"),
    ("batch", "task_order", "random", None, "'sequential'"),
    ("service", "task_order", "sequential", None, "field of kind 'batch'"),
    ("batch", "security", "arn", None, "mapping"),
    ("batch", "security.iam_role", "arn:aws:iam::1234:role/app", None, "IAM role ARN"),
    ("batch", "security.iam_role", "app", None, "arn:aws:iam::<12-digit account>:role/<name>"),
    ("batch", "security.iam_role", "arn:aws:iam::123456789012:user/app", None, "IAM role ARN"),
    ("batch", "security.security_groups", ["sg-12"], "security.security_groups[0]", "sg-0123abcd"),
    ("batch", "security.security_groups", ["sg-0123ABCD"], "security.security_groups[0]", "hex"),
    ("batch", "security.security_groups", ["sg-0123abcd"] * 2, None, "listed twice"),
    ("batch", "volumes", {"data": {}}, None, "valid list"),
    ("batch", "volumes", [{"name": "a", "scratch": {}}] * 2, None, "declared twice"),
    ("batch", "volumes", [{"name": "a"}], "volumes[0]", "exactly one of host_path"),
    (
        "batch",
        "volumes",
        [{"name": "a", "scratch": {}, "tmpfs": {}}],
        "volumes[0]",
        "(got scratch, tmpfs)",
    ),
    ("batch", "volumes", [{"name": "A", "scratch": {}}], "volumes[0].name", "invalid name"),
    ("batch", "volumes", [{"name": "a", "nfs": {}}], "volumes[0].nfs", "unknown field"),
    (
        "batch",
        "volumes",
        [{"name": "a", "scratch": {"size": 1}}],
        "volumes[0].scratch.size",
        "unknown",
    ),
    (
        "batch",
        "volumes",
        [{"name": "a", "host_path": {"path": "srv/data"}}],
        "volumes[0].host_path.path",
        "must be an absolute path",
    ),
    (
        "batch",
        "volumes",
        [{"name": "a", "host_path": {"path": "/srv/../etc"}}],
        "volumes[0].host_path.path",
        "write '/etc'",
    ),
    (
        "batch",
        "volumes",
        [{"name": "a", "host_path": {"path": "/srv/data/"}}],
        "volumes[0].host_path.path",
        "not normalised",
    ),
    ("batch", "volumes", [{"name": "a", "host_path": {}}], "volumes[0].host_path.path", "missing"),
    (
        "batch",
        "volumes",
        [{"name": "a", "tmpfs": {"size": 0}}],
        "volumes[0].tmpfs.size",
        "greater than or equal to 1",
    ),
    ("batch", "volumes", [{"name": "a", "tmpfs": {"size": "x"}}], "volumes[0].tmpfs.size", "512Mi"),
    (
        "batch",
        "volumes",
        [{"name": "a", "efs": {"file_system_id": "fs-123"}}],
        "volumes[0].efs.file_system_id",
        "fs-12345678",
    ),
    (
        "batch",
        "volumes",
        [{"name": "a", "efs": {"file_system_id": "fs-12345678", "path": "models"}}],
        "volumes[0].efs.path",
        "absolute",
    ),
    ("batch", "kind", "cron", None, "must be 'batch' (got 'cron')"),
    ("batch", "capacity", {"desired": 2}, None, "field of kind 'service'"),
    ("batch", "instancez", 2, None, "did you mean 'instances'"),
    # container
    ("batch", "container", "busybox", None, "must be a mapping"),
    ("batch", "container.image", "Busybox", None, "lowercase"),
    ("batch", "container.image", "", None, "invalid image"),
    ("batch", "container.image", "busybox\n", None, "invalid image"),
    ("batch", "container.image", "busybox:", None, "name[:tag]"),
    ("batch", "container.image", "a@sha256:123", None, "64 hex digits"),
    ("batch", "container.image", 5, None, "must be a string"),
    ("batch", "container.entrypoint", "sh 'oops", None, "cannot split"),
    ("batch", "container.entrypoint", [1], "container.entrypoint[0]", "quote it"),
    ("batch", "container.command", 5, None, "valid list"),
    ("batch", "container.command", ["a\0b"], "container.command[0]", "NUL"),
    ("batch", "container.env", {"1A": "x"}, 'container.env["1A"]', "environment variable name"),
    ("batch", "container.env", {"A-B": "x"}, "container.env.A-B", "not starting with a digit"),
    ("batch", "container.env", {"A": 1}, "container.env.A", 'quote it, e.g. "1"'),
    ("batch", "container.env", {"A": True}, "container.env.A", 'quote it, e.g. "true"'),
    ("batch", "container.env", {"A": None}, "container.env.A", "must be a valid string"),
    ("batch", "container.env", {"A": "x\0"}, "container.env.A", "NUL"),
    ("batch", "container.env", ["A=1"], None, "valid dictionary"),
    ("batch", "container.working_dir", "app", None, "absolute path"),
    ("batch", "container.user", 1000, None, 'quote it, e.g. "1000"'),
    ("batch", "container.ports", ["HTTP"], "container.ports[0]", "invalid port name"),
    ("batch", "container.ports", ["1http"], "container.ports[0]", "lowercase letter"),
    ("batch", "container.ports", ["http", "http"], None, "list each port once"),
    ("batch", "container.ports", "http", None, "valid list"),
    ("batch", "container.labels", {"titus-flow.x": "1"}, 'container.labels["titus-flow.x"]', ""),
    ("batch", "container.imagee", "x", None, "did you mean 'image'"),
    ("batch", "container.network", "bridged", None, "'bridge', 'host' or 'none'"),
    ("batch", "container.network", "none", "container", "cannot publish ports"),
    ("batch", "container.read_only_root", "yes", None, "valid boolean"),
    (
        "batch",
        "container.mounts",
        [{"volume": "data", "path": "x"}],
        "container.mounts[0].path",
        "absolute",
    ),
    (
        "batch",
        "container.mounts",
        [{"volume": "data", "path": "/"}],
        "container.mounts[0].path",
        "mount below",
    ),
    (
        "batch",
        "container.mounts",
        [{"volume": "data", "path": "/proc"}],
        "container.mounts[0].path",
        "/proc",
    ),
    (
        "batch",
        "container.mounts",
        [{"volume": "data", "path": "/sys/fs"}],
        "container.mounts[0].path",
        "/sys",
    ),
    (
        "batch",
        "container.mounts",
        [{"volume": "data", "path": "/dev/shm"}],
        "container.mounts[0].path",
        "shm_size",
    ),
    (
        "batch",
        "container.mounts",
        [{"volume": "data", "path": "/titus/output"}],
        "container.mounts[0].path",
        "output",
    ),
    (
        "batch",
        "container.mounts",
        [{"volume": "data", "path": "/a/../dev"}],
        "container.mounts[0].path",
        "not normalised",
    ),
    (
        "batch",
        "container.mounts",
        [{"volume": "data", "path": "/a", "read_only": "yes"}],
        "container.mounts[0].read_only",
        "valid boolean",
    ),
    ("batch", "container.mounts", [{"volume": "data", "path": "/a"}] * 2, None, "used twice"),
    ("batch", "container.mounts", [{"volume": "data"}], "container.mounts[0].path", "missing"),
    ("batch", "container.shm_size", 0, None, "greater than or equal to 1"),
    ("batch", "container.shm_size", "lots", None, "512Mi"),
    ("batch", "container.secrets", {"A": "s3cr3t"}, "container.secrets.A", "env_file:"),
    ("batch", "container.secrets", {"A": "env_file:rel.env"}, "container.secrets.A", "ssm:"),
    ("batch", "container.secrets", {"A": "ssm:"}, "container.secrets.A", "secret reference"),
    ("batch", "container.secrets", {"1A": "ssm:/x"}, 'container.secrets["1A"]', "variable name"),
    (
        "batch",
        "container",
        {"image": "busybox", "env": {"A": "1"}, "secrets": {"A": "ssm:/a"}},
        None,
        "keep each variable in one",
    ),
    # resources
    ("batch", "resources", "big", None, "must be a mapping"),
    ("batch", "resources.cpu", 0, None, "greater than or equal to 0.001"),
    ("batch", "resources.cpu", 0.0005, None, "greater than or equal to 0.001"),
    ("batch", "resources.cpu", -1, None, "greater than"),
    ("batch", "resources.cpu", 1025, None, "less than or equal to 1024"),
    ("batch", "resources.cpu", True, None, "valid number (got True)"),
    ("batch", "resources.cpu", "1", None, "valid number"),
    ("batch", "resources.cpu", float("nan"), None, "resources.cpu"),
    ("batch", "resources.cpu", float("inf"), None, "less than or equal to 1024"),
    ("batch", "resources.memory", 5, None, "greater than or equal to 6"),
    ("batch", "resources.memory", "5Mi", None, "greater than or equal to 6"),
    ("batch", "resources.memory", "lots", None, '"512Mi" or "2Gi"'),
    ("batch", "resources.memory", "2gi", None, "invalid size"),
    ("batch", "resources.memory", -1, None, "must not be negative"),
    ("batch", "resources.memory", True, None, "invalid size"),
    ("batch", "resources.memory", 512.5, None, "invalid size"),
    ("batch", "resources.disk", -1, None, "must not be negative"),
    ("batch", "resources.disk", "x", None, "invalid size"),
    ("batch", "resources.network_mbps", -1, None, "greater than or equal"),
    ("batch", "resources.network_mbps", True, None, "valid integer"),
    ("batch", "resources.network_mbps", 1.5, None, "valid integer"),
    ("batch", "resources.gpu", 65, None, "less than or equal to 64"),
    ("batch", "resources.gpu", -1, None, "greater than or equal to 0"),
    ("batch", "resources.gpu", True, None, "valid integer"),
    ("batch", "resources.memroy", 5, None, "did you mean 'memory'"),
    # constraints
    ("batch", "constraints.hard.unique_host", "yes", None, "boolean"),
    ("batch", "constraints.hard.unique_host", 1, None, "boolean"),
    ("batch", "constraints.soft.zone_balance", "no", None, "boolean"),
    (
        "batch",
        "constraints.hard.attributes",
        {"zone": []},
        "constraints.hard.attributes.zone",
        "empty",
    ),
    (
        "batch",
        "constraints.hard.attributes",
        {"zone": 1},
        "constraints.hard.attributes.zone",
        "quote",
    ),
    (
        "batch",
        "constraints.hard.attributes",
        {"z": [1]},
        "constraints.hard.attributes.z",
        "strings",
    ),
    (
        "batch",
        "constraints.hard.attributes",
        {"": "a"},
        'constraints.hard.attributes[""]',
        "1 char",
    ),
    ("batch", "constraints.hard.attributes", "zone=a", None, "dictionary"),
    ("batch", "constraints.medium", {}, None, "known fields: hard, soft"),
    ("batch", "constraints.hard", "x", None, "must be a mapping"),
    ("batch", "constraints.soft", [], None, "must be a mapping"),
    ("batch", "constraints", 1, None, "must be a mapping"),
    # retry
    ("batch", "retry", 3, None, "must be a mapping"),
    ("batch", "retry.attempts", 0, None, "greater than or equal to 1"),
    ("batch", "retry.attempts", 101, None, "less than or equal to 100"),
    ("batch", "retry.attempts", True, None, "valid integer"),
    ("batch", "retry.attempts", "3", None, "valid integer"),
    ("batch", "retry.backoff", "sometimes", None, "'immediate', 'fixed', 'exponential'"),
    ("batch", "retry.backoff", {"delay": "1s"}, None, "missing 'kind'"),
    ("batch", "retry.backoff", {"kind": "fixed", "delay": "soon"}, "retry.backoff.delay", '"30s"'),
    ("batch", "retry.backoff", {"kind": "fixed", "delay": -1}, "retry.backoff.delay", "negative"),
    (
        "batch",
        "retry.backoff",
        {"kind": "fixed", "initial": "1s"},
        "retry.backoff.initial",
        "kind 'exponential'",
    ),
    (
        "batch",
        "retry.backoff",
        {"kind": "immediate", "delay": "1s"},
        "retry.backoff.delay",
        "kind 'fixed'",
    ),
    (
        "batch",
        "retry.backoff",
        {"kind": "exponential", "initial": "5s", "max": "1s"},
        "retry.backoff",
        "max (1s) must be at least initial (5s)",
    ),
    (
        "batch",
        "retry.backoff",
        {"kind": "exponential", "multiplier": 0.5},
        "retry.backoff.multiplier",
        "greater than or equal to 1",
    ),
    (
        "batch",
        "retry.backoff",
        {"kind": "exponential", "multiplier": 101},
        "retry.backoff.multiplier",
        "less than or equal to 100",
    ),
    (
        "batch",
        "retry.backoff",
        {"kind": "exponential", "multiplier": True},
        "retry.backoff.multiplier",
        "valid number",
    ),
    (
        "batch",
        "retry.backoff",
        {"kind": "exponential", "initial": "x"},
        "retry.backoff.initial",
        "invalid duration",
    ),
    (
        "batch",
        "retry.backoff",
        {"kind": "exponential", "max": True},
        "retry.backoff.max",
        "invalid duration",
    ),
    (
        "batch",
        "retry.retry_on_exit_codes",
        [256],
        "retry.retry_on_exit_codes[0]",
        "less than or equal to 255",
    ),
    (
        "batch",
        "retry.retry_on_exit_codes",
        [-1],
        "retry.retry_on_exit_codes[0]",
        "greater than or equal to 0",
    ),
    ("batch", "retry.retry_on_exit_codes", [True], "retry.retry_on_exit_codes[0]", "valid integer"),
    ("batch", "retry.retry_on_exit_codes", "1", None, "valid list"),
    (
        "batch",
        "retry.never_retry_on_exit_codes",
        [300],
        "retry.never_retry_on_exit_codes[0]",
        "255",
    ),
    ("batch", "retry.retry_on_runtime_limit", "yes", None, "boolean"),
    ("batch", "retry.retry_on_runtime_limit", 1, None, "boolean"),
    # service
    ("service", "instances", 3, None, "field of kind 'batch'"),
    ("service", "capacity.min", -1, None, "greater than or equal to 0"),
    ("service", "capacity.desired", True, None, "valid integer"),
    ("service", "capacity.max", 10_001, None, "less than or equal to 10000"),
    ("service", "capacity", {"min": 2, "desired": 1}, None, "min <= desired <= max"),
    ("service", "capacity", {"desired": 20}, None, "desired=20, max=10"),
    ("service", "health_check", {"port": "http"}, None, "'http', 'tcp', 'exec'"),
    ("service", "health_check", {"kind": "grpc"}, None, "unknown kind 'grpc'"),
    (
        "service",
        "health_check",
        {"kind": "http", "port": "grpc"},
        None,
        "add it to container.ports",
    ),
    ("service", "health_check", {"kind": "http"}, "health_check.port", "required"),
    (
        "service",
        "health_check",
        {**HTTP, "path": "healthz"},
        "health_check.path",
        "start it with '/'",
    ),
    ("service", "health_check", {**HTTP, "path": "/a b"}, "health_check.path", "no spaces"),
    (
        "service",
        "health_check",
        {**HTTP, "interval": "0s"},
        "health_check.interval",
        "greater than 0s",
    ),
    (
        "service",
        "health_check",
        {**HTTP, "timeout": "x"},
        "health_check.timeout",
        "invalid duration",
    ),
    (
        "service",
        "health_check",
        {**HTTP, "healthy_threshold": 0},
        "health_check.healthy_threshold",
        "greater",
    ),
    (
        "service",
        "health_check",
        {**HTTP, "unhealthy_threshold": True},
        "health_check.unhealthy_threshold",
        "integer",
    ),
    (
        "service",
        "health_check",
        {**HTTP, "start_grace_period": "-1s"},
        "health_check.start_grace_period",
        "invalid duration",
    ),
    ("service", "health_check", {**HTTP, "command": ["x"]}, "health_check.command", "kind 'exec'"),
    (
        "service",
        "health_check",
        {"kind": "exec", "command": []},
        "health_check.command",
        "at least 1 item",
    ),
    (
        "service",
        "health_check",
        {"kind": "exec", "command": ""},
        "health_check.command",
        "at least 1 item",
    ),
    ("service", "health_check", {"kind": "exec"}, "health_check.command", "required"),
    (
        "service",
        "health_check",
        {"kind": "tcp", "port": "HTTP"},
        "health_check.port",
        "invalid port name",
    ),
    ("service", "update", "rolling", None, "must be a mapping"),
    ("service", "disruption_budget", 1, None, "must be a mapping"),
    ("service", "update.max_surge", -1, None, "greater than or equal to 0"),
    ("service", "update.max_unavailable", True, None, "valid integer"),
    ("service", "update.healthy_deadline", "0s", None, "greater than 0s"),
    ("service", "update", {"max_surge": 0, "max_unavailable": 0}, None, "cannot both be 0"),
    ("service", "disruption_budget.max_unavailable", "101%", None, "'25%'"),
    ("service", "disruption_budget.max_unavailable", -1, None, "count like 1"),
    ("service", "disruption_budget.max_unavailable", True, None, "count like 1"),
    ("service", "disruption_budget.max_unavailable", "25", None, "percentage"),
    ("service", "disruption_budget.max_unavailable", "25%\n", None, "percentage"),
    ("service", "disruption_budget.max_unavailable", 2.5, None, "count like 1"),
    ("service", "autoscaling", [], None, "must be a mapping"),
    ("service", "autoscaling.paused", "yes", None, "boolean"),
    ("service", "autoscaling.window", "5s", "autoscaling", "interval"),
    ("service", "load_balancers", ["my-alb"], "load_balancers[0]", "target group ARN"),
    (
        "service",
        "load_balancer_check_interval",
        "500ms",
        "load_balancer_check_interval",
        "at least 1s (got 500ms)",
    ),
    (
        "service",
        "load_balancer_check_interval",
        "often",
        "load_balancer_check_interval",
        "invalid duration",
    ),
    ("batch", "load_balancer_check_interval", "30s", None, "unknown field"),
    (
        "service",
        "autoscaling.policies",
        [{**AS_TARGET, "metric_source": {"prometheus": PROMETHEUS}}],
        "autoscaling.policies[0]",
        "metric_source reads a custom metric",
    ),
    (
        "service",
        "autoscaling.policies",
        [
            {
                **AS_TARGET,
                "metric": "custom:q",
                "metric_source": {"prometheus": {**PROMETHEUS, "labels": {"1x": "b"}}},
            }
        ],
        "autoscaling.policies[0].metric_source.prometheus.labels",
        "invalid label name",
    ),
    (
        "service",
        "autoscaling.policies",
        [
            {
                **AS_TARGET,
                "metric": "custom:q",
                "metric_source": {"prometheus": {**PROMETHEUS, "rate": "sometimes"}},
            }
        ],
        "autoscaling.policies[0].metric_source.prometheus.rate",
        "valid boolean",
    ),
    (
        "service",
        "autoscaling.policies",
        [
            {
                **AS_TARGET,
                "metric": "custom:q",
                "metric_source": {"prometheus": {**PROMETHEUS, "quantile": 1}},
            }
        ],
        "autoscaling.policies[0].metric_source.prometheus.quantile",
        "less than 1",
    ),
    ("batch", "autoscaling", {}, None, "unknown field 'autoscaling'"),
    (
        "service",
        "autoscaling.policies",
        [{**AS_TARGET, "kind": "x"}],
        "autoscaling.policies[0]",
        "kind",
    ),
    (
        "service",
        "autoscaling.policies",
        [{**AS_TARGET, "name": "A"}],
        "autoscaling.policies[0].name",
        "invalid name",
    ),
    (
        "service",
        "autoscaling.policies",
        [{**AS_TARGET, "metric": "mem"}],
        "autoscaling.policies[0].metric",
        "cpu_utilization, requests_per_task or custom:<name>",
    ),
    (
        "service",
        "autoscaling.policies",
        [{**AS_TARGET, "target": 0}],
        "autoscaling.policies[0].target",
        "greater than 0",
    ),
    (
        "service",
        "autoscaling.policies",
        [{**AS_TARGET, "scale_out_cooldown": "x"}],
        "autoscaling.policies[0].scale_out_cooldown",
        "invalid duration",
    ),
    (
        "service",
        "autoscaling.policies",
        [{**AS_TARGET, "scale_in_cooldown": -1}],
        "autoscaling.policies[0].scale_in_cooldown",
        "invalid duration",
    ),
    (
        "service",
        "autoscaling.policies",
        [{**AS_TARGET, "disable_scale_in": "no"}],
        "autoscaling.policies[0].disable_scale_in",
        "boolean",
    ),
    (
        "service",
        "autoscaling.policies",
        [{**AS_TARGET, "tolerance": 0.75}],
        "autoscaling.policies[0].tolerance",
        "less than or equal to 0.5",
    ),
    (
        "service",
        "autoscaling.policies",
        [{**AS_STEP, "threshold": "high"}],
        "autoscaling.policies[0].threshold",
        "number",
    ),
    (
        "service",
        "autoscaling.policies",
        [{**AS_STEP, "adjustment_type": "percent"}],
        "autoscaling.policies[0].adjustment_type",
        "percent_change_in_capacity",
    ),
    (
        "service",
        "autoscaling.policies",
        [{**AS_STEP, "cooldown": "soon"}],
        "autoscaling.policies[0].cooldown",
        "invalid duration",
    ),
    (
        "service",
        "autoscaling.policies",
        [{**AS_STEP, "min_adjustment_magnitude": 2}],
        "autoscaling.policies[0]",
        "percent_change_in_capacity only",
    ),
    (
        "service",
        "autoscaling.policies",
        [{**AS_STEP, "steps": [{"lower": 1, "upper": 0, "adjustment": 1}]}],
        "autoscaling.policies[0].steps[0]",
        "must be below upper",
    ),
    (
        "service",
        "autoscaling.policies",
        [
            {
                **AS_STEP,
                "steps": [{"lower": 0, "upper": 9, "adjustment": 1}, {"lower": 5, "adjustment": 2}],
            }
        ],
        "autoscaling.policies[0].steps",
        "overlap",
    ),
    (
        "service",
        "autoscaling.policies",
        [{**AS_STEP, "steps": [{"lower": 0, "adjustment": 1.5}]}],
        "autoscaling.policies[0].steps[0].adjustment",
        "integer",
    ),
    (
        "service",
        "autoscaling.scheduled",
        [{"name": "a", "cron": "0 8 * *", "min": 1}],
        "autoscaling.scheduled[0].cron",
        "needs 5",
    ),
    (
        "service",
        "autoscaling.scheduled",
        [{"name": "a", "cron": "* * * * *", "min": -1}],
        "autoscaling.scheduled[0].min",
        "greater than or equal to 0",
    ),
    (
        "service",
        "autoscaling.scheduled",
        [{"name": "a", "cron": "* * * * *", "desired": 2, "max": 1}],
        "autoscaling.scheduled[0]",
        "need min <= desired <= max",
    ),
    (
        "service",
        "autoscaling.scheduled",
        [{"name": "a", "cron": "* * * * *"}],
        "autoscaling.scheduled[0]",
        "give at least one",
    ),
]


@pytest.mark.parametrize(("kind", "path", "value"), VALID)
def test_valid(kind: str, path: str, value: Any) -> None:
    job = validate(with_field(kind, path, value))
    assert job.kind == kind


@pytest.mark.parametrize(("kind", "path", "value", "where", "text"), INVALID)
def test_invalid_names_the_field(
    kind: str, path: str, value: Any, where: str | None, text: str
) -> None:
    where = where or path
    with pytest.raises(ValidationError) as info:
        validate(with_field(kind, path, value))
    lines = format_validation_error(info.value, "jobs.yaml", prefix="job")
    pointing = [line for line in lines if line.startswith(f"jobs.yaml: job.{where}: ")]
    assert pointing, f"no error at job.{where}: {lines}"
    assert any(text in line for line in pointing), lines
    for line in lines:
        assert "\n" not in line
        assert "Value error" not in line
        assert "errors.pydantic.dev" not in line
        assert "Input should" not in line


def _mentioned(cases: list[Any]) -> set[str]:
    """Field names a table sets: each part of each path, and the keys of mappings set."""
    names: set[str] = set()
    for case in cases:
        names.update(case[1].split("."))
        names.update(_keys(case[2]))
    return names


def _keys(value: Any) -> set[str]:
    """The keys of every mapping in ``value``, also in lists (volumes, mounts)."""
    if isinstance(value, dict):
        return set(value).union(*(_keys(item) for item in value.values()))
    if isinstance(value, list):
        return set().union(*(_keys(item) for item in value))
    return set()


@pytest.mark.parametrize("table", [VALID, INVALID], ids=["valid", "invalid"])
def test_every_field_has_cases(table: list[Any]) -> None:
    """Both tables cover every field of every model a job is made of."""
    models = [BatchJob, ServiceJob, *_nested_models(BatchJob), *_nested_models(ServiceJob)]
    fields = {name for model in models for name in model.model_fields}
    assert fields - _mentioned(table) == set()


def _nested_models(model: type[BaseModel]) -> set[type[BaseModel]]:
    found: set[type[BaseModel]] = set()
    for field in model.model_fields.values():
        for arg in _types_in(field.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel) and arg not in found:
                found |= {arg, *_nested_models(arg)}
    return found


def _types_in(annotation: Any) -> list[Any]:
    args = get_args(annotation)
    return [annotation, *(t for arg in args for t in _types_in(arg))]
