"""Capacity groups: the spec model, its loader, and the ledger placing with groups and tiers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydantic
import pytest

from titus_flow import CapacityGroup, CapacityLimit, Resources
from titus_flow.contracts import (
    AgentInfo,
    PlacementItem,
    PlacementRequest,
    ReleaseRequest,
)
from titus_flow.errors import SpecError, format_validation_error
from titus_flow.ledger import AgentRecord, Ledger, LedgerState, Reservation
from titus_flow.ledger.placement import group_usage, place
from titus_flow.loader import holds_capacity_groups, load_capacity_groups, load_jobs
from titus_flow.scheduler import CapacityGroup as SchedulerGroup
from titus_flow.scheduler import GroupUsage, Tier
from titus_flow.scheduler.from_spec import group_from_spec

# --- the spec model -----------------------------------------------------------------------


def errors_of(raw: dict[str, Any]) -> list[str]:
    """Validation errors as the loader prints them (file ``f.yaml``, prefix the name)."""
    try:
        CapacityGroup.model_validate(raw)
    except pydantic.ValidationError as err:
        return format_validation_error(err, "f.yaml", raw.get("name", ""))
    return []


@pytest.mark.parametrize(
    "raw",
    [
        {"name": "batch"},
        {"name": "default", "tier": "flex", "limit": {"tasks": 0}},  # 0 tasks: paused
        {"name": "prod", "tier": "critical", "guarantee": {"cpu": 8}},
        {"name": "prod", "tier": "critical", "guarantee": {"memory": "16Gi"}},
        {
            "name": "prod",
            "tier": "critical",
            "guarantee": {"cpu": 4, "memory": "8Gi"},
            "limit": {"cpu": 4, "memory": 8192, "tasks": 10},  # a limit may equal the guarantee
        },
        {"name": "a" * 63, "limit": {"cpu": 0.5}},
    ],
)
def test_valid_groups(raw: dict[str, Any]) -> None:
    assert errors_of(raw) == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"tier": "flex"}, "f.yaml: name: required field is missing; add it"),
        ({"name": "Prod"}, "f.yaml: Prod.name: invalid name 'Prod'"),
        ({"name": "p_1"}, "f.yaml: p_1.name: invalid name 'p_1'"),
        (
            {"name": "p", "tier": "gold"},
            "f.yaml: p.tier: must be 'critical' or 'flex' (got 'gold')",
        ),
        (
            {"name": "p", "guarantee": {"cpu": 1}},
            "f.yaml: p.guarantee: only critical groups hold a guarantee:"
            " make the tier critical or remove the guarantee",
        ),
        (
            {"name": "p", "tier": "critical", "guarantee": {}},
            "f.yaml: p.guarantee: guarantees nothing: set cpu and/or memory, or remove guarantee",
        ),
        (
            {"name": "p", "tier": "critical", "guarantee": {"cpu": -1}},
            "f.yaml: p.guarantee.cpu: must be greater than or equal to 0",
        ),
        (
            {"name": "p", "tier": "critical", "guarantee": {"memory": "lots"}},
            "f.yaml: p.guarantee.memory: invalid size 'lots'",
        ),
        ({"name": "p", "limit": {"cpu": "two"}}, "f.yaml: p.limit.cpu: must be a valid number"),
        ({"name": "p", "limit": {"memory": "2Gx"}}, "f.yaml: p.limit.memory: invalid size '2Gx'"),
        ({"name": "p", "limit": {"tasks": 1.5}}, "f.yaml: p.limit.tasks: must be a valid integer"),
        ({"name": "p", "limit": {"tasks": -1}}, "f.yaml: p.limit.tasks: must be greater than"),
        ({"name": "p", "limit": {"task": 1}}, "f.yaml: p.limit.task: unknown field 'task';"),
        ({"name": "p", "limits": {}}, "f.yaml: p.limits: unknown field 'limits'; did you mean"),
        (
            {"name": "p", "tier": "critical", "guarantee": {"cpu": 4}, "limit": {"cpu": 2}},
            "f.yaml: p.limit: cpu 2 is below the guarantee of 4 cores:"
            " raise limit.cpu or lower guarantee.cpu",
        ),
        (
            {
                "name": "p",
                "tier": "critical",
                "guarantee": {"memory": "4Gi"},
                "limit": {"memory": "2Gi"},
            },
            "f.yaml: p.limit: memory 2Gi is below the guarantee of 4Gi:"
            " raise limit.memory or lower guarantee.memory",
        ),
    ],
)
def test_invalid_groups_name_the_field_and_the_fix(raw: dict[str, Any], expected: str) -> None:
    errors = errors_of(raw)
    assert len(errors) == 1, errors
    assert errors[0].startswith(expected), errors


def test_groups_are_frozen_and_round_trip() -> None:
    group = CapacityGroup(
        name="prod", tier="critical", guarantee={"cpu": 2, "memory": "4Gi"}, limit={"tasks": 3}
    )
    with pytest.raises(pydantic.ValidationError):
        group.tier = "flex"  # type: ignore[misc]
    dumped = group.model_dump(mode="json")
    assert dumped["guarantee"] == {"cpu": 2.0, "memory": "4Gi"}
    assert CapacityGroup.model_validate(dumped) == group


def test_converter_to_the_scheduler_library() -> None:
    spec = CapacityGroup(
        name="prod",
        tier="critical",
        guarantee={"cpu": 1.5, "memory": "1Gi"},
        limit={"cpu": 4, "tasks": 10},
    )
    assert group_from_spec(spec) == SchedulerGroup(
        "prod",
        Tier.CRITICAL,
        max_millicores=4000,
        max_memory_mib=None,
        max_tasks=10,
        guaranteed_millicores=1500,
        guaranteed_memory_mib=1024,
    )
    assert group_from_spec(CapacityGroup(name="b")) == SchedulerGroup("b", Tier.FLEX)


# --- place() with groups ------------------------------------------------------------------

NOW = datetime(2024, 1, 1, tzinfo=UTC)


def agent(agent_id: str, cpu: float = 4, memory: str = "8Gi") -> AgentRecord:
    return AgentRecord(
        info=AgentInfo(
            agent_id=agent_id,
            task_queue=f"q-{agent_id}",
            resources=Resources(cpu=cpu, memory=memory),
        ),
        last_seen=NOW,
    )


def item(key: str, group: str = "default", cpu: float = 1, job: str = "job") -> PlacementItem:
    return PlacementItem(
        key=key,
        job_id=job,
        resources=Resources(cpu=cpu, memory=64, disk=0, network_mbps=0),
        capacity_group=group,
    )


def reservation(key: str, group: str, agent_id: str = "a", cpu: float = 1) -> Reservation:
    return Reservation(requester="wf", agent_id=agent_id, item=item(key, group, cpu, job="old"))


def groups(*defined: CapacityGroup) -> dict[str, CapacityGroup]:
    return {group.name: group for group in defined}


BATCH = CapacityGroup(name="batch-flex", limit=CapacityLimit(tasks=2))
PROD = CapacityGroup(name="prod", tier="critical", guarantee={"cpu": 3})


def test_a_group_at_its_task_limit_keeps_further_tasks_pending_with_the_reason() -> None:
    result = place(
        [agent("a")], [], [item(f"t{i}", "batch-flex") for i in range(3)], groups=groups(BATCH)
    )
    assert sorted(result.placed) == ["t0", "t1"]
    assert result.pending == {"t2": "capacity group 'batch-flex' at its limit of 2 tasks"}


def test_a_limit_counts_what_the_group_already_holds() -> None:
    held = [reservation("r0", "batch-flex")]
    result = place(
        [agent("a")],
        held,
        [item("t0", "batch-flex"), item("t1", "batch-flex")],
        groups=groups(BATCH),
    )
    assert list(result.placed) == ["t0"]
    assert "at its limit of 2 tasks" in result.pending["t1"]


def test_cpu_and_memory_limits_say_what_is_used_and_needed() -> None:
    limited = CapacityGroup(name="small", limit={"cpu": 1.5, "memory": "1Gi"})
    result = place(
        [agent("a")], [], [item("t0", "small"), item("t1", "small")], groups=groups(limited)
    )
    assert list(result.placed) == ["t0"]
    assert result.pending["t1"] == (
        "capacity group 'small' at its limit of 1.5 CPU cores: 1 core in use, task needs 1 core"
    )


def test_flex_tasks_cannot_take_a_critical_groups_unused_guarantee() -> None:
    # 4 cores in all, 3 guaranteed to prod and unused: a flex task may take 1, not 2.
    result = place(
        [agent("a", cpu=4)],
        [],
        [item("big", cpu=2), item("small", cpu=1)],
        groups=groups(PROD),
    )
    assert list(result.placed) == ["small"]
    reason = result.pending["big"]
    assert "guaranteed to critical group(s) 'prod'" in reason and "held back from flex" in reason


def test_the_guarantee_shrinks_as_the_critical_group_uses_it() -> None:
    # prod runs 3 cores already: its guarantee is used up, flex may take the rest.
    held = [reservation("p0", "prod", cpu=3)]
    result = place([agent("a", cpu=8)], held, [item("flex", cpu=5)], groups=groups(PROD))
    assert list(result.placed) == ["flex"]


def test_critical_tasks_use_their_guarantee() -> None:
    result = place([agent("a", cpu=4)], [], [item("p", "prod", cpu=4)], groups=groups(PROD))
    assert list(result.placed) == ["p"]


def test_critical_tasks_are_placed_before_flex_ones_queued_earlier() -> None:
    critical = CapacityGroup(name="prod", tier="critical")  # no guarantee: only the tier
    result = place(
        [agent("a", cpu=2)],
        [],
        [item("flex", cpu=2), item("crit", "prod", cpu=2, job="other")],
        groups=groups(critical),
    )
    assert list(result.placed) == ["crit"]
    assert "flex" in result.pending


def test_an_undefined_group_waits_and_the_default_group_needs_no_definition() -> None:
    result = place([agent("a")], [], [item("t0", "nope"), item("t1")], groups={})
    assert list(result.placed) == ["t1"]
    assert result.pending == {
        "t0": "capacity group 'nope' does not exist;"
        " create it with `titus-flow capacity-groups create nope`"
    }


def test_a_defined_default_group_applies_to_jobs_naming_none() -> None:
    default = CapacityGroup(name="default", limit={"tasks": 1})
    result = place([agent("a")], [], [item("t0"), item("t1")], groups=groups(default))
    assert (
        list(result.placed) == ["t0"]
        and "'default' at its limit of 1 tasks" in result.pending["t1"]
    )


def test_group_usage_sums_reservations_per_group() -> None:
    usage = group_usage(
        [reservation("a", "prod", cpu=1.5), reservation("b", "prod"), reservation("c", "x")]
    )
    assert usage == {"prod": GroupUsage(2500, 128, 2), "x": GroupUsage(1000, 64, 1)}


# --- the ledger ---------------------------------------------------------------------------


def ledger_with_agent(cpu: float = 4) -> Ledger:
    ledger = Ledger()
    ledger.register(agent("a", cpu=cpu).info, NOW)
    return ledger


def test_defining_a_missing_group_later_unblocks_its_tasks() -> None:
    ledger = ledger_with_agent()
    ledger.request(PlacementRequest(requester="wf", items=[item("t0", "batch-flex")]))
    first = ledger.iterate()["wf"]
    assert [u.reason for u in first.pending] == [
        "capacity group 'batch-flex' does not exist;"
        " create it with `titus-flow capacity-groups create batch-flex`"
    ]
    ledger.put_capacity_group(BATCH)
    assert [p.key for p in ledger.iterate()["wf"].placed] == ["t0"]


def test_a_lower_limit_holds_new_tasks_and_a_release_lets_them_run() -> None:
    ledger = ledger_with_agent()
    ledger.put_capacity_group(BATCH)
    ledger.request(
        PlacementRequest(requester="wf", items=[item(f"t{i}", "batch-flex") for i in range(3)])
    )
    update = ledger.iterate()["wf"]
    assert [p.key for p in update.placed] == ["t0", "t1"]
    assert [(u.key, u.reason) for u in update.pending] == [
        ("t2", "capacity group 'batch-flex' at its limit of 2 tasks")
    ]
    ledger.release(ReleaseRequest(requester="wf", keys=["t0"]))
    assert [p.key for p in ledger.iterate()["wf"].placed] == ["t2"]


def test_group_views_show_usage_pending_and_the_implicit_default() -> None:
    ledger = ledger_with_agent()
    ledger.put_capacity_group(BATCH)
    ledger.request(
        PlacementRequest(
            requester="wf",
            items=[*(item(f"t{i}", "batch-flex") for i in range(3)), item("d", cpu=0.5)],
        )
    )
    ledger.iterate()
    views = {v.group.name: v for v in ledger.capacity_group_views()}
    assert list(views) == ["batch-flex", "default"]
    batch, default = views["batch-flex"], views["default"]
    assert (batch.defined, batch.used_cpu, batch.used_memory, batch.tasks, batch.pending) == (
        True,
        2.0,
        128,
        2,
        1,
    )
    assert (default.defined, default.group.tier, default.used_cpu, default.tasks) == (
        False,
        "flex",
        0.5,
        1,
    )


def test_groups_survive_continue_as_new() -> None:
    ledger = ledger_with_agent()
    ledger.put_capacity_group(PROD)
    ledger.put_capacity_group(BATCH)
    carried = LedgerState.model_validate_json(ledger.state.model_dump_json())
    assert carried.capacity_groups == {"prod": PROD, "batch-flex": BATCH}
    replaced = CapacityGroup(name="batch-flex", limit={"tasks": 5})
    ledger.put_capacity_group(replaced)
    assert ledger.state.capacity_groups["batch-flex"] == replaced


# --- loading group files ------------------------------------------------------------------

GROUPS_YAML = """\
x-defaults: &limit {tasks: 4}
capacity_groups:
  - name: prod
    tier: critical
    guarantee: {cpu: 8, memory: 16Gi}
    limit: {cpu: 16}
  - name: batch
    limit: *limit
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load_errors(path: Path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_capacity_groups(path)
    return caught.value.messages


def test_yaml_json_and_python_group_files_load(tmp_path: Path) -> None:
    expected = [
        CapacityGroup(
            name="prod", tier="critical", guarantee={"cpu": 8, "memory": "16Gi"}, limit={"cpu": 16}
        ),
        CapacityGroup(name="batch", limit={"tasks": 4}),
    ]
    yaml_file = write(tmp_path, "groups.yaml", GROUPS_YAML)
    json_file = write(
        tmp_path,
        "groups.json",
        '{"capacity_groups": ['
        '{"name": "prod", "tier": "critical", "guarantee": {"cpu": 8, "memory": "16Gi"},'
        ' "limit": {"cpu": 16}}, {"name": "batch", "limit": {"tasks": 4}}]}',
    )
    py_file = write(
        tmp_path,
        "groups.py",
        "from titus_flow import CapacityGroup, CapacityLimit\n"
        "prod = CapacityGroup(name='prod', tier='critical',"
        " guarantee={'cpu': 8, 'memory': '16Gi'}, limit={'cpu': 16})\n"
        "others = [CapacityGroup(name='batch', limit=CapacityLimit(tasks=4))]\n"
        "_template = CapacityGroup(name='skipped')\n",
    )
    factory_file = write(
        tmp_path,
        "factory.py",
        "from titus_flow import CapacityGroup\n"
        "def capacity_groups():\n"
        "    return [CapacityGroup(name='prod', tier='critical',"
        " guarantee={'cpu': 8, 'memory': '16Gi'}, limit={'cpu': 16}),"
        " CapacityGroup(name='batch', limit={'tasks': 4})]\n",
    )
    for path in (yaml_file, json_file, py_file, factory_file):
        assert load_capacity_groups(path) == expected, path
        assert holds_capacity_groups(path)


def test_job_files_are_not_group_files(tmp_path: Path) -> None:
    job = write(tmp_path, "job.yaml", "name: hello\ncontainer: {image: busybox}\n")
    assert not holds_capacity_groups(job)
    assert load_errors(job) == [
        f"{job}:1: expected a top-level capacity_groups: [...] list"
        " (jobs run with `titus-flow run`)"
    ]


def test_every_error_of_a_group_file_is_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.yaml",
        "capacity_groups:\n"
        "  - {name: prod, guarantee: {cpu: 8}}\n"
        "  - {name: batch, limit: {tasks: many}}\n"
        "  - {name: batch}\n"
        "  - {name: batch}\n",
    )
    assert load_errors(path) == [
        f"{path}: prod.guarantee: only critical groups hold a guarantee:"
        " make the tier critical or remove the guarantee",
        f"{path}: batch.limit.tasks: must be a valid integer (got 'many')",
        f"{path}:5: capacity group name 'batch' is already used at {path}:4;"
        " capacity group names must be unique",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("capacity_groups: {name: a}\n", "'capacity_groups' must be a list of capacity groups"),
        ("capacity_groups: [a]\n", "capacity_groups[0]: expected a capacity group mapping"),
        (
            "capacity_groups: []\njobs: []\n",
            "unexpected top-level key(s) jobs next to 'capacity_groups'",
        ),
        ("capacity_groups: []\n", "no capacity groups found; write capacity_groups: [{name: ..."),
        ("- 1\n", "expected a top-level capacity_groups: [...] list"),
    ],
)
def test_bad_group_file_shapes(tmp_path: Path, text: str, expected: str) -> None:
    errors = load_errors(write(tmp_path, "groups.yaml", text))
    assert len(errors) == 1 and expected in errors[0], errors


def test_jobs_and_groups_live_in_separate_files(tmp_path: Path) -> None:
    mixed = write(
        tmp_path,
        "mixed.py",
        "from titus_flow import BatchJob, CapacityGroup, Container\n"
        "prod = CapacityGroup(name='prod')\n"
        "job = BatchJob(name='j', container=Container(image='busybox'))\n",
    )
    assert load_errors(mixed) == [
        f"{mixed}: defines jobs; keep them in a file of their own and run it with `titus-flow run`"
    ]
    with pytest.raises(
        SpecError, match="defines capacity groups; keep them in a file of their own"
    ):
        load_jobs(mixed)
    groups_only = write(tmp_path, "groups.yaml", GROUPS_YAML)
    with pytest.raises(SpecError, match="holds capacity groups, not jobs; apply them with"):
        load_jobs(groups_only)
