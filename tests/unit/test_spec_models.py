"""Behaviour of the spec models: immutability, helpers, defaults and the JSON Schema."""

from __future__ import annotations

import copy
import json
import pickle
import re
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from titus_flow.spec import (
    JOB_ADAPTER,
    BatchJob,
    Capacity,
    Constraints,
    ConstraintSet,
    Container,
    DisruptionBudget,
    ExecCheck,
    ExponentialBackoff,
    FixedBackoff,
    HttpCheck,
    ImmediateBackoff,
    Resources,
    Retry,
    RollingUpdate,
    ServiceJob,
    TcpCheck,
)
from titus_flow.spec.base import FrozenDict, FrozenList

SPEC_MODELS: list[type[BaseModel]] = [
    BatchJob,
    ServiceJob,
    Capacity,
    Constraints,
    ConstraintSet,
    Container,
    DisruptionBudget,
    ExecCheck,
    ExponentialBackoff,
    FixedBackoff,
    HttpCheck,
    ImmediateBackoff,
    Resources,
    Retry,
    RollingUpdate,
    TcpCheck,
]


def a_job() -> BatchJob:
    return BatchJob(
        name="hello",
        container=Container(image="busybox", command="echo hi", env={"A": "1"}, ports=["http"]),
        constraints=Constraints(hard=ConstraintSet(attributes={"zone": ["a", "b"]})),
        labels={"team": "infra"},
        depends_on=["setup"],
        runtime_limit="10m",
    )


# -- immutability -------------------------------------------------------------------------


def test_fields_cannot_be_reassigned() -> None:
    job = a_job()
    with pytest.raises(ValueError, match="frozen"):
        job.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda job: job.labels.update(x="y"),
        lambda job: job.labels.__setitem__("x", "y"),
        lambda job: job.labels.pop("team"),
        lambda job: job.labels.clear(),
        lambda job: job.container.env.setdefault("B", "2"),
        lambda job: job.container.command.append("x"),
        lambda job: job.container.command.extend(["x"]),
        lambda job: job.container.command.__setitem__(0, "x"),
        lambda job: job.container.command.sort(),
        lambda job: job.depends_on.insert(0, "x"),
        lambda job: job.depends_on.pop(),
        lambda job: job.constraints.hard.attributes["zone"].append("c"),
    ],
)
def test_collections_in_fields_are_read_only(mutate: Any) -> None:
    job = a_job()
    before = job.model_dump()
    with pytest.raises(TypeError, match="immutable"):
        mutate(job)
    assert job.model_dump() == before


def test_defaults_are_frozen_too() -> None:
    container = Container(image="busybox")
    assert isinstance(container.env, FrozenDict)
    assert isinstance(container.ports, FrozenList)
    assert isinstance(Retry().never_retry_on_exit_codes, FrozenList)


def test_frozen_collections_still_compare_and_type_as_plain_ones() -> None:
    job = a_job()
    assert job.container.command == ["echo", "hi"]
    assert job.labels == {"team": "infra"}
    assert isinstance(job.labels, dict)
    assert isinstance(job.depends_on, list)
    assert job.model_dump()["labels"] == {"team": "infra"}
    assert type(job.model_dump()["depends_on"]) is list


def test_jobs_are_hashable_and_copyable() -> None:
    job = a_job()
    assert hash(job) == hash(a_job())
    assert {job, a_job()} == {job}
    for copied in (
        pickle.loads(pickle.dumps(job)),
        copy.deepcopy(job),
        copy.copy(job),
        job.model_copy(deep=True),
    ):
        assert copied == job
        assert isinstance(copied.labels, FrozenDict)


# -- helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backoff", "failures", "delay"),
    [
        (ImmediateBackoff(), 3, timedelta(0)),
        (FixedBackoff(delay="7s"), 1, timedelta(seconds=7)),
        (FixedBackoff(delay="7s"), 9, timedelta(seconds=7)),
        (ExponentialBackoff(initial="1s", max="1m"), 0, timedelta(seconds=1)),
        (ExponentialBackoff(initial="1s", max="1m"), 1, timedelta(seconds=1)),
        (ExponentialBackoff(initial="1s", max="1m"), 2, timedelta(seconds=2)),
        (ExponentialBackoff(initial="1s", max="1m"), 4, timedelta(seconds=8)),
        (ExponentialBackoff(initial="1s", max="1m"), 7, timedelta(minutes=1)),
        (ExponentialBackoff(initial="1s", max="1m", multiplier=3), 3, timedelta(seconds=9)),
        # Far past the cap: must not overflow timedelta (or the float power).
        (ExponentialBackoff(initial="1s", max="1m"), 10_000, timedelta(minutes=1)),
        (ExponentialBackoff(initial="1d", max="999999999d", multiplier=100), 500, None),
    ],
)
def test_delay_after(backoff: Any, failures: int, delay: timedelta | None) -> None:
    result = backoff.delay_after(failures)
    assert result == (delay if delay is not None else backoff.max)


