from __future__ import annotations

import pytest
from test_scheduler_builders import GIB, agent, task

from titus_flow.scheduler import CapacityGroup, GroupUsage, ReasonCode, TaskRequest, Tier
from titus_flow.scheduler.capacity import CapacityLedger
from titus_flow.scheduler.state import ClusterState

BATCH = CapacityGroup("batch", Tier.FLEX, max_millicores=4000, max_memory_mib=4 * GIB, max_tasks=3)
PROD = CapacityGroup("prod", Tier.CRITICAL, guaranteed_millicores=6000, guaranteed_memory_mib=GIB)


def ledger(usage: dict[str, GroupUsage], free_cpu: int = 8000) -> CapacityLedger:
    # Two agents: 8 cores, 16 GiB in all; free_cpu of it free.
    state = ClusterState(
        [agent("a", free_cpu=min(free_cpu, 4000)), agent("b", free_cpu=max(free_cpu - 4000, 0))]
    )
    return CapacityLedger([BATCH, PROD], usage, state)


@pytest.mark.parametrize(
    ("usage", "request_", "expected"),
    [
        (GroupUsage(0, 0, 0), task("t", group="batch"), None),
        (GroupUsage(3000, 3 * GIB, 2), task("t", group="batch"), None),
        (
            GroupUsage(0, 0, 3),
            task("t", group="batch"),
            "capacity group 'batch' at its limit of 3 tasks",
        ),
        (
            GroupUsage(3500, 0, 1),
            task("t", group="batch"),
            "capacity group 'batch' at its limit of 4 CPU cores: 3.5 cores in use,"
            " task needs 1 core",
        ),
        (
            GroupUsage(0, 3584, 1),
            task("t", group="batch"),
            "capacity group 'batch' at its limit of 4 GiB memory: 3.5 GiB in use, task needs 1 GiB",
        ),
    ],
)
def test_group_limits(usage: GroupUsage, request_: TaskRequest, expected: str | None) -> None:
    refusal = ledger({"batch": usage, "prod": GroupUsage(6000, GIB, 6)}).refusal(request_)
    if expected is None:
        assert refusal is None
    else:
        assert refusal == (ReasonCode.GROUP_LIMIT, expected)


def test_unknown_group_is_unlimited() -> None:
    assert ledger({"prod": GroupUsage(6000, GIB, 6)}).refusal(task("t", group="nope")) is None


@pytest.mark.parametrize(
    ("prod_usage", "request_", "refused"),
    [
        # 8 cores free, 6 of them guaranteed to prod and unused: a flex task may take 2.
        (GroupUsage(), task("t", cpu=2000), False),
        (GroupUsage(), task("t", cpu=3000), True),
        # prod already uses 5 of its 6 cores: only 1 is held back.
        (GroupUsage(5000, GIB, 5), task("t", cpu=3000), False),
        # Critical tasks are never held back.
        (GroupUsage(), task("t", cpu=3000, tier=Tier.CRITICAL), False),
        # A flex task of prod itself may use prod's guarantee.
        (GroupUsage(), task("t", cpu=3000, group="prod"), False),
        # Memory is held back too: 1 GiB of prod's unused guarantee, 16 GiB free.
        (GroupUsage(6000, 0, 6), task("t", cpu=0, memory=15 * GIB + 1), True),
    ],
)
def test_flex_tasks_cannot_take_critical_guarantees(
    prod_usage: GroupUsage, request_: TaskRequest, refused: bool
) -> None:
    refusal = ledger({"prod": prod_usage}).refusal(request_)
    assert (refusal is not None) is refused
    if refusal is not None:
        assert refusal[0] is ReasonCode.GUARANTEE_RESERVED
        assert "'prod'" in refusal[1]


def test_guarantee_message() -> None:
    refusal = ledger({}, free_cpu=7000).refusal(task("t", cpu=2000))
    assert refusal == (
        ReasonCode.GUARANTEE_RESERVED,
        "6 CPU cores guaranteed to critical group(s) 'prod' are held back from flex tasks:"
        " 7 cores free cluster-wide, task needs 2 cores",
    )


def test_recorded_tasks_count_against_limits_and_use_up_guarantees() -> None:
    book = ledger({})
    for _ in range(3):
        assert book.refusal(task("t", group="batch", cpu=0)) is None
        book.record(task("t", group="batch", cpu=0))
    assert book.used("batch") == GroupUsage(0, 3 * GIB, 3)
    assert book.refusal(task("t", group="batch", cpu=0)) is not None
    book.record(task("p", group="prod", cpu=6000, memory=GIB, tier=Tier.CRITICAL))
    assert ledger({"prod": book.used("prod")}).refusal(task("t", cpu=8000)) is None


def test_duplicate_groups_are_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate capacity group"):
        CapacityLedger([BATCH, BATCH], {}, ClusterState([]))
