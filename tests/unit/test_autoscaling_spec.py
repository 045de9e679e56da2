"""Autoscaling in the job spec: what a valid policy is, and how a bad one is reported."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_fork import run_cli
from pydantic import ValidationError

from titus_flow.errors import format_validation_error
from titus_flow.spec import JOB_ADAPTER, ServiceJob, StepPolicy, TargetTrackingPolicy
from titus_flow.spec.autoscaling import cron_errors

ROOT = Path(__file__).resolve().parents[2]

SERVICE: dict[str, Any] = {
    "kind": "service",
    "name": "web",
    "container": {"image": "busybox", "ports": ["http"]},
    "capacity": {"min": 1, "desired": 2, "max": 10},
}
TARGET = {"name": "rps", "kind": "target_tracking", "metric": "requests_per_task", "target": 100}
STEP = {
    "name": "cpu-high",
    "kind": "step",
    "metric": "cpu_utilization",
    "threshold": 70,
    "steps": [{"lower": 0, "upper": 15, "adjustment": 1}, {"lower": 15, "adjustment": 3}],
}


def errors(autoscaling: dict[str, Any]) -> list[str]:
    """The messages for a service job carrying ``autoscaling``."""
    with pytest.raises(ValidationError) as info:
        JOB_ADAPTER.validate_python({**SERVICE, "autoscaling": autoscaling})
    return format_validation_error(info.value, "jobs.yaml", "web")


def test_a_service_without_autoscaling_is_unchanged() -> None:
    job = JOB_ADAPTER.validate_python(SERVICE)
    assert isinstance(job, ServiceJob) and job.autoscaling is None


def test_valid_policies_round_trip() -> None:
    scheduled = [{"name": "morning", "cron": "0 8 * * mon-fri", "min": 4}]
    spec = {"policies": [TARGET, STEP], "scheduled": scheduled}
    job = JOB_ADAPTER.validate_python({**SERVICE, "autoscaling": spec})
    assert isinstance(job, ServiceJob) and job.autoscaling is not None
    target, step = job.autoscaling.policies
    assert isinstance(target, TargetTrackingPolicy) and target.scale_in_cooldown.seconds == 300
    assert isinstance(step, StepPolicy) and step.adjustment_type == "change_in_capacity"
    dumped = job.model_dump(mode="json")
    assert JOB_ADAPTER.validate_python(dumped) == job


def test_custom_metrics_are_accepted() -> None:
    policy = TargetTrackingPolicy(name="q", metric="custom:queue_depth", target=5)
    assert policy.metric == "custom:queue_depth"


def test_batch_jobs_have_no_autoscaling() -> None:
    batch = {"kind": "batch", "name": "b", "container": {"image": "busybox"}}
    with pytest.raises(ValidationError) as info:
        JOB_ADAPTER.validate_python({**batch, "autoscaling": {"policies": [TARGET]}})
    (line,) = format_validation_error(info.value, "jobs.yaml", "b")
    assert "b.autoscaling: unknown field 'autoscaling'" in line


@pytest.mark.parametrize(
    ("autoscaling", "expected"),
    [
        (
            {"policies": [{**TARGET, "target": 0}]},
            "web.autoscaling.policies[0].target: must be greater than 0 (got 0.0)",
        ),
        (
            {"policies": [{**TARGET, "target": -5}]},
            "web.autoscaling.policies[0].target: must be greater than 0",
        ),
        (
            {"policies": [{**TARGET, "target": True}]},
            "web.autoscaling.policies[0].target: expected a number, got True",
        ),
        (
            {"policies": [{**TARGET, "metric": "memory"}]},
            "web.autoscaling.policies[0].metric: unknown metric 'memory': use cpu_utilization,"
            " requests_per_task or custom:<name>",
        ),
        (
            {"policies": [{**TARGET, "metric": "custom:"}]},
            "web.autoscaling.policies[0].metric: unknown metric 'custom:'",
        ),
        (
            {"policies": [{**TARGET, "scale_in_cooldown": "soon"}]},
            "web.autoscaling.policies[0].scale_in_cooldown: invalid duration 'soon'",
        ),
        (
            {"policies": [{**TARGET, "cooldown": "1m"}]},
            "web.autoscaling.policies[0].cooldown: unknown field 'cooldown' for kind"
            " 'target_tracking': it is a field of kind 'step'",
        ),
        (
            {"policies": [{**TARGET, "kind": "predictive"}]},
            "web.autoscaling.policies[0]: ",
        ),
        (
            {"policies": [TARGET, {**STEP, "name": "rps"}]},
            "web.autoscaling.policies: policy name(s) rps used twice",
        ),
        (
            {
                "policies": [
                    {
                        **STEP,
                        "steps": [
                            {"lower": 0, "upper": 20, "adjustment": 1},
                            {"lower": 10, "adjustment": 3},
                        ],
                    }
                ]
            },
            "web.autoscaling.policies[0].steps: steps [0.0, 20.0) and [10.0, +inf) overlap",
        ),
        (
            {
                "policies": [
                    {
                        **STEP,
                        "steps": [{"upper": 0, "adjustment": -1}, {"lower": 5, "adjustment": 2}],
                    }
                ]
            },
            "web.autoscaling.policies[0].steps: gap between steps [-inf, 0.0) and [5.0, +inf)",
        ),
        (
            {"policies": [{**STEP, "steps": [{"adjustment": 1}, {"adjustment": 2}]}]},
            "web.autoscaling.policies[0].steps: more than one step has no lower bound",
        ),
        (
            {"policies": [{**STEP, "steps": [{"lower": 5, "upper": 5, "adjustment": 1}]}]},
            "web.autoscaling.policies[0].steps[0]: lower (5.0) must be below upper (5.0)",
        ),
        (
            {"policies": [{**STEP, "steps": []}]},
            "web.autoscaling.policies[0].steps: ",
        ),
        (
            {"policies": [{**STEP, "min_adjustment_magnitude": 2}]},
            "web.autoscaling.policies[0]: min_adjustment_magnitude applies to adjustment_type"
            " percent_change_in_capacity only",
        ),
        (
            {
                "policies": [
                    {
                        **STEP,
                        "adjustment_type": "exact_capacity",
                        "steps": [{"lower": 0, "adjustment": -1}],
                    }
                ]
            },
            "web.autoscaling.policies[0]: with adjustment_type exact_capacity each adjustment",
        ),
        (
            {"policies": [{**STEP, "adjustment_type": "percent"}]},
            "web.autoscaling.policies[0].adjustment_type: ",
        ),
        (
            {"scheduled": [{"name": "a", "cron": "0 8 * *", "min": 1}]},
            "web.autoscaling.scheduled[0].cron: cron '0 8 * *' has 4 field(s), needs 5",
        ),
        (
            {"scheduled": [{"name": "a", "cron": "0 8 * * *"}]},
            "web.autoscaling.scheduled[0]: a scheduled action sets min, desired or max",
        ),
        (
            {"scheduled": [{"name": "a", "cron": "0 8 * * *", "min": 5, "max": 2}]},
            "web.autoscaling.scheduled[0]: need min <= desired <= max, got min=5, max=2",
        ),
        (
            {"scheduled": [{"name": "a", "cron": "0 8 * * *", "desired": 10_001}]},
            "web.autoscaling.scheduled[0].desired: ",
        ),
        (
            {"scheduled": [{"name": "a", "cron": "0 8 * * *", "min": 1}] * 2},
            "web.autoscaling.scheduled: scheduled action name(s) a used twice",
        ),
        ({"paused": "yes"}, "web.autoscaling.paused: "),
    ],
)
def test_bad_autoscaling_names_the_field(autoscaling: dict[str, Any], expected: str) -> None:
    lines = errors(autoscaling)
    assert any(line.startswith(f"jobs.yaml: {expected}") for line in lines), lines


@pytest.mark.parametrize(
    "expression",
    [
        "* * * * *",
        "0 8 * * mon-fri",
        "*/15 0-6,22-23 1 jan-mar 0",
        "30 2 1,15 */2 7",
        "0 0 * DEC SUN",
    ],
)
def test_good_cron(expression: str) -> None:
    assert cron_errors(expression) == []


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("* * * *", "has 4 field(s), needs 5"),
        ("60 * * * *", "minute '60' is out of range; use 0-59"),
        ("* 24 * * *", "hour '24' is out of range; use 0-23"),
        ("* * 0 * *", "day of month '0' is out of range; use 1-31"),
        ("* * * 13 *", "month '13' is out of range; use 1-12 or jan-dec"),
        ("* * * * fri-mon", "day of week range 'fri-mon' runs backwards"),
        ("*/0 * * * *", "minute '*/0' is not a cron field"),
        ("? * * * *", "minute '?' is not a cron field"),
    ],
)
def test_bad_cron(expression: str, error: str) -> None:
    (message,) = cron_errors(expression)
    assert error in message


def run_validate(path: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(["validate", str(path)], timeout=60)


def test_validate_exits_2_on_a_bad_policy_and_accepts_a_good_one(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump({**SERVICE, "autoscaling": {"policies": [{**TARGET, "target": 0}]}})
    )
    result = run_validate(bad)
    assert result.returncode == 2
    assert "web.autoscaling.policies[0].target: must be greater than 0" in result.stderr
    assert "Traceback" not in result.stderr
    good = tmp_path / "good.yaml"
    morning = {"name": "morning", "cron": "0 8 * * mon-fri", "min": 2}
    autoscaling = {"policies": [TARGET], "scheduled": [morning]}
    good.write_text(yaml.safe_dump({**SERVICE, "autoscaling": autoscaling}))
    result = run_validate(good)
    assert result.returncode == 0, result.stderr
    assert "ok  service  web" in result.stdout
    assert "warning" not in result.stderr  # policies are evaluated, scheduled actions run


def test_the_worked_example_in_the_docs_is_valid() -> None:
    text = (ROOT / "docs" / "services.md").read_text()
    (example,) = re.findall(r"```yaml\n(# worked example.*?)```", text, re.DOTALL)
    job = JOB_ADAPTER.validate_python(yaml.safe_load(example))
    assert isinstance(job, ServiceJob) and job.autoscaling is not None
    assert [p.kind for p in job.autoscaling.policies] == ["target_tracking"]
    assert job.autoscaling.scheduled
