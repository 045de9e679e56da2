"""The fleet file: which EC2 instances titus-flow may run agents on, and how many.

Example (YAML)::

    name: batch-pool
    region: us-east-1
    ami: ami-0123456789abcdef0
    instance_types: [m5.large, c5.xlarge, {name: x9.huge, cpu: 64, memory: 512Gi}]
    subnets: [{id: subnet-0a1b, zone: us-east-1a}, {id: subnet-0c2d, zone: us-east-1b}]
    min: 0
    max: 10
    idle_timeout: 10m
    temporal: {address: "temporal.internal:7233"}

Like job specs, fleet models forbid unknown fields, are frozen, and their errors
name the field and say how to fix it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    StrictFloat,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from titus_flow._version import __version__
from titus_flow.cluster import CONTROL_TASK_QUEUE
from titus_flow.config import S3_BUCKET_PATTERN
from titus_flow.fleet.catalog import KNOWN_TYPES
from titus_flow.spec.base import Matches, Name, SpecModel, repeated
from titus_flow.spec.quantities import Duration, Mebibytes
from titus_flow.spec.resources import MIN_MEMORY_MIB

TAG_PREFIX = "titus-flow:"
"""Prefix of the EC2 tags titus-flow sets itself (fleet name, launch number)."""

# Attributes every fleet agent gets from its instance; users may not override them.
INSTANCE_ATTRIBUTES = ("zone", "instance_type", "instance_id")

InstanceTypeName = Annotated[
    str,
    Matches(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$", "instance type", 'use an EC2 type like "m5.large"'),
]
SubnetId = Annotated[
    str, Matches(r"^subnet-[0-9a-zA-Z]+$", "subnet id", 'use an id like "subnet-0a1b2c3d"')
]
SecurityGroupId = Annotated[
    str, Matches(r"^sg-[0-9a-zA-Z]+$", "security group id", 'use an id like "sg-0a1b2c3d"')
]
AmiId = Annotated[str, Matches(r"^ami-[0-9a-zA-Z]+$", "AMI id", 'use an id like "ami-0a1b2c3d"')]
Zone = Annotated[
    str,
    Matches(r"^[a-z]{2}(-[a-z0-9]+)+$", "availability zone", 'use a zone like "us-east-1a"'),
]
Region = Annotated[
    str, Matches(r"^[a-z]{2}(-[a-z]+)+-\d+$", "region", 'use a region like "us-east-1"')
]
LogBucket = Annotated[
    str, Matches(S3_BUCKET_PATTERN, "S3 bucket name", 'use a bucket name like "my-task-logs"')
]
LogPrefix = Annotated[
    str,
    Matches(
        r"^[A-Za-z0-9._/-]{0,200}$",
        "log key prefix",
        'use letters, digits and "._/-", like "prod/batch"',
    ),
]


class InstanceType(SpecModel):
    """An instance type the fleet may launch, with the capacity its agent offers.

    Write a known type as just its name (``m5.large``); any other type needs
    ``cpu`` and ``memory`` so the scheduler can plan for instances that do not
    exist yet.
    """

    name: InstanceTypeName
    cpu: StrictFloat = Field(gt=0, le=1024, description="vCPUs.")
    memory: Mebibytes = Field(gt=0, description='Memory of the instance: MiB or "16Gi".')
    disk: Mebibytes = Field(default=100 * 1024, ge=0, description="Disk the agent offers.")
    network_mbps: StrictInt = Field(default=10_000, ge=0, description="Network in Mbit/s.")
    price: StrictFloat | None = Field(
        default=None, ge=0, description="Relative hourly price; ranks types, cheapest first."
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_known(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = {"name": value}
        if not isinstance(value, dict) or not isinstance(value.get("name"), str):
            return value  # field validation reports what is wrong
        known = KNOWN_TYPES.get(value["name"])
        if known is None:
            missing = [f for f in ("cpu", "memory") if f not in value]
            if missing:
                raise ValueError(
                    f"unknown instance type {value['name']!r}: declare its"
                    f" {' and '.join(missing)}, e.g. {{name: {value['name']}, cpu: 4,"
                    f" memory: 16Gi}} (built-in types: {', '.join(sorted(KNOWN_TYPES))})"
                )
            return value
        return {"cpu": known.cpu, "memory": known.memory_mib, "price": known.price, **value}


class Subnet(SpecModel):
    """A subnet instances may start in, and its availability zone."""

    id: SubnetId
    zone: Zone


class LaunchTemplate(SpecModel):
    """An EC2 launch template (by id or by name) to start instances from."""

    id: str | None = None
    name: str | None = None
    version: str = Field(default="$Default", min_length=1)

    @model_validator(mode="after")
    def _one_reference(self) -> LaunchTemplate:
        if (self.id is None) == (self.name is None):
            raise ValueError("set exactly one of id or name to pick the launch template")
        return self


class Purchase(SpecModel):
    """How instances are bought: ``on_demand_base`` first, then a spot share of the rest."""

    on_demand_base: StrictInt = Field(
        default=0, ge=0, description="This many instances are always on-demand."
    )
    spot_percentage: StrictInt = Field(
        default=0, ge=0, le=100, description="Percent of instances above the base that are spot."
    )


# Everything below reaches the instance's boot script (run as root) and its systemd
# unit: each is held to a character set with no shell, quote, `%` or newline in it.
Address = Annotated[
    str,
    Matches(
        r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?):[0-9]{1,5}$",
        "address",
        'use host:port, e.g. "temporal.internal:7233" (letters, digits, "." and "-")',
    ),
]
Namespace = Annotated[
    str,
    Matches(
        r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$",
        "namespace",
        'use letters, digits, ".", "_" and "-", e.g. "titus-prod"',
    ),
]
TaskQueue = Annotated[
    str,
    Matches(
        r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$",
        "task queue",
        'use letters, digits, ".", "_", ":" and "-", e.g. "titus-control"',
    ),
]
Requirement = Annotated[
    str,
    Matches(
        r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,-]+\])?==[A-Za-z0-9.+!_-]+$",
        "package",
        f'pin one exact version, e.g. "titus-flow=={__version__}"',
    ),
]
InstancePath = Annotated[
    str,
    Matches(
        r"^(/[A-Za-z0-9_-][A-Za-z0-9._-]*)+$",
        "path on the instance",
        'use an absolute path of letters, digits, ".", "_" and "-", e.g. "/etc/titus/key.pem"',
    ),
]
SecretId = Annotated[
    str,
    Matches(
        r"^(arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:)?[A-Za-z0-9/_+=.@-]{1,512}$",
        "Secrets Manager secret",
        "use its ARN or name, e.g. arn:aws:secretsmanager:us-east-1:123456789012:secret:tf-key",
    ),
]
AttributeKey = Annotated[
    str,
    Matches(r"^[A-Za-z][A-Za-z0-9_.-]{0,62}$", "attribute name", 'use e.g. "pool" or "gpu-kind"'),
]
AttributeValue = Annotated[
    str,
    Matches(
        r"^[A-Za-z0-9_.:/+-]{0,255}$",
        "attribute value",
        'use letters, digits, ".", "_", ":", "/", "+" and "-" (no spaces)',
    ),
]


class SecretSource(SpecModel):
    """Where an instance finds a credential: a file already on it, or a Secrets Manager secret.

    A secret is fetched at boot with the instance role (``secretsmanager:GetSecretValue``
    on it) into a root-only file; neither the value nor the file ever travels in a
    workflow input.
    """

    file: InstancePath | None = Field(default=None, description="Absolute path on the instance.")
    secret: SecretId | None = Field(default=None, description="Secrets Manager ARN or name.")

    @model_validator(mode="after")
    def _one_source(self) -> SecretSource:
        if (self.file is None) == (self.secret is None):
            raise ValueError("set exactly one of file (on the instance) or secret (its ARN)")
        return self


class TemporalTarget(SpecModel):
    """The Temporal service the fleet's agents connect to, and how they authenticate."""

    address: Address = Field(description="host:port as seen from the instances.")
    namespace: Namespace = "default"
    control_task_queue: TaskQueue = CONTROL_TASK_QUEUE
    tls: bool = Field(default=False, description="TLS with the system's roots (no client cert).")
    tls_cert: SecretSource | None = Field(default=None, description="mTLS client certificate.")
    tls_key: SecretSource | None = Field(default=None, description="mTLS client private key.")
    tls_ca: SecretSource | None = Field(default=None, description="CA of the server's cert.")
    api_key: SecretSource | None = Field(default=None, description="Temporal API key.")
    codec_keys: SecretSource | None = Field(
        default=None, description="Payload encryption key ring (titus_flow.codec)."
    )

    @model_validator(mode="after")
    def _cert_with_key(self) -> TemporalTarget:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("mTLS needs both tls_cert and tls_key")
        return self


