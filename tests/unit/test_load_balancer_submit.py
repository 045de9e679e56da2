"""The submit-time check of a service job's target groups, with fake AWS and Temporal.

The VPC part: when fleets run that could take the job's tasks, each ARN must be
in one of their subnets' VPCs (``load_balancers[i]`` names the entry refused);
without fleets (local agents) there is no VPC check. The spec's
``load_balancer_check_interval`` becomes the workflow's ``targets_check``.
(``tests/integration/test_load_balancers_moto.py`` runs the AWS calls for real.)
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from titus_flow.client import TitusClient
from titus_flow.config import Settings
from titus_flow.contracts import ServiceJobInput
from titus_flow.errors import UserError
from titus_flow.fleet import FleetSpec, parse_fleet
from titus_flow.fleet.messages import ClusterDemand
from titus_flow.fleet.shapes import fleet_capacity
from titus_flow.load_balancers import aws
from titus_flow.load_balancers.check import check_target_groups
from titus_flow.spec import Constraints, Container, ServiceJob

ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/{}/0123456789abcdef"
IN_VPC, ELSEWHERE = ARN.format("web"), ARN.format("other")
GROUPS = {IN_VPC: "vpc-fleet", ELSEWHERE: "vpc-other"}


class FakeElb:
    """Answers elbv2's describe calls for GROUPS (all ``ip`` groups)."""

    def describe_target_groups(self, TargetGroupArns: list[str]) -> dict[str, Any]:
        [arn] = TargetGroupArns
        return {"TargetGroups": [{"TargetType": "ip", "VpcId": GROUPS[arn]}]}

    def describe_target_group_attributes(self, TargetGroupArn: str) -> dict[str, Any]:
        return {"Attributes": []}


@pytest.fixture(autouse=True)
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Fake elbv2 clients; fleets' subnets resolve to vpc-<fleet name>. Returns the lookups."""
    looked_up: list[list[str]] = []

    def vpcs_of(specs: list[FleetSpec]) -> list[str]:
        looked_up.append([spec.name for spec in specs])
        return sorted({f"vpc-{spec.name}" for spec in specs})

    monkeypatch.setattr(aws, "make_client", lambda arn: FakeElb())
    monkeypatch.setattr(aws, "fleet_vpcs", vpcs_of)
    return looked_up


def fleet(name: str, **fields: Any) -> FleetSpec:
    raw = {
        "name": name,
        "region": "us-east-1",
        "ami": "ami-0123",
        "instance_types": ["m5.large"],
        "subnets": [{"id": f"subnet-{name}", "zone": "us-east-1a"}],
        "max": 2,
        "temporal": {"address": "127.0.0.1:7233"},
        **fields,
    }
    return parse_fleet(raw, "test")


class FakeHandle:
    def __init__(self, answer: Any) -> None:
        self.answer = answer

    async def query(self, method: Any, *args: Any) -> Any:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


class FakeTemporal:
    """The scheduler knows ``fleets``; each fleet workflow answers its spec."""

    def __init__(self, fleets: list[FleetSpec] | None) -> None:
        self.fleets = {f"fleet-{spec.name}": spec for spec in fleets or []}
        self.demand = ClusterDemand(
            fleets=[fleet_capacity(s, w, at_max=False) for w, s in self.fleets.items()]
        )
        self.started: list[Any] = []

    def get_workflow_handle_for(self, method: Any, workflow_id: str) -> FakeHandle:
        return FakeHandle(self.demand)  # the scheduler

    def get_workflow_handle(self, workflow_id: str) -> FakeHandle:
        return FakeHandle(self.fleets[workflow_id])

    async def start_workflow(self, method: Any, request: Any, **options: Any) -> None:
        self.started.append(request)


def client(fleets: list[FleetSpec] | None) -> TitusClient:
    return TitusClient(FakeTemporal(fleets), Settings())  # type: ignore[arg-type]


def web(*groups: str, **fields: Any) -> ServiceJob:
    return ServiceJob(
        name="web",
        container=Container(image="busybox", ports=["http"]),
        load_balancers=list(groups),
        **fields,
    )


async def test_a_group_outside_the_fleets_vpcs_is_refused_naming_the_entry() -> None:
    with pytest.raises(UserError) as info:
        await check_target_groups(["local:web", IN_VPC, ELSEWHERE], ["vpc-fleet"])
    assert info.value.messages == [
        f"load_balancers[2]: target group {ELSEWHERE} is in VPC vpc-other; the job's"
        " fleets run in vpc-fleet: use a target group of that VPC"
    ]
    await check_target_groups([IN_VPC, ELSEWHERE], [])  # no VPCs known: no VPC check


async def test_submit_checks_against_the_vpcs_of_the_fleets(fake_aws: list[list[str]]) -> None:
    titus = client([fleet("fleet")])
    with pytest.raises(UserError, match=r"load_balancers\[1\]: .*other.* is in VPC vpc-other"):
        await titus.submit(web(IN_VPC, ELSEWHERE))
    assert not titus.temporal.started  # type: ignore[attr-defined]
    await titus.submit(web(IN_VPC))
    assert fake_aws == [["fleet"], ["fleet"]]
    with pytest.raises(UserError, match=r"load_balancers\[0\]"):  # updates are checked too
        await titus.update_service("web-1", web(ELSEWHERE))


async def test_without_fleets_there_is_no_vpc_check(fake_aws: list[list[str]]) -> None:
    titus = client(None)
    await titus.submit(web(ELSEWHERE))
    await client([fleet("fleet")]).submit(web("local:web"))  # nothing to look up
    assert fake_aws == []


async def test_only_fleets_the_job_could_run_on_count(fake_aws: list[list[str]]) -> None:
    gpu = fleet("gpu", agent={"attributes": {"gpu": "yes"}})
    titus = client([fleet("fleet"), gpu])
    on_gpu = Constraints.model_validate({"hard": {"attributes": {"gpu": "yes"}}})
    with pytest.raises(UserError, match="fleets run in vpc-gpu:"):
        await titus.submit(web(IN_VPC, constraints=on_gpu))
    await titus.submit(web(IN_VPC, constraints={"hard": {"attributes": {"fleet": "fleet"}}}))
    with pytest.raises(UserError, match="fleets run in vpc-fleet, vpc-gpu:"):
        await titus.submit(web(ELSEWHERE))
    assert fake_aws == [["gpu"], ["fleet"], ["fleet", "gpu"]]


async def test_the_check_interval_is_carried_to_the_workflow() -> None:
    titus = client(None)
    await titus.submit(web("local:web", load_balancer_check_interval="15s"))
    await titus.submit(web("local:web"))
    started: list[ServiceJobInput] = titus.temporal.started  # type: ignore[attr-defined]
    assert [r.targets_check for r in started] == [timedelta(seconds=15), timedelta(seconds=60)]
