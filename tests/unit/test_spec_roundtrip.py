"""Generated jobs survive model -> JSON -> model and model -> YAML -> model unchanged."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import yaml
from hypothesis import HealthCheck as Health
from hypothesis import given, settings
from hypothesis import strategies as st

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
from titus_flow.spec.base import NAME_PATTERN
from titus_flow.spec.container import ENV_NAME_PATTERN, PORT_NAME_PATTERN

# -- strategies ---------------------------------------------------------------------------

# Any text a user may put in a value: everything but NUL and surrogates (not UTF-8).
text = st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=20)
names = st.from_regex(NAME_PATTERN, fullmatch=True)
port_names = st.from_regex(PORT_NAME_PATTERN, fullmatch=True)
env_names = st.from_regex(ENV_NAME_PATTERN, fullmatch=True)
label_keys = st.from_regex(r"[a-z][a-z0-9.-]{0,10}[a-z0-9]", fullmatch=True).filter(
    lambda key: not key.startswith("titus-flow.")
)
images = st.builds(
    "{}{}{}".format,
    st.sampled_from(["", "ghcr.io/", "localhost:5000/", "registry.example.com/team/"]),
    st.from_regex(r"[a-z0-9]+([._-][a-z0-9]+)*", fullmatch=True),
    st.sampled_from(["", ":latest", ":1.36", ":v1.2-rc_3", "@sha256:" + "0f" * 32]),
)
durations = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10_000))
positive_durations = st.timedeltas(
    min_value=timedelta(microseconds=1), max_value=timedelta(days=365)
)
mebibytes = st.integers(min_value=6, max_value=2**40)
small = st.integers(min_value=0, max_value=10_000)
exit_codes = st.lists(st.integers(min_value=0, max_value=255), max_size=4)

containers = st.builds(
    Container,
    image=images,
    entrypoint=st.none() | st.lists(text, max_size=3),
    command=st.none() | st.lists(text, max_size=4),
    env=st.dictionaries(env_names, text, max_size=4),
    working_dir=st.none() | st.from_regex(r"/[a-z0-9/_.-]{0,20}", fullmatch=True),
    user=st.none() | st.sampled_from(["root", "1000", "1000:1000", "nobody"]),
    ports=st.lists(port_names, max_size=3, unique=True),
    labels=st.dictionaries(label_keys, text, max_size=3),
)

resources = st.builds(
    Resources,
    cpu=st.floats(min_value=0.001, max_value=1024, allow_nan=False),
    memory=mebibytes,
    disk=st.integers(min_value=0, max_value=2**40),
    network_mbps=small,
    gpu=st.integers(min_value=0, max_value=64),
)

constraint_sets = st.builds(
    ConstraintSet,
    unique_host=st.booleans(),
    zone_balance=st.booleans(),
    attributes=st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9_.-]{0,10}", fullmatch=True),
        text | st.lists(text, min_size=1, max_size=3),
        max_size=3,
    ),
)
constraints = st.builds(Constraints, hard=constraint_sets, soft=constraint_sets)


@st.composite
def exponential_backoffs(draw: st.DrawFn) -> ExponentialBackoff:
    low, high = sorted(draw(st.lists(durations, min_size=2, max_size=2)))
    multiplier = draw(st.floats(min_value=1, max_value=100))
    return ExponentialBackoff(initial=low, max=high, multiplier=multiplier)


@st.composite
def retries(draw: st.DrawFn) -> Retry:
    never = draw(exit_codes)
    only = draw(st.none() | exit_codes.map(lambda codes: [c for c in codes if c not in never]))
    return Retry(
        attempts=draw(st.integers(min_value=1, max_value=100)),
        backoff=draw(
            st.builds(ImmediateBackoff)
            | st.builds(FixedBackoff, delay=durations)
            | exponential_backoffs()
        ),
        retry_on_exit_codes=only,
        never_retry_on_exit_codes=never,
        retry_on_runtime_limit=draw(st.booleans()),
    )


def common_fields(name: str) -> dict[str, Any]:
    return {
        "name": st.just(name),
        "owner": text,
        "resources": resources,
        "constraints": constraints,
        "capacity_group": names,
        "labels": st.dictionaries(label_keys, text, max_size=3),
    }


@st.composite
def batch_jobs(draw: st.DrawFn) -> BatchJob:
    name = draw(names)
    others = st.lists(names.filter(lambda other: other != name), max_size=3, unique=True)
    return draw(
        st.builds(
            BatchJob,
            container=containers,
            instances=st.integers(min_value=1, max_value=10_000),
            retry=retries(),
            runtime_limit=st.none() | positive_durations,
            depends_on=others,
            **common_fields(name),
        )
    )


@st.composite
def capacities(draw: st.DrawFn) -> Capacity:
    low, mid, high = sorted(draw(st.lists(small, min_size=3, max_size=3)))
    return Capacity(min=low, desired=mid, max=high)


def timing() -> dict[str, Any]:
    return {
        "interval": positive_durations,
        "timeout": positive_durations,
        "healthy_threshold": st.integers(min_value=1, max_value=100),
        "unhealthy_threshold": st.integers(min_value=1, max_value=100),
        "start_grace_period": durations,
    }


@st.composite
def service_jobs(draw: st.DrawFn) -> ServiceJob:
    container = draw(containers)
    exec_check = st.builds(ExecCheck, command=st.lists(text, min_size=1, max_size=3), **timing())
    checks: st.SearchStrategy[Any] = st.none() | exec_check
    if container.ports:  # http and tcp checks need a declared port
        port = st.sampled_from(list(container.ports))
        checks |= st.builds(
            HttpCheck, port=port, path=st.from_regex(r"/[a-z/]{0,10}", fullmatch=True), **timing()
        )
        checks |= st.builds(TcpCheck, port=port, **timing())
    surge, unavailable = draw(st.tuples(small, small).filter(any))  # not both 0
    updates = st.builds(
        RollingUpdate,
        max_surge=st.just(surge),
        max_unavailable=st.just(unavailable),
        healthy_deadline=positive_durations,
    )
    budgets = st.builds(
        DisruptionBudget,
        max_unavailable=small | st.integers(0, 100).map("{}%".format),
    )
    return draw(
        st.builds(
            ServiceJob,
            container=st.just(container),
            capacity=capacities(),
            health_check=checks,
            update=updates,
            disruption_budget=budgets,
            **common_fields(draw(names)),
        )
    )


jobs = batch_jobs() | service_jobs()

# -- properties ---------------------------------------------------------------------------

ROUND_TRIP = settings(max_examples=100, deadline=None, suppress_health_check=[Health.too_slow])


@ROUND_TRIP
@given(jobs)
def test_json_round_trip(job: BatchJob | ServiceJob) -> None:
    assert JOB_ADAPTER.validate_json(job.model_dump_json()) == job
    assert JOB_ADAPTER.validate_python(json.loads(JOB_ADAPTER.dump_json(job))) == job


@ROUND_TRIP
@given(jobs)
def test_yaml_round_trip(job: BatchJob | ServiceJob) -> None:
    text = yaml.safe_dump(job.model_dump(mode="json"))
    assert JOB_ADAPTER.validate_python(yaml.safe_load(text)) == job


@ROUND_TRIP
@given(jobs)
def test_python_round_trip_and_hash(job: BatchJob | ServiceJob) -> None:
    again = type(job).model_validate(job.model_dump())
    assert again == job
    assert hash(again) == hash(job)