class AgentBootstrap(SpecModel):
    """What the instances install and run."""

    package: Requirement = Field(
        default=f"titus-flow=={__version__}",
        description="pip requirement for titus-flow, pinned (name==version); this release by"
        " default.",
    )
    driver: Literal["docker", "process"] = "docker"
    attributes: dict[AttributeKey, AttributeValue] = Field(
        default_factory=dict, description="Extra agent attributes for constraints."
    )
    log_bucket: LogBucket | None = Field(
        default=None,
        description="S3 bucket the agents upload task logs to (docs/logs.md; the instance"
        " role needs s3:PutObject under log_prefix); unset: logs leave with the instance.",
    )
    log_prefix: LogPrefix = Field(default="titus-flow", description="Key prefix in log_bucket.")

    @field_validator("attributes")
    @classmethod
    def _not_instance_attributes(cls, value: dict[str, str]) -> dict[str, str]:
        clash = sorted(set(value) & set(INSTANCE_ATTRIBUTES))
        if clash:
            raise ValueError(
                f"{', '.join(clash)} come from the instance itself; remove them from attributes"
            )
        return value


class FleetSpec(SpecModel):
    """An EC2 pool of titus-flow agents, grown and shrunk with demand."""

    name: Name
    region: Region
    ami: AmiId | None = None
    launch_template: LaunchTemplate | None = None
    instance_types: list[InstanceType] = Field(
        description="Types to launch; cheapest sufficient first, the first one for min."
    )
    subnets: list[Subnet] = Field(description="Where instances start; zones come from here.")
    security_groups: list[SecurityGroupId] = Field(default_factory=list)
    iam_instance_profile: str | None = Field(default=None, description="Profile name or ARN.")
    key_name: str | None = None
    tags: dict[str, str] = Field(default_factory=dict, description="Extra tags on instances.")
    purchase: Purchase = Field(default_factory=Purchase)
    min: StrictInt = Field(default=0, ge=0, description="Instances kept even when idle.")
    max: StrictInt = Field(ge=0, description="Instances never exceeded, launches included.")
    idle_timeout: Duration = Field(
        default=timedelta(minutes=10), description="Idle time before scale-in."
    )
    boot_timeout: Duration = Field(
        default=timedelta(minutes=10),
        description="An instance whose agent has not registered by then is replaced.",
    )
    poll_interval: Duration = Field(
        default=timedelta(seconds=30), description="How often the fleet re-plans."
    )
    system_reserved_memory: Mebibytes = Field(
        default=512, ge=0, description="Memory kept for the OS; the agent offers the rest."
    )
    temporal: TemporalTarget
    agent: AgentBootstrap = Field(default_factory=AgentBootstrap)
    endpoint_url: str | None = Field(
        default=None,
        description="AWS-compatible endpoint (tests); else env TITUS_FLOW_AWS_ENDPOINT_URL.",
    )

    @field_validator("instance_types")
    @classmethod
    def _types_present_and_unique(cls, value: list[InstanceType]) -> list[InstanceType]:
        if not value:
            raise ValueError('no instance types: list at least one, e.g. ["m5.large"]')
        if dupes := repeated([t.name for t in value]):
            raise ValueError(f"{dupes} listed twice; list each type once")
        return value

    @field_validator("subnets")
    @classmethod
    def _subnets_present_and_unique(cls, value: list[Subnet]) -> list[Subnet]:
        if not value:
            raise ValueError(
                "no subnets: list at least one, e.g. [{id: subnet-0a1b2c3d, zone: us-east-1a}]"
            )
        if dupes := repeated([subnet.id for subnet in value]):
            raise ValueError(f"{dupes} listed twice; list each subnet once")
        return value

    @field_validator("tags")
    @classmethod
    def _tags_not_reserved(cls, value: dict[str, str]) -> dict[str, str]:
        if reserved := sorted(k for k in value if k.startswith(TAG_PREFIX)):
            raise ValueError(
                f"tag {reserved[0]!r} uses the prefix {TAG_PREFIX!r}, which titus-flow"
                " sets itself; rename it"
            )
        return value

    @field_validator("max")
    @classmethod
    def _max_at_least_min(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("min")
        if isinstance(low, int) and value < low:
            raise ValueError(f"max {value} is below min {low}: raise max or lower min")
        return value

    @model_validator(mode="before")
    @classmethod
    def _one_image_source(cls, value: Any) -> Any:
        # On the raw mapping: an invalid ami must not also read as a missing one.
        if isinstance(value, dict):
            given = [key for key in ("ami", "launch_template") if value.get(key) is not None]
            if not given:
                raise ValueError("no image: set ami (e.g. ami-0a1b2c3d) or launch_template")
            if len(given) == 2:
                raise ValueError("both ami and launch_template are set: keep one")
        return value

    @field_validator("poll_interval")
    @classmethod
    def _poll_not_too_fast(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("poll_interval below 1s would flood Temporal; use at least 1s")
        return value

    @field_validator("system_reserved_memory")
    @classmethod
    def _reserve_leaves_memory(cls, value: int, info: ValidationInfo) -> int:
        for declared in info.data.get("instance_types") or []:
            if declared.memory - value < MIN_MEMORY_MIB:
                raise ValueError(
                    f"{value} MiB leaves nothing for tasks on {declared.name}"
                    f" ({declared.memory} MiB): lower it or drop that instance type"
                )
        return value

    def instance_type(self, name: str) -> InstanceType | None:
        """The declared instance type called ``name``, if any."""
        return next((t for t in self.instance_types if t.name == name), None)

    def offered_memory(self, instance_type: InstanceType) -> int:
        """MiB the agent on an instance of this type offers (its memory minus the reserve)."""
        return max(1, instance_type.memory - self.system_reserved_memory)
