"""The bootstrap an instance runs at first boot: Docker, titus-flow, then the agent.

The script reads the instance's id, type and zone from the instance metadata
service (IMDSv2: a session token first), so one script serves every instance
type of the fleet; the capacity each type offers is a ``case`` table generated
from the fleet file, the same numbers the planner reasons with.
"""

from __future__ import annotations

import shlex

from pydantic import ValidationError

from titus_flow.fleet.spec import FleetSpec, InstanceType, SecretSource

FLEET_ATTRIBUTE = "fleet"
"""Agent attribute naming the fleet an agent belongs to."""


def _cores(cpu: float) -> str:
    return str(int(cpu)) if float(cpu).is_integer() else str(cpu)


def resource_arguments(spec: FleetSpec, instance_type: InstanceType) -> list[str]:
    """``titus-flow agent`` options that depend only on the fleet and the instance type."""
    args = [
        "--cpu",
        _cores(instance_type.cpu),
        "--memory",
        f"{spec.offered_memory(instance_type)}Mi",
        "--disk",
        f"{instance_type.disk}Mi",
        "--network-mbps",
        str(instance_type.network_mbps),
        "--driver",
        spec.agent.driver,
        "--attribute",
        f"{FLEET_ATTRIBUTE}={spec.name}",
    ]
    for key, value in sorted(spec.agent.attributes.items()):
        args += ["--attribute", f"{key}={value}"]
    if spec.purchase.spot_percentage:  # spot instances drain on EC2's two-minute notice
        args.append("--spot-notices")
    return args


def instance_arguments(
    instance_id: str, instance_type: str, zone: str, private_ip: str | None = None
) -> list[str]:
    """``titus-flow agent`` options that identify one instance (id is the agent id).

    ``instance_id`` and ``private_ip`` are the addresses load balancers register
    the instance's tasks by (``instance`` and ``ip`` target groups).
    """
    args = [
        "--id",
        instance_id,
        "--attribute",
        f"zone={zone}",
        "--attribute",
        f"instance_type={instance_type}",
        "--attribute",
        f"instance_id={instance_id}",
    ]
    if private_ip is not None:
        args += ["--attribute", f"private_ip={private_ip}"]
    return args


def agent_arguments(
    spec: FleetSpec,
    instance_type: InstanceType,
    instance_id: str,
    zone: str,
    private_ip: str | None = None,
) -> list[str]:
    """The full ``titus-flow agent`` argument list for one instance."""
    return [
        "agent",
        *instance_arguments(instance_id, instance_type.name, zone, private_ip),
        *resource_arguments(spec, instance_type),
    ]


SECRETS_DIR = "/etc/titus-flow"
"""Root-only directory on the instance for credentials fetched at boot."""

# Credential of the fleet spec -> (file name under SECRETS_DIR, setting's env variable).
_CREDENTIALS = {
    "tls_cert": ("tls-cert.pem", "TITUS_FLOW_TLS_CERT"),
    "tls_key": ("tls-key.pem", "TITUS_FLOW_TLS_KEY"),
    "tls_ca": ("tls-ca.pem", "TITUS_FLOW_TLS_CA"),
    "api_key": ("api-key", "TITUS_FLOW_API_KEY_FILE"),
    "codec_keys": ("codec-keys", "TITUS_FLOW_CODEC_KEY_FILE"),
}


def _credentials(spec: FleetSpec) -> list[tuple[str, SecretSource]]:
    target = spec.temporal
    found = [(name, getattr(target, name)) for name in _CREDENTIALS]
    return [(name, source) for name, source in found if source is not None]


def credential_path(name: str, source: SecretSource) -> str:
    """Where the agent reads credential ``name``: its file, or where boot puts the secret."""
    return source.file or f"{SECRETS_DIR}/{_CREDENTIALS[name][0]}"


def agent_environment(spec: FleetSpec) -> dict[str, str]:
    """Environment telling the agent which Temporal service to join and how to authenticate.

    And where it uploads task logs, if the fleet says.
    """
    target = spec.temporal
    env = {
        "TITUS_FLOW_ADDRESS": target.address,
        "TITUS_FLOW_NAMESPACE": target.namespace,
        "TITUS_FLOW_CONTROL_TASK_QUEUE": target.control_task_queue,
    }
    if target.tls:
        env["TITUS_FLOW_TLS"] = "true"
    for name, source in _credentials(spec):
        env[_CREDENTIALS[name][1]] = credential_path(name, source)
    if spec.agent.log_bucket is not None:  # task logs to S3 (docs/logs.md)
        env["TITUS_FLOW_LOG_BUCKET"] = spec.agent.log_bucket
        env["TITUS_FLOW_LOG_PREFIX"] = spec.agent.log_prefix
    return env


