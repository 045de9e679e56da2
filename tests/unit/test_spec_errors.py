"""UserError / SpecError and how validation errors are worded for users."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from titus_flow.errors import SpecError, UserError, format_validation_error
from titus_flow.spec import JOB_ADAPTER, BatchJob, Resources, ServiceJob


def errors_of(validate: Any, data: Any, prefix: str = "") -> list[str]:
    with pytest.raises(ValidationError) as info:
        validate(data)
    return format_validation_error(info.value, "jobs.yaml", prefix)


def test_user_error_messages() -> None:
    assert UserError("bad x").messages == ["bad x"]
    assert UserError(["bad x", "bad y"]).messages == ["bad x", "bad y"]
    assert UserError(("a", "b\nc")).messages == ["a", "b", "c"]  # one line each
    assert str(UserError(["a", "b"])) == "a\nb"
    err = SpecError("jobs.yaml: broken")
    assert isinstance(err, UserError)
    assert err.messages == ["jobs.yaml: broken"]
    with pytest.raises(ValueError, match="at least one message"):
        UserError([])


def test_the_example_from_the_design() -> None:
    job = {"kind": "batch", "name": "hello", "container": {"image": "busybox"}}
    lines = errors_of(
        JOB_ADAPTER.validate_python, {**job, "resources": {"memory": "lots"}}, "hello"
    )
    assert lines == [
        "jobs.yaml: hello.resources.memory: invalid size 'lots':"
        ' use a number of MiB or a string like "512Mi" or "2Gi"'
    ]


def test_union_tags_are_not_path_elements() -> None:
    job = {
        "kind": "service",
        "name": "web",
        "container": {"image": "busybox", "ports": ["http"]},
        "health_check": {"kind": "http", "port": "http", "path": "x"},
    }
    assert errors_of(JOB_ADAPTER.validate_python, job, "web") == [
        "jobs.yaml: web.health_check.path: invalid path 'x':"
        " start it with '/' and use no spaces, e.g. /healthz"
    ]
    batch = {
        "kind": "batch",
        "name": "b",
        "container": {"image": "busybox"},
        "retry": {"backoff": {"kind": "exponential", "multiplier": 0}},
    }
    (line,) = errors_of(JOB_ADAPTER.validate_python, batch)
    assert line.startswith("jobs.yaml: retry.backoff.multiplier: must be greater than or equal")


def test_json_input_errors_read_the_same() -> None:
    data = '{"kind": "batch", "name": "a", "container": {"image": "busybox"}, "instances": 0}'
    (line,) = errors_of(JOB_ADAPTER.validate_json, data, "a")
    assert line == "jobs.yaml: a.instances: must be greater than or equal to 1 (got 0)"


def test_missing_and_unknown_kind() -> None:
    assert errors_of(JOB_ADAPTER.validate_python, {"name": "a"}) == [
        "jobs.yaml: missing 'kind': set kind to one of 'batch', 'service'"
    ]
    assert errors_of(JOB_ADAPTER.validate_python, {"kind": "cron"}, "a") == [
        "jobs.yaml: a: unknown kind 'cron': use one of 'batch', 'service'"
    ]


def test_missing_field() -> None:
    assert errors_of(BatchJob.model_validate, {"name": "a"}) == [
        "jobs.yaml: container: required field is missing; add it"
    ]


def test_unknown_field_suggestions() -> None:
    base = {"name": "a", "container": {"image": "busybox"}}
    assert errors_of(BatchJob.model_validate, {**base, "instnaces": 2}) == [
        "jobs.yaml: instnaces: unknown field 'instnaces'; did you mean 'instances'?"
    ]
    assert errors_of(ServiceJob.model_validate, {**base, "depends_on": ["b"]}) == [
        "jobs.yaml: depends_on: unknown field 'depends_on' for kind 'service':"
        " it is a field of kind 'batch'; change kind or remove the field"
    ]
    assert errors_of(BatchJob.model_validate, {**base, "capacty": {}}) == [
        "jobs.yaml: capacty: unknown field 'capacty';"
        " did you mean 'capacity' (a field of kind 'service')?"
    ]
    (line,) = errors_of(Resources.model_validate, {"zzz": 1})
    assert line.endswith("unknown field 'zzz'; known fields: cpu, memory, disk, network_mbps, gpu")


def test_odd_dict_keys_are_quoted() -> None:
    data = {"name": "a", "container": {"image": "busybox", "labels": {"com.example/x": 1}}}
    assert errors_of(BatchJob.model_validate, data) == [
        'jobs.yaml: container.labels["com.example/x"]: must be a string (got 1): quote it, e.g. "1"'
    ]


def test_long_values_are_shortened() -> None:
    (line,) = errors_of(
        BatchJob.model_validate, {"name": "a", "container": {"image": "b"}, "instances": "x" * 500}
    )
    assert len(line) < 200
    assert "..." in line


def test_model_errors_without_a_spec_root_keep_their_path() -> None:
    class Other(BaseModel):
        items: list[int]

    assert errors_of(Other.model_validate, {"items": [1, "x"]}) == [
        "jobs.yaml: items[1]: must be a valid integer, unable to parse string as an integer"
        " (got 'x')"
    ]


def test_every_line_is_one_line_without_noise() -> None:
    data = {
        "kind": "service",
        "name": "web",
        "container": {"image": "Bad Image", "env": {"1": 2}, "ports": ["a", "a"]},
        "capacity": {"min": 5, "desired": 1},
        "health_check": {"kind": "exec", "command": []},
        "update": {"max_surge": 0, "max_unavailable": 0},
        "disruption_budget": {"max_unavailable": "lots"},
        "extra": True,
    }
    lines = errors_of(JOB_ADAPTER.validate_python, data, "web")
    assert len(lines) >= 8
    for line in lines:
        assert line.startswith("jobs.yaml: web.")
        assert "\n" not in line
        assert "Value error" not in line
        assert "errors.pydantic.dev" not in line
        assert ".service." not in line
        assert ".exec." not in line
