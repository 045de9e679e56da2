"""Fleet files: validation with field-named errors, and the CLI's exit codes."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_fork import run_cli

from titus_flow.errors import SpecError
from titus_flow.fleet import load_fleet, parse_fleet

ROOT = Path(__file__).parents[2]
BASE: dict[str, Any] = {
    "name": "pool",
    "region": "us-east-1",
    "ami": "ami-12345678",
    "instance_types": ["m5.large"],
    "subnets": [{"id": "subnet-1a", "zone": "us-east-1a"}],
    "max": 3,
    "temporal": {"address": "t:7233"},
}


def errors(**changes: Any) -> list[str]:
    raw = {k: v for k, v in {**BASE, **changes}.items() if v is not None}
    with pytest.raises(SpecError) as info:
        parse_fleet(raw, "f.yaml")
    return info.value.messages


def test_example_fleet_loads_and_fills_known_sizes() -> None:
    spec = load_fleet(ROOT / "examples" / "fleets" / "batch-pool.yaml")
    m5 = spec.instance_type("m5.large")
    assert m5 is not None and (m5.cpu, m5.memory) == (2, 8192)
    custom = spec.instance_type("m7i.large")
    assert custom is not None and custom.memory == 8192
    assert spec.idle_timeout.total_seconds() == 600
    assert spec.offered_memory(m5) == 8192 - 512


def test_spec_is_frozen_and_round_trips() -> None:
    spec = parse_fleet(BASE, "f")
    with pytest.raises(Exception):  # noqa: B017  (pydantic's frozen error)
        spec.max = 4  # type: ignore[misc]
    assert parse_fleet(spec.model_dump(mode="json"), "again") == spec


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"min": 5}, "f.yaml: max: max 3 is below min 5: raise max or lower min"),
        (
            {"instance_types": ["m5.large", "x9.huge"]},
            "f.yaml: instance_types[1]: unknown instance type 'x9.huge': declare its cpu",
        ),
        ({"subnets": []}, "f.yaml: subnets: no subnets: list at least one"),
        ({"instance_types": []}, "f.yaml: instance_types: no instance types"),
        ({"ami": None}, "f.yaml: no image: set ami"),
        ({"launch_template": {"name": "lt"}}, "f.yaml: both ami and launch_template are set"),
        (
            {"subnets": [{"id": "subnet-1", "zone": "us-east-1a"}] * 2},
            "f.yaml: subnets: subnet-1 listed twice",
        ),
        (
            {"tags": {"titus-flow:fleet": "x"}},
            "f.yaml: tags: tag 'titus-flow:fleet' uses the prefix",
        ),
        ({"purchase": {"spot_percentage": 120}}, "f.yaml: purchase.spot_percentage:"),
        (
            {"subnets": [{"id": "vpc-1", "zone": "us-east-1a"}]},
            "f.yaml: subnets[0].id: invalid subnet id 'vpc-1'",
        ),
        ({"idle_timeout": "soon"}, "f.yaml: idle_timeout: invalid duration 'soon'"),
        ({"poll_interval": "10ms"}, "f.yaml: poll_interval: poll_interval below 1s"),
        (
            {"agent": {"attributes": {"zone": "x"}}},
            "f.yaml: agent.attributes: zone come from the instance itself",
        ),
        ({"mx": 3}, "f.yaml: mx: unknown field 'mx'; did you mean 'max'?"),
        (
            {"instance_types": [{"name": "x1.tiny", "cpu": 1, "memory": "512Mi"}]},
            "f.yaml: system_reserved_memory: 512 MiB leaves nothing for tasks on x1.tiny",
        ),
        ({"temporal": None}, "f.yaml: temporal: required field is missing; add it"),
    ],
)
def test_invalid_fleets_name_the_field(changes: dict[str, Any], expected: str) -> None:
    found = errors(**changes)
    assert any(line.startswith(expected) for line in found), found


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(args, timeout=60)


def test_cli_rejects_invalid_fleet_files_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**BASE, "min": 4, "subnets": [], "instance_types": ["zz.top"]}))
    for command in (["fleet", "apply", str(bad)], ["fleet", "user-data", str(bad)]):
        result = _cli(*command)
        assert result.returncode == 2, result
        assert "max: max 3 is below min 4" in result.stderr
        assert "subnets: no subnets" in result.stderr
        assert "instance_types[0]: unknown instance type 'zz.top'" in result.stderr
        assert "Traceback" not in result.stderr


def test_cli_user_data_prints_the_bootstrap() -> None:
    result = _cli("fleet", "user-data", str(ROOT / "examples" / "fleets" / "batch-pool.yaml"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("#!/bin/bash")
    assert "titus-flow agent $AGENT_ARGS" in result.stdout


def test_cli_help_and_scale_bounds() -> None:
    assert _cli("fleet", "--help").returncode == 0
    result = _cli("fleet", "scale", "pool", "--min", "3", "--max", "1")
    assert result.returncode == 2 and "--min 3 is above --max 1" in result.stderr