def _fetch_secrets(spec: FleetSpec) -> str:
    """Boot-script lines that fetch the spec's Secrets Manager references into root-only files."""
    lines = [
        f"/opt/titus-flow/bin/titus-flow fleet fetch-secret --region {spec.region}"
        f" {shlex.quote(source.secret)} {shlex.quote(credential_path(name, source))}"
        for name, source in _credentials(spec)
        if source.secret is not None
    ]
    if not lines:
        return ""
    return "\n# Credentials from Secrets Manager (the instance role reads them).\n" + "\n".join(
        lines
    )


_HEADER = """#!/bin/bash
# titus-flow agent bootstrap for fleet {name} (generated by `titus-flow fleet user-data`).
set -euo pipefail

# Instance identity from IMDSv2: a session token, then the metadata with it.
IMDS=http://169.254.169.254/latest
TOKEN=$(curl -sSf -X PUT "$IMDS/api/token" -H "X-aws-ec2-metadata-token-ttl-seconds: 300")
imds() {{ curl -sSf -H "X-aws-ec2-metadata-token: $TOKEN" "$IMDS/meta-data/$1"; }}
INSTANCE_ID=$(imds instance-id)
INSTANCE_TYPE=$(imds instance-type)
ZONE=$(imds placement/availability-zone)
# The address ip target groups register this instance's tasks by.
PRIVATE_IP=$(imds local-ipv4)

# Docker, from the distribution's packages.
if ! command -v docker >/dev/null 2>&1; then
  if command -v dnf >/dev/null 2>&1; then dnf install -y docker python3 python3-pip
  elif command -v yum >/dev/null 2>&1; then yum install -y docker python3 python3-pip
  else apt-get update -y && apt-get install -y docker.io python3-venv
  fi
fi
systemctl enable --now docker

# titus-flow in its own virtualenv, at the pinned version.
python3 -m venv /opt/titus-flow
/opt/titus-flow/bin/pip install --quiet {package}
install -d -m 700 {secrets_dir}
{fetch_secrets}
# What this instance type offers (the fleet planner uses the same numbers).
case "$INSTANCE_TYPE" in
"""

_FOOTER = """  *) echo "instance type $INSTANCE_TYPE is not in fleet {name}" >&2; exit 1;;
esac
AGENT_ARGS="--id $INSTANCE_ID --attribute zone=$ZONE --attribute instance_type=$INSTANCE_TYPE"
AGENT_ARGS="$AGENT_ARGS --attribute instance_id=$INSTANCE_ID"
AGENT_ARGS="$AGENT_ARGS --attribute private_ip=$PRIVATE_IP $RESOURCES"
# printf, not a heredoc: nothing in the values is run. systemd splits $AGENT_ARGS.
printf 'AGENT_ARGS=%s\\n' "$AGENT_ARGS" > {secrets_dir}/agent.env

# A quoted heredoc: the shell expands nothing in the unit.
cat > /etc/systemd/system/titus-flow-agent.service <<'UNIT'
[Unit]
Description=titus-flow agent
After=docker.service network-online.target
Requires=docker.service

[Service]
EnvironmentFile={secrets_dir}/agent.env
{environment}
ExecStart=/opt/titus-flow/bin/titus-flow agent $AGENT_ARGS
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now titus-flow-agent
"""


def _checked(spec: FleetSpec) -> FleetSpec:
    """``spec`` validated again: every value rendered below must pass the spec's checks.

    A spec built without validation (``model_construct``, a copy with updates)
    could otherwise carry shell or systemd syntax into a script run as root.
    """
    try:
        return FleetSpec.model_validate(spec.model_dump(mode="json"))
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        message = f"fleet {spec.name!r}: refusing to render its boot script: {problems}"
        raise ValueError(message) from err


def user_data(spec: FleetSpec) -> str:
    """The cloud-init bash script that turns a fresh instance into a fleet agent.

    Raises ValueError when a field holds a value the spec does not allow.
    """
    spec = _checked(spec)
    cases = "".join(
        f"  {t.name}) RESOURCES={shlex.quote(shlex.join(resource_arguments(spec, t)))};;\n"
        for t in spec.instance_types
    )
    environment = "\n".join(
        # systemd unit syntax: Environment="KEY=value"; values are checked to need no escaping.
        f'Environment="{key}={value}"'
        for key, value in agent_environment(spec).items()
    )
    return (
        _HEADER.format(
            name=spec.name,
            package=shlex.quote(spec.agent.package),
            secrets_dir=SECRETS_DIR,
            fetch_secrets=_fetch_secrets(spec),
        )
        + cases
        + _FOOTER.format(name=spec.name, environment=environment, secrets_dir=SECRETS_DIR)
    )
