"""The instance bootstrap script."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from titus_flow import __version__
from titus_flow.fleet import load_fleet
from titus_flow.fleet.userdata import agent_arguments, agent_environment, user_data

EXAMPLE = Path(__file__).parents[2] / "examples" / "fleets" / "batch-pool.yaml"


def test_script_reads_identity_from_imdsv2_and_starts_the_agent() -> None:
    script = user_data(load_fleet(EXAMPLE))
    assert script.startswith("#!/bin/bash\n")
    assert 'curl -sSf -X PUT "$IMDS/api/token"' in script
    assert "X-aws-ec2-metadata-token: $TOKEN" in script
    for path in ("instance-id", "instance-type", "placement/availability-zone"):
        assert f"imds {path})" in script
    assert (
        "--id $INSTANCE_ID --attribute zone=$ZONE --attribute instance_type=$INSTANCE_TYPE"
        in script
    )
    assert "--attribute instance_id=$INSTANCE_ID" in script
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
    assert agent_environment(spec)["TITUS_FLOW_ADDRESS"] == "temporal.internal:7233"