def test_retry_rules() -> None:
    default = Retry(attempts=3)
    assert default.retries_exit_code(1)
    only = Retry(retry_on_exit_codes=[137], never_retry_on_exit_codes=[2])
    assert only.retries_exit_code(137)
    assert not only.retries_exit_code(1)
    assert not only.retries_exit_code(2)
    assert Retry(backoff="exponential").backoff == ExponentialBackoff()


@pytest.mark.parametrize(
    ("budget", "desired", "allowed"),
    [
        (1, 10, 1),
        (3, 10, 3),
        (0, 10, 0),  # none, like a PodDisruptionBudget of 0 (the job replaces first)
        (0, 0, 0),
        ("25%", 10, 2),
        ("25%", 1, 1),
        ("10%", 3, 1),  # a percentage that rounds down to 0 still allows 1
        ("100%", 7, 7),
        ("0%", 5, 0),
    ],
)
def test_disruption_budget_allowed(budget: int | str, desired: int, allowed: int) -> None:
    assert DisruptionBudget(max_unavailable=budget).allowed(desired) == allowed


@pytest.mark.parametrize(("cpu", "millicores"), [(1, 1000), (0.5, 500), (0.001, 1), (2.25, 2250)])
def test_millicores(cpu: float, millicores: int) -> None:
    assert Resources(cpu=cpu).millicores == millicores


def test_string_shorthands() -> None:
    container = Container(image="busybox", command="sh -c 'echo hello world'", entrypoint="env")
    assert container.command == ["sh", "-c", "echo hello world"]
    assert container.entrypoint == ["env"]
    assert ExecCheck(command="pg_isready -q").command == ["pg_isready", "-q"]


def test_defaults_serialize_in_short_form() -> None:
    dumped = BatchJob(name="a", container=Container(image="busybox")).model_dump(mode="json")
    assert dumped["resources"]["memory"] == "512Mi"
    assert dumped["resources"]["disk"] == "1Gi"
    assert dumped["retry"]["backoff"] == {"kind": "immediate"}
    update = RollingUpdate().model_dump(mode="json")
    assert update["healthy_deadline"] == "5m"


# -- JSON Schema --------------------------------------------------------------------------


def _properties(schema: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    properties: dict[str, Any] = schema["$defs"][model.__name__]["properties"]
    return properties


@pytest.mark.parametrize("mode", ["validation", "serialization"])
def test_json_schema_structure(mode: Any) -> None:
    schema = JOB_ADAPTER.json_schema(mode=mode)
    json.dumps(schema)  # plain JSON data
    assert schema["discriminator"]["propertyName"] == "kind"
    assert set(schema["discriminator"]["mapping"]) == {"batch", "service"}
    assert {ref["$ref"] for ref in schema["oneOf"]} == {
        "#/$defs/BatchJob",
        "#/$defs/ServiceJob",
    }
    for model in SPEC_MODELS:
        definition = schema["$defs"][model.__name__]
        assert definition["type"] == "object"
        assert definition["additionalProperties"] is False
        assert set(definition["properties"]) == set(model.model_fields), model.__name__


def test_json_schema_quantities() -> None:
    schema = JOB_ADAPTER.json_schema()
    memory = _properties(schema, Resources)["memory"]
    string, number = memory["anyOf"]
    assert re.match(string["pattern"], "512Mi")
    assert re.match(string["pattern"], "2Gi")
    assert number == {"type": "integer", "minimum": 6}  # the field's bound, not just >= 0
    limit = _properties(schema, BatchJob)["runtime_limit"]
    duration = next(s for s in limit["anyOf"] if "anyOf" in s)
    assert re.match(duration["anyOf"][0]["pattern"], "1h30m")


def _defaults(node: Any) -> list[tuple[dict[str, Any], Any]]:
    """Every (property schema, default) pair in a schema."""
    found = []
    if isinstance(node, dict):
        if "default" in node:
            found.append((node, node["default"]))
        for value in node.values():
            found += _defaults(value)
    elif isinstance(node, list):
        for value in node:
            found += _defaults(value)
    return found


def test_json_schema_defaults_match_their_own_schema() -> None:
    """Duration defaults are written "10s" (as serialized), not ISO 8601 "PT10S"."""
    schema = JOB_ADAPTER.json_schema()
    defaults = _defaults(schema["$defs"])
    assert defaults
    for property_schema, default in defaults:
        patterns = [s["pattern"] for s in property_schema.get("anyOf", []) if "pattern" in s]
        if patterns and isinstance(default, str):
            assert any(re.match(p, default) for p in patterns), (property_schema, default)
    assert _properties(schema, HttpCheck)["interval"]["default"] == "10s"
    assert _properties(schema, RollingUpdate)["healthy_deadline"]["default"] == "5m"


def test_json_schema_keeps_name_and_key_patterns() -> None:
    schema = JOB_ADAPTER.json_schema()
    assert "pattern" in _properties(schema, BatchJob)["name"]
    assert "pattern" in _properties(schema, Container)["image"]
    assert "patternProperties" in _properties(schema, Container)["env"]
    assert "patternProperties" in _properties(schema, BatchJob)["labels"]
