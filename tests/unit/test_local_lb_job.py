"""`titus-flow lb`'s ends on a job (a fake client) and its --listen rule."""

from __future__ import annotations

from datetime import timedelta
from typing import cast

import pytest

from titus_flow.cli.lb_command import parse_listen
from titus_flow.client import TitusClient
from titus_flow.contracts.load_balancers import (
    LoadBalancersView,
    TargetGroupView,
    TargetState,
    TargetView,
)
from titus_flow.contracts.metric_reports import MetricReport
from titus_flow.errors import UserError
from titus_flow.lb import Target
from titus_flow.lb.job import JobMetricReports, JobTargets
from titus_flow.lb.reporter import requests_per_task_report


def group(name: str, *states: TargetState) -> TargetGroupView:
    return TargetGroupView(
        target_group=name,
        drain=timedelta(seconds=2),
        targets=[
            TargetView(task_id=f"job-{i}", target="127.0.0.1", port=20000 + i, state=state)
            for i, state in enumerate(states)
        ],
    )


class FakeClient:
    def __init__(self, *groups: TargetGroupView) -> None:
        self.view = LoadBalancersView(groups=list(groups))
        self.reports: list[tuple[str, MetricReport]] = []

    async def load_balancers(self, job_id: str) -> LoadBalancersView:
        return self.view

    async def report_metrics(self, job_id: str, report: MetricReport) -> None:
        self.reports.append((job_id, report))

    def as_client(self) -> TitusClient:
        return cast(TitusClient, self)  # only the two calls above are used


async def test_only_registered_targets_of_the_named_group_are_routed_to() -> None:
    fake = FakeClient(
        group("arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/web/1", TargetState.REGISTERED),
        group(
            "local:web",
            TargetState.REGISTERING,
            TargetState.REGISTERED,
            TargetState.DRAINING,
            TargetState.DEREGISTERED,
            TargetState.REGISTERED,
        ),
    )
    targets = JobTargets(fake.as_client(), "job", "web")
    await targets.check()
    assert await targets.registered() == [
        Target(task_id="job-1", host="127.0.0.1", port=20001),
        Target(task_id="job-4", host="127.0.0.1", port=20004),
    ]


async def test_a_job_without_the_group_is_refused_with_its_groups() -> None:
    fake = FakeClient(group("local:api"))
    targets = JobTargets(fake.as_client(), "job", "web")
    with pytest.raises(UserError, match=r"no load balancer local:web .*local:api"):
        await targets.check()
    with pytest.raises(LookupError):
        await targets.registered()


async def test_reports_go_to_the_job() -> None:
    fake = FakeClient()
    report = requests_per_task_report("lb:web", 8.0, 2)
    assert report is not None
    await JobMetricReports(fake.as_client(), "job").report(report)
    assert fake.reports == [("job", report)]


@pytest.mark.parametrize(
    ("listen", "address"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("127.0.0.2:0", ("127.0.0.2", 0)),
        ("localhost:9000", ("localhost", 9000)),
        ("[::1]:8080", ("::1", 8080)),
    ],
)
def test_listen_on_loopback(listen: str, address: tuple[str, int]) -> None:
    assert parse_listen(listen) == address


@pytest.mark.parametrize(
    ("listen", "why"),
    [
        ("0.0.0.0:8080", "loopback"),
        ("10.0.0.5:8080", "loopback"),
        ("example.com:80", "loopback"),
        ("127.0.0.1", "HOST:PORT"),
        ("127.0.0.1:http", "HOST:PORT"),
        ("127.0.0.1:70000", "HOST:PORT"),
    ],
)
def test_listen_elsewhere_is_refused(listen: str, why: str) -> None:
    with pytest.raises(UserError, match=why):
        parse_listen(listen)
