"""Load balancer rules as pure functions: which targets to register, drain, repair."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from titus_flow import Container, ExecCheck, HttpCheck, ServiceJob
from titus_flow.contracts.load_balancers import (
    LoadBalancersView,
    RegisteredTarget,
    TargetGroupView,
    TargetState,
    TargetView,
)
from titus_flow.load_balancers import rules
from titus_flow.load_balancers.rules import Wanted
from titus_flow.spec.load_balancers import is_local, region_of

ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/50dc6c495c0c9188"
S = TargetState


def row(task: str, state: TargetState, target: str = "10.0.0.1", port: int = 8080) -> TargetView:
    return TargetView(task_id=task, target=target, port=port, state=state)


def view(*groups: tuple[str, list[TargetView]]) -> LoadBalancersView:
    return LoadBalancersView(
        groups=[
            TargetGroupView(target_group=name, drain=timedelta(seconds=30), targets=targets)
            for name, targets in groups
        ]
    )


def wanted(task: str, *groups: str, port: int = 8080) -> dict[str, Wanted]:
    return {task: Wanted(task, "agent-1", port, frozenset(groups))}


# --- spec ---------------------------------------------------------------------


def web(**fields: object) -> ServiceJob:
    raw: dict[str, object] = {
        "name": "web",
        "container": {"image": "busybox", "command": "httpd", "ports": ["admin", "http"]},
        **fields,
    }
    return ServiceJob.model_validate(raw)


def test_spec_accepts_arns_and_local_groups() -> None:
    job = web(load_balancers=[ARN, "local:web"])
    assert job.load_balancers == [ARN, "local:web"]
    assert is_local("local:web") and not is_local(ARN)
    assert region_of(ARN) == "us-east-1"


@pytest.mark.parametrize(
    ("groups", "error"),
    [
        (["web"], "target group ARN"),
        (["arn:aws:elasticloadbalancing:us-east-1:1234:targetgroup/web/abc"], "target group ARN"),
        (["local:Web"], "local:<name>"),
        (["local:web", "local:web"], "listed twice"),
    ],
)
def test_spec_rejects_bad_groups(groups: list[str], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        web(load_balancers=groups)


def test_load_balancers_need_a_port() -> None:
    with pytest.raises(ValidationError, match=r"container\.ports is empty"):
        ServiceJob(
            name="web",
            container=Container(image="busybox", command="sleep 9"),
            load_balancers=["local:web"],
        )


def test_registered_port_is_the_health_checks_else_the_first() -> None:
    assert web().target_port() == "admin"
    assert web(health_check=HttpCheck(port="http")).target_port() == "http"
    assert web(health_check=ExecCheck(command=["true"])).target_port() == "admin"
    assert ServiceJob(name="w", container=Container(image="b", command="c")).target_port() is None


# --- changes ----------------------------------------------------------------------


def test_a_wanted_task_is_registered_in_each_of_its_groups() -> None:
    v = view(("local:web", []), (ARN, []))
    found = rules.changes(v, wanted("t-0", "local:web", ARN))
    assert [(c.target_group, [e.task_id for e in c.register], c.deregister) for c in found] == [
        ("local:web", ["t-0"], ()),
        (ARN, ["t-0"], ()),
    ]


def test_a_task_no_longer_wanted_is_deregistered_once() -> None:
    v = view(("local:web", [row("t-0", S.REGISTERED), row("t-1", S.DRAINING)]))
    [change] = rules.changes(v, {})
    assert [t.task_id for t in change.deregister] == ["t-0"] and not change.register
    rules.set_state(v.groups[0], change.deregister, S.DRAINING)
    assert rules.changes(v, {}) == []


@pytest.mark.parametrize(
    ("state", "registers"),
    [
        (S.REGISTERING, True),  # a failed registration: tried again
        (S.REGISTERED, False),
        (S.DRAINING, False),  # drains out first
        (S.DEREGISTERED, True),  # healthy again
    ],
)
def test_registration_of_a_wanted_task_by_state(state: TargetState, registers: bool) -> None:
    v = view(("local:web", [row("t-0", state)]))
    found = rules.changes(v, wanted("t-0", "local:web"))
    assert bool(found and found[0].register) is registers


def test_a_group_the_tasks_revision_does_not_list_is_left() -> None:
    v = view(("local:old", [row("t-0", S.REGISTERED)]), ("local:new", []))
    found = rules.changes(v, wanted("t-0", "local:new"))
    assert [(c.target_group, len(c.register), len(c.deregister)) for c in found] == [
        ("local:old", 0, 1),
        ("local:new", 1, 0),
    ]


def test_ensure_groups_adds_local_groups_and_described_aws_ones() -> None:
    v = LoadBalancersView(groups=[])
    rules.ensure_groups(v, ["local:web", ARN], {})
    assert [(g.target_group, g.drain) for g in v.groups] == [("local:web", rules.LOCAL_DRAIN)]
    rules.ensure_groups(v, ["local:web", ARN], {ARN: timedelta(seconds=300)})
    assert [g.drain for g in v.groups] == [rules.LOCAL_DRAIN, timedelta(seconds=300)]


# --- draining ----------------------------------------------------------------------


def test_serving_and_drain_of_a_task() -> None:
    v = view(("local:a", [row("t-0", S.DRAINING)]), (ARN, [row("t-0", S.REGISTERED)]))
    v.groups[0].drain = timedelta(seconds=2)
    assert rules.serving(v, "t-0")
    rules.set_state(v.groups[1], v.groups[1].targets, S.DRAINING)
    assert not rules.serving(v, "t-0")
    assert rules.drain_of(v, ["t-0"]) == timedelta(seconds=30)
    assert rules.drain_of(v, ["t-9"]) == timedelta(0)
    rules.drained(v, ["t-0"])
    assert {t.state for _, t in rules.of_task(v, "t-0")} == {S.DEREGISTERED}


def test_prune_keeps_live_tasks_and_the_latest_deregistered() -> None:
    gone = [row(f"old-{i}", S.DEREGISTERED) for i in range(rules.DEREGISTERED_KEPT + 5)]
    v = view(("local:web", [*gone, row("t-0", S.DEREGISTERED), row("t-1", S.DRAINING)]))
    rules.prune(v, ["t-0"])
    kept = [t.task_id for t in v.groups[0].targets]
    assert kept[-2:] == ["t-0", "t-1"]  # live, and a finished task still draining
    assert len(kept) == rules.DEREGISTERED_KEPT + 2
    assert kept[0] == "old-5"


def test_local_targets_are_on_loopback() -> None:
    [change] = rules.changes(view(("local:web", [])), wanted("t-0", "local:web", port=31000))
    [target] = rules.local_targets(change.register)
    assert (target.target, target.port) == ("127.0.0.1", 31000)


def test_registration_states_for_describe() -> None:
    v = view(
        ("local:a", [row("t-0", S.REGISTERED), row("t-1", S.DRAINING)]),
        ("local:b", [row("t-0", S.REGISTERED), row("t-1", S.DEREGISTERED)]),
    )
    assert rules.registration_states(v) == {"t-0": "registered", "t-1": "draining,deregistered"}


# --- drift ---------------------------------------------------------------------------


def held(target: str, port: int = 8080, draining: bool = False) -> RegisteredTarget:
    return RegisteredTarget(target=target, port=port, draining=draining)


def test_a_target_removed_by_hand_is_missing() -> None:
    g = view(
        (ARN, [row("t-0", S.REGISTERED, "10.0.0.1"), row("t-1", S.REGISTERED, "10.0.0.2")])
    ).groups[0]
    found = rules.drift(g, [held("10.0.0.1"), held("10.0.0.2", draining=True)])
    assert [t.task_id for t in found.missing] == ["t-1"] and found.extra == []


def test_a_deregistered_target_back_in_aws_is_extra_but_others_targets_are_left() -> None:
    g = view(
        (ARN, [row("t-0", S.DEREGISTERED, "10.0.0.1"), row("t-1", S.REGISTERED, "10.0.0.2")])
    ).groups[0]
    found = rules.drift(g, [held("10.0.0.1"), held("10.0.0.2"), held("10.9.9.9")])
    assert [(a.target, a.port) for a in found.extra] == [("10.0.0.1", 8080)]
    assert found.missing == []
    [stray] = rules.strays(found.extra)
    assert (stray.target, stray.port, stray.task_id) == ("10.0.0.1", 8080, "")


def test_an_address_reused_by_a_serving_task_is_not_extra() -> None:
    g = view(
        (ARN, [row("t-0", S.DEREGISTERED, "10.0.0.1"), row("t-5", S.REGISTERED, "10.0.0.1")])
    ).groups[0]
    assert rules.drift(g, [held("10.0.0.1")]).extra == []
