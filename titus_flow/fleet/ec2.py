"""The boto3 calls of a fleet: launch, describe and terminate its instances.

Every instance carries the tags ``titus-flow:fleet=<name>`` and
``titus-flow:launch=<seq>``, so the fleet's instances can always be found again
(nothing it launched goes untracked) and a launch can tell whether it already
happened.

Idempotent launch: the ``ClientToken`` of a launch is derived from the fleet
name, the launch number the workflow chose and the option tried, so AWS turns a
repeated call into the first call's result; and before calling, a launch looks
for instances already tagged with its number (covering a retry after a call
that succeeded on another option, and endpoints that ignore client tokens).

Fallback order on a capacity error: the options in the order given, which the
planner lays out as the chosen type in every subnet (preferred zone first,
then the fleet's subnet order), then the next sufficient type (cheapest first)
in every subnet, and so on.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from titus_flow.fleet.messages import Instance, LaunchInput, LaunchOutput
from titus_flow.fleet.spec import TAG_PREFIX, FleetSpec

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import FilterTypeDef, InstanceTypeDef

ENDPOINT_ENV = "TITUS_FLOW_AWS_ENDPOINT_URL"
FLEET_TAG = f"{TAG_PREFIX}fleet"
LAUNCH_TAG = f"{TAG_PREFIX}launch"

THROTTLE_CODES = frozenset({"RequestLimitExceeded", "Throttling", "ThrottlingException"})
# Errors another type or zone may not have: try the next launch option.
CAPACITY_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "InsufficientHostCapacity",
        "InsufficientFreeAddressesInSubnet",
        "Unsupported",  # the type is not offered in this zone
        "SpotMaxPriceTooLow",
        "MaxSpotInstanceCountExceeded",
    }
)
_LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down", "terminated"]


class Ec2Error(Exception):
    """A failed EC2 call, with AWS's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class Ec2Throttled(Ec2Error):
    """EC2 refused the call for its rate: retry later."""


class Ec2NoCapacity(Ec2Error):
    """No launch option had capacity: retry later (or with other options)."""


class Ec2Rejected(Ec2Error):
    """EC2 rejected the request itself (bad AMI, permissions...): retrying will not help."""


def endpoint_url(spec: FleetSpec) -> str | None:
    """The fleet's AWS endpoint: its own ``endpoint_url``, else the environment's."""
    return spec.endpoint_url or os.environ.get(ENDPOINT_ENV) or None


def make_client(spec: FleetSpec) -> EC2Client:
    """An EC2 client from the standard credential chain, at the fleet's endpoint."""
    # Loaded here: boto3 costs every worker, agent and CLI start 0.2 s of CPU otherwise.
    import boto3
    from botocore.config import Config

    client: EC2Client = boto3.client(
        "ec2",
        region_name=spec.region,
        endpoint_url=endpoint_url(spec),
        config=Config(retries={"mode": "standard", "max_attempts": 3}),
    )
    return client


def client_token(fleet: str, seq: int, option: int) -> str:
    """Idempotency token of one launch option (EC2 allows 64 ASCII characters)."""
    digest = hashlib.sha256(f"{fleet}\0{seq}\0{option}".encode()).hexdigest()[:40]
    return f"tf-{digest}"


def _error(err: ClientError) -> Ec2Error:
    code = err.response.get("Error", {}).get("Code", "Unknown")
    message = err.response.get("Error", {}).get("Message", str(err))
    if code in THROTTLE_CODES:
        return Ec2Throttled(code, message)
    if code in CAPACITY_CODES:
        return Ec2NoCapacity(code, message)
    return Ec2Rejected(code, message)


def _instance(raw: InstanceTypeDef) -> Instance:
    tags = {t.get("Key", ""): t.get("Value", "") for t in raw.get("Tags", [])}
    seq = tags.get(LAUNCH_TAG, "")
    placement = raw.get("Placement", {})
    launched = raw.get("LaunchTime") or datetime.now(UTC)
    return Instance(
        instance_id=raw["InstanceId"],
        instance_type=raw.get("InstanceType", ""),
        zone=placement.get("AvailabilityZone", ""),
        subnet_id=raw.get("SubnetId"),
        state=raw.get("State", {}).get("Name", "pending"),
        private_ip=raw.get("PrivateIpAddress"),
        launched_at=launched,
        launch_seq=int(seq) if seq.isdigit() else None,
        market="spot" if raw.get("InstanceLifecycle") == "spot" else "on-demand",
    )


