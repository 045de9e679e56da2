"""The fleet's EC2 calls against a real HTTP endpoint (moto_server on 127.0.0.1)."""

# ruff: noqa: F811  (the moto fixture is imported from test_fleet_moto, then requested)

from __future__ import annotations

import secrets
from typing import Any

import pytest
from botocore.exceptions import ClientError
from test_fleet_moto import Moto, aws_env, moto  # noqa: F401  (fixtures)

from titus_flow.fleet import ec2
from titus_flow.fleet.messages import LaunchInput, LaunchOption


def _name() -> str:
    return f"f{secrets.token_hex(4)}"


def _options(m: Moto, *types: str) -> list[LaunchOption]:
    return [LaunchOption(instance_type=t, subnet_id=s, zone=z) for t in types for s, z in m.subnets]


def _launch(m: Moto, name: str, seq: int = 1, count: int = 2, **kw: Any) -> LaunchInput:
    return LaunchInput(
        spec=m.fleet(name), seq=seq, count=count, options=_options(m, "m5.large"), **kw
    )


def test_launch_creates_tagged_instances_visible_by_fleet_tag(moto: Moto) -> None:
    name = _name()
    out = ec2.launch(ec2.make_client(moto.fleet(name)), _launch(moto, name, user_data="#!/bin/sh"))
    assert len(out.instances) == 2 and not out.adopted
    seen = moto.instances(name)
    assert sorted(i["InstanceId"] for i in seen) == [i.instance_id for i in out.instances]
    for raw in seen:
        tags = {t["Key"]: t["Value"] for t in raw["Tags"]}
        assert tags["titus-flow:fleet"] == name
        assert tags["titus-flow:launch"] == "1"
        assert tags["team"] == "infra"
        assert raw["InstanceType"] == "m5.large"
        assert raw["Placement"]["AvailabilityZone"] == "us-east-1a"
    described = ec2.describe(ec2.make_client(moto.fleet(name)), name)
    assert [i.instance_id for i in described] == [i.instance_id for i in out.instances]
    assert {i.zone for i in described} == {"us-east-1a"}
    assert all(i.launch_seq == 1 and i.private_ip for i in described)


def test_retried_launch_with_same_sequence_creates_nothing_new(moto: Moto) -> None:
    name = _name()
    client = ec2.make_client(moto.fleet(name))
    first = ec2.launch(client, _launch(moto, name, seq=7))
    again = ec2.launch(client, _launch(moto, name, seq=7))
    assert again.adopted
    assert [i.instance_id for i in again.instances] == [i.instance_id for i in first.instances]
    assert len(moto.instances(name)) == 2
    third = ec2.launch(client, _launch(moto, name, seq=8, count=1))
    assert not third.adopted and len(moto.instances(name)) == 3


def test_client_token_is_deterministic_and_short() -> None:
    assert ec2.client_token("pool", 3, 0) == ec2.client_token("pool", 3, 0)
    assert ec2.client_token("pool", 3, 0) != ec2.client_token("pool", 3, 1)
    assert ec2.client_token("pool", 3, 0) != ec2.client_token("pool", 4, 0)
    assert len(ec2.client_token("x" * 63, 10**9, 99)) <= 64


def test_terminate_and_unknown_ids(moto: Moto) -> None:
    name = _name()
    client = ec2.make_client(moto.fleet(name))
    out = ec2.launch(client, _launch(moto, name))
    ids = [i.instance_id for i in out.instances]
    assert ec2.terminate(client, [*ids, "i-0123456789abcdef0"]) == [*ids, "i-0123456789abcdef0"]
    assert moto.instances(name) == []
    states = {i.state for i in ec2.describe(client, name)}
    assert states <= {"shutting-down", "terminated"}


class CapacityShortage:
    """An EC2 client whose run_instances fails for some (type, subnet) pairs, like AWS does."""

    def __init__(self, real: Any, short: set[tuple[str, str]], code: str) -> None:
        self._real, self._short, self._code = real, short, code
        self.calls: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def run_instances(self, **kwargs: Any) -> Any:
        self.calls.append((kwargs["InstanceType"], kwargs["SubnetId"]))
        if (kwargs["InstanceType"], kwargs["SubnetId"]) in self._short:
            raise ClientError(
                {"Error": {"Code": self._code, "Message": "no capacity"}}, "RunInstances"
            )
        return self._real.run_instances(**kwargs)


def test_capacity_error_falls_back_to_next_zone_then_next_type(moto: Moto) -> None:
    name = _name()
    (sub_a, _), (sub_b, zone_b) = moto.subnets
    real = ec2.make_client(moto.fleet(name))
    short = CapacityShortage(
        real, {("m5.large", sub_a), ("m5.large", sub_b)}, "InsufficientInstanceCapacity"
    )
    request = _launch(moto, name, count=1).model_copy(
        update={"options": _options(moto, "m5.large", "m5.xlarge")}
    )
    out = ec2.launch(short, request)  # type: ignore[arg-type]
    assert short.calls == [
        ("m5.large", sub_a),
        ("m5.large", sub_b),
        ("m5.xlarge", sub_a),
    ]
    assert [i.instance_type for i in out.instances] == ["m5.xlarge"]
    assert len(out.tried) == 2
    # Second zone is tried before a bigger type:
    only_a = CapacityShortage(real, {("m5.large", sub_a)}, "InsufficientInstanceCapacity")
    out = ec2.launch(only_a, request.model_copy(update={"seq": 2}))  # type: ignore[arg-type]
    assert [(i.instance_type, i.zone) for i in out.instances] == [("m5.large", zone_b)]


def test_no_capacity_anywhere_and_throttling_are_retryable_errors(moto: Moto) -> None:
    name = _name()
    real = ec2.make_client(moto.fleet(name))
    everything = {(o.instance_type, o.subnet_id) for o in _options(moto, "m5.large")}
    with pytest.raises(ec2.Ec2NoCapacity):
        ec2.launch(
            CapacityShortage(real, everything, "InsufficientInstanceCapacity"),  # type: ignore[arg-type]
            _launch(moto, name),
        )
    with pytest.raises(ec2.Ec2Throttled):
        ec2.launch(
            CapacityShortage(real, everything, "RequestLimitExceeded"),  # type: ignore[arg-type]
            _launch(moto, name),
        )
    with pytest.raises(ec2.Ec2Rejected):
        ec2.launch(
            CapacityShortage(real, everything, "InvalidAMIID.NotFound"),  # type: ignore[arg-type]
            _launch(moto, name),
        )
    assert moto.instances(name) == []


def test_spot_market_is_requested(moto: Moto) -> None:
    name = _name()
    client = ec2.make_client(moto.fleet(name))
    out = ec2.launch(client, _launch(moto, name, count=1, market="spot"))
    assert [i.market for i in ec2.describe(client, name)] == ["spot"]
    assert out.instances[0].market == "spot"


def test_endpoint_from_environment(moto: Moto, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = moto.fleet(_name(), endpoint_url=None)
    monkeypatch.setenv(ec2.ENDPOINT_ENV, moto.url)
    assert ec2.endpoint_url(spec) == moto.url
    assert ec2.describe(ec2.make_client(spec), spec.name) == []
