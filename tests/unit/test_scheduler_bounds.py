"""The scheduler's answers stay bounded at 10,000 tasks on 1,000 agents (issue 11).

Queries (``agents``, ``agent_tasks``, ``demand``) and the placement update a
requester gets are each one payload: each must stay below Temporal's 512 KiB
warning whatever the cluster holds. Shapes sent by earlier releases still decode.
"""

from __future__ import annotations

import pytest
from test_ledger_scaling import NOW, PAYLOAD_BOUND, agent, full_cluster, item, payload_bytes

from titus_flow.contracts import AgentView, PlacementRequest, PlacementUpdate
from titus_flow.converter import WORKER_DATA_CONVERTER
from titus_flow.fleet.messages import ClusterDemand
from titus_flow.ledger import Ledger
from titus_flow.scheduler.queries import AGENTS_PAGE, TASKS_PAGE, AgentQuery, AgentTasksQuery

# Scale and cost checks: they run the pure modules thousands of times, which line
# tracing made twice as slow; the property and table tests measure the coverage.
pytestmark = pytest.mark.no_cover


def decoded(value: object, hint: object) -> object:
    converter = WORKER_DATA_CONVERTER.payload_converter
    return converter.from_payloads(converter.to_payloads([value]), [hint])[0]  # type: ignore[list-item]


def test_agent_pages_count_tasks_and_page_their_keys() -> None:
    ledger = full_cluster()
    views = ledger.agent_views()
    assert len(views) == 1000 and all(v.task_count == 10 and not v.tasks for v in views)
    first = ledger.agent_views(AgentQuery())
    assert len(first) == AGENTS_PAGE and payload_bytes(first) < PAYLOAD_BOUND / 3
    assert ledger.agent_views(AgentQuery(offset=990)) == views[990:]
    one = ledger.agent_views(AgentQuery(agent_id="agent-0007"))
    assert [v.agent_id for v in one] == ["agent-0007"] and one[0].reserved_cpu == 0.1
    assert ledger.agent_views(AgentQuery(state="lost")) == []
    assert ledger.agent_views(AgentQuery(agent_id="nobody")) == []
    tasks = ledger.agent_tasks(AgentTasksQuery(agent_id="agent-0007", offset=8))
    held = sorted(k for k, r in ledger.state.reservations.items() if r.agent_id == "agent-0007")
    assert (tasks.total, tasks.offset, tasks.tasks) == (10, 8, held[8:])


def test_the_keys_of_one_agent_holding_thousands_of_tasks_come_in_pages() -> None:
    ledger = Ledger()
    ledger.register(agent("a"), NOW)
    keys = [f"job-1a2b3c4d-{i}" for i in range(3000)]
    ledger.request(PlacementRequest(requester="job", items=[item(k) for k in keys]))
    assert len(ledger.iterate()["job"].placed) == 3000
    page = ledger.agent_tasks(AgentTasksQuery(agent_id="a", offset=2500))
    assert page.total == 3000 and page.tasks == sorted(keys)[2500:]
    assert payload_bytes(ledger.agent_tasks(AgentTasksQuery(agent_id="a"))) < 64 * 1024
    assert len(ledger.agent_tasks(AgentTasksQuery(agent_id="a")).tasks) == TASKS_PAGE


def test_pending_demand_groups_alike_tasks() -> None:
    ledger = full_cluster()  # full: what comes now waits
    ledger.request(
        PlacementRequest(
            requester="late",
            items=[
                *(item(f"late-1a2b3c4d-{i}") for i in range(10_000)),
                *(item(f"other-5e6f7a8b-{i}", ports=1) for i in range(5)),
            ],
        )
    )
    ledger.iterate()
    demand = ledger.pending_demand()
    assert [(d.key, d.count) for d in demand] == [
        ("late-1a2b3c4d-0", 10_000),
        ("other-5e6f7a8b-0", 5),
    ]
    answer = ClusterDemand(pending=demand, agents=ledger.agent_views(), fleets=[])
    assert payload_bytes(answer) < PAYLOAD_BOUND / 2  # one entry per task: ~3 MB


def test_a_partitions_placement_update_stays_below_the_bound() -> None:
    """The most one update carries: a whole 500-task partition placed at once, with ports."""
    fresh = Ledger()
    for n in range(1000):
        fresh.register(agent(f"titus-agent-host-{n:04d}.example.internal"), NOW)
    keys = [f"a-rather-long-job-name-1a2b3c4d-{i}" for i in range(500)]
    fresh.request(PlacementRequest(requester="p0", items=[item(k, ports=3) for k in keys]))
    update = fresh.iterate()["p0"]
    assert len(update.placed) == 500
    assert payload_bytes(update) < PAYLOAD_BOUND / 4  # ~200 bytes a task
    assert decoded(update, PlacementUpdate) == update


def test_answers_of_earlier_releases_decode() -> None:
    """A fleet run replaying an old ``fleet_observe`` result reads it as it did."""
    old_agent = {
        "agent_id": "i-1",
        "task_queue": "titus-agent-i-1",
        "state": "active",
        "attributes": {},
        "total": {"cpu": 2.0, "memory": 4096},
        "reserved_cpu": 1.0,
        "reserved_memory": 512,
        "tasks": ["job-1/0", "job-1/1"],
    }
    old_pending = {
        "key": "job-2/0",
        "job_id": "job-2",
        "resources": {"cpu": 1.0, "memory": 512},
        "reason": "no agent has room",
    }
    demand = ClusterDemand.model_validate({"pending": [old_pending], "agents": [old_agent]})
    assert demand.agents[0].task_count == 2 and demand.pending[0].count == 1
    view = AgentView.model_validate({**old_agent, "tasks": []})
    assert view.task_count == 0