def describe(client: EC2Client, fleet: str, seq: int | None = None) -> list[Instance]:
    """Every instance tagged as the fleet's (or as its launch ``seq``), by id."""
    filters: list[FilterTypeDef] = [
        {"Name": f"tag:{FLEET_TAG}", "Values": [fleet]},
        {"Name": "instance-state-name", "Values": _LIVE_STATES},
    ]
    if seq is not None:
        filters.append({"Name": f"tag:{LAUNCH_TAG}", "Values": [str(seq)]})
    found: list[Instance] = []
    try:
        for page in client.get_paginator("describe_instances").paginate(Filters=filters):
            for reservation in page.get("Reservations", []):
                found += [_instance(raw) for raw in reservation.get("Instances", [])]
    except ClientError as err:
        raise _error(err) from err
    return sorted(found, key=lambda i: i.instance_id)


def _tags(spec: FleetSpec, seq: int) -> list[dict[str, str]]:
    return [
        *({"Key": k, "Value": v} for k, v in sorted(spec.tags.items())),
        {"Key": "Name", "Value": f"titus-flow-{spec.name}"},
        {"Key": FLEET_TAG, "Value": spec.name},
        {"Key": LAUNCH_TAG, "Value": str(seq)},
    ]


def _run_arguments(request: LaunchInput, option: int) -> dict[str, Any]:
    spec, chosen = request.spec, request.options[option]
    args: dict[str, Any] = {
        "InstanceType": chosen.instance_type,
        # All or nothing per option: a partial launch would make the fallback order moot.
        "MinCount": request.count,
        "MaxCount": request.count,
        "SubnetId": chosen.subnet_id,
        "ClientToken": client_token(spec.name, request.seq, option),
        "TagSpecifications": [
            {"ResourceType": kind, "Tags": _tags(spec, request.seq)}
            for kind in ("instance", "volume")
        ],
        # IMDSv2 only (the bootstrap asks for a session token first), and a token's
        # reply dies after one hop: a task in a bridged container, one hop further,
        # cannot get one, hence no instance role credentials. Overrides a launch template.
        "MetadataOptions": {
            "HttpTokens": "required",
            "HttpEndpoint": "enabled",
            "HttpPutResponseHopLimit": 1,
        },
    }
    if spec.ami:
        args["ImageId"] = spec.ami
    if spec.launch_template:
        template = spec.launch_template
        reference = {"LaunchTemplateId": template.id} if template.id else {}
        reference = reference or {"LaunchTemplateName": template.name or ""}
        args["LaunchTemplate"] = {**reference, "Version": template.version}
    if spec.security_groups:
        args["SecurityGroupIds"] = list(spec.security_groups)
    if spec.iam_instance_profile:
        profile = spec.iam_instance_profile
        args["IamInstanceProfile"] = (
            {"Arn": profile} if profile.startswith("arn:") else {"Name": profile}
        )
    if spec.key_name:
        args["KeyName"] = spec.key_name
    if request.user_data:
        args["UserData"] = request.user_data  # boto3 base64-encodes it
    if request.market == "spot":
        args["InstanceMarketOptions"] = {
            "MarketType": "spot",
            "SpotOptions": {"SpotInstanceType": "one-time"},
        }
    return args


def launch(client: EC2Client, request: LaunchInput) -> LaunchOutput:
    """Launch ``request.count`` instances, trying each option in order on capacity errors.

    Raises :class:`Ec2Throttled`, :class:`Ec2NoCapacity` (every option lacked
    capacity) or :class:`Ec2Rejected`.
    """
    already = describe(client, request.spec.name, request.seq)
    if already:
        return LaunchOutput(instances=already, adopted=True)
    tried: list[str] = []
    for index, option in enumerate(request.options):
        try:
            reply = client.run_instances(**_run_arguments(request, index))
        except ClientError as err:
            error = _error(err)
            if not isinstance(error, Ec2NoCapacity):
                raise error from err
            tried.append(f"{option.instance_type}@{option.zone}: {error}")
            continue
        made = sorted((_instance(i) for i in reply["Instances"]), key=lambda i: i.instance_id)
        return LaunchOutput(instances=made, tried=tried)
    raise Ec2NoCapacity(
        "InsufficientInstanceCapacity", "no option had capacity: " + "; ".join(tried)
    )


def terminate(client: EC2Client, instance_ids: Sequence[str]) -> list[str]:
    """Terminate the instances; ids EC2 no longer knows count as terminated."""
    if not instance_ids:
        return []
    try:
        client.terminate_instances(InstanceIds=list(instance_ids))
    except ClientError as err:
        error = _error(err)
        if error.code != "InvalidInstanceID.NotFound":
            raise error from err
        # One unknown id fails the whole call: terminate the others one by one.
        for instance_id in instance_ids:
            try:
                client.terminate_instances(InstanceIds=[instance_id])
            except ClientError as one:
                if _error(one).code != "InvalidInstanceID.NotFound":
                    raise _error(one) from one
    return list(instance_ids)
