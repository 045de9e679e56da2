"""The elbv2 calls of load balancer registration (boto3, synchronous: run them in a thread).

Used by the control worker's activities (:mod:`titus_flow.activities.load_balancers`)
and by the client's submit-time check (:func:`group_problem`). The endpoint is
AWS's, or ``TITUS_FLOW_AWS_ENDPOINT_URL`` (a moto server in tests), as for fleets.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from titus_flow.contracts.load_balancers import GroupInfo, RegisteredTarget, TargetType
from titus_flow.fleet.ec2 import ENDPOINT_ENV, THROTTLE_CODES
from titus_flow.fleet.spec import FleetSpec
from titus_flow.spec.load_balancers import region_of

DRAIN_ATTRIBUTE = "deregistration_delay.timeout_seconds"
DEFAULT_DRAIN = timedelta(seconds=300)  # AWS's default deregistration delay
NOT_FOUND_CODES = frozenset({"TargetGroupNotFound", "TargetGroupNotFoundException"})
# Targets per RegisterTargets / DeregisterTargets call (AWS takes up to 500).
BATCH = 200
_TRANSIENT = frozenset(
    {"InternalFailure", "ServiceUnavailable", "EndpointConnectionError", "ConnectTimeoutError"}
)


class ElbError(Exception):
    """A failed elbv2 call, with AWS's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code

    @property
    def retryable(self) -> bool:
        """Throttling and AWS's own failures pass; a missing group or a bad target do not."""
        return self.code in THROTTLE_CODES or self.code in _TRANSIENT


def make_client(arn: str, service: Literal["elbv2", "cloudwatch"] = "elbv2") -> Any:
    """A ``service`` client for the region of target group ``arn`` (standard credential chain)."""
    # Loaded here: boto3 costs every worker and CLI start 0.2 s of CPU otherwise.
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        region_name=region_of(arn),
        endpoint_url=os.environ.get(ENDPOINT_ENV) or None,
        config=Config(retries={"mode": "standard", "max_attempts": 3}),
    )


def _call(method: Any, **kwargs: Any) -> Any:
    try:
        return method(**kwargs)
    except ClientError as err:
        error = err.response.get("Error", {})
        raise ElbError(str(error.get("Code", "Unknown")), str(error.get("Message", err))) from err
    except BotoCoreError as err:  # no credentials, an endpoint that does not answer...
        raise ElbError(type(err).__name__, str(err)) from err


def describe_group(client: Any, arn: str) -> tuple[dict[str, Any], GroupInfo | None]:
    """The group as AWS describes it, and what the job needs of it (None: not ip/instance)."""
    [group] = _call(client.describe_target_groups, TargetGroupArns=[arn])["TargetGroups"]
    kind = group.get("TargetType", "instance")
    if kind not in {t.value for t in TargetType}:
        return group, None
    attributes = _call(client.describe_target_group_attributes, TargetGroupArn=arn)["Attributes"]
    seconds = next((a["Value"] for a in attributes if a["Key"] == DRAIN_ATTRIBUTE), None)
    drain = DEFAULT_DRAIN if seconds is None else timedelta(seconds=int(seconds))
    return group, GroupInfo(target_group=arn, target_type=TargetType(kind), drain=drain)


def fleet_vpcs(specs: Sequence[FleetSpec]) -> list[str]:
    """The VPCs of the fleets' subnets (``DescribeSubnets``, each in its fleet's region).

    Raises :class:`ElbError` when a fleet's subnets cannot be described.
    """
    from titus_flow.fleet import ec2  # boto3's EC2 client only when a fleet runs

    vpcs: set[str] = set()
    for spec in specs:
        ids = [subnet.id for subnet in spec.subnets]
        found = _call(ec2.make_client(spec).describe_subnets, SubnetIds=ids)["Subnets"]
        vpcs.update(str(subnet["VpcId"]) for subnet in found)
    return sorted(vpcs)


def group_problem(client: Any, arn: str, vpcs: Sequence[str] = ()) -> str | None:
    """Why target group ``arn`` cannot take a job's tasks; None when it can.

    It must exist, register ``ip`` or ``instance`` targets, and (when ``vpcs``
    is given: the VPCs the fleets' agents run in) be in one of them.
    """
    try:
        group, info = describe_group(client, arn)
    except ElbError as err:
        if err.code in NOT_FOUND_CODES:
            return f"target group {arn} does not exist"
        return f"target group {arn} cannot be read: {err}"
    if info is None:
        kind = group.get("TargetType")
        return f"target group {arn} registers {kind} targets; tasks need an ip or instance group"
    vpc = group.get("VpcId")
    if vpcs and vpc not in vpcs:
        return (
            f"target group {arn} is in VPC {vpc}; the job's fleets run in"
            f" {', '.join(sorted(vpcs))}: use a target group of that VPC"
        )
    return None


def _targets(targets: Sequence[tuple[str, int]]) -> list[dict[str, Any]]:
    return [{"Id": target, "Port": port} for target, port in targets]


def register(client: Any, arn: str, targets: Sequence[tuple[str, int]]) -> None:
    """Register ``(id, port)`` targets (registering a registered one changes nothing)."""
    for start in range(0, len(targets), BATCH):
        chunk = _targets(targets[start : start + BATCH])
        _call(client.register_targets, TargetGroupArn=arn, Targets=chunk)


def deregister(client: Any, arn: str, targets: Sequence[tuple[str, int]]) -> None:
    """Deregister ``(id, port)`` targets; AWS drains them for the group's delay.

    Only those the group holds: a target already gone (removed by hand, or by
    an earlier attempt of this call) is not an error.
    """
    held = {(t.target, t.port) for t in registered(client, arn) if not t.draining}
    present = [t for t in targets if t in held]
    for start in range(0, len(present), BATCH):
        chunk = _targets(present[start : start + BATCH])
        _call(client.deregister_targets, TargetGroupArn=arn, Targets=chunk)


def registered(client: Any, arn: str) -> list[RegisteredTarget]:
    """Every target AWS holds in the group, whatever its health; draining ones marked."""
    found = _call(client.describe_target_health, TargetGroupArn=arn)["TargetHealthDescriptions"]
    return [
        RegisteredTarget(
            target=d["Target"]["Id"],
            port=int(d["Target"].get("Port", 0)),
            draining=d.get("TargetHealth", {}).get("State") == "draining",
        )
        for d in found
    ]
