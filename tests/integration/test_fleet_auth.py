"""Fleet instances against the moto server on 127.0.0.1: IMDSv2 with hop limit 1 on every
launch (a launch template's own options included), and credentials fetched from Secrets
Manager into owner-only files by `titus-flow fleet fetch-secret`."""

# ruff: noqa: F811  (the moto fixture is imported from test_fleet_moto, then requested)

from __future__ import annotations

import os
import secrets
import stat
import subprocess
from pathlib import Path

import boto3
from cli_fork import run_cli
from test_fleet_moto import AWS_ENV, REGION, Moto, aws_env, moto  # noqa: F401  (fixtures)

from titus_flow.fleet import ec2
from titus_flow.fleet.messages import LaunchInput, LaunchOption


def test_instances_require_imdsv2_with_hop_limit_one(moto: Moto) -> None:
    client = moto.ec2()
    template = f"lt{secrets.token_hex(3)}"
    # A template that allows IMDSv1 and two hops: the launch request overrides it.
    client.create_launch_template(
        LaunchTemplateName=template,
        LaunchTemplateData={
            "ImageId": moto.ami,
            "MetadataOptions": {"HttpTokens": "optional", "HttpPutResponseHopLimit": 2},
        },
    )
    for fields in ({}, {"ami": None, "launch_template": {"name": template}}):
        name = f"f{secrets.token_hex(4)}"
        spec = moto.fleet(name, **fields)
        subnet, zone = moto.subnets[0]
        request = LaunchInput(
            spec=spec,
            seq=1,
            count=1,
            options=[LaunchOption(instance_type="m5.large", subnet_id=subnet, zone=zone)],
        )
        # moto's own default hop limit is 1 and it ignores a template's options: the
        # request itself must carry them (as AWS applies them over the template's).
        assert ec2._run_arguments(request, 0)["MetadataOptions"] == {
            "HttpTokens": "required",
            "HttpEndpoint": "enabled",
            "HttpPutResponseHopLimit": 1,
        }
        ec2.launch(ec2.make_client(spec), request)
        (instance,) = moto.instances(name)
        options = instance["MetadataOptions"]
        assert isinstance(options, dict)
        assert options["HttpTokens"] == "required", options
        assert options["HttpPutResponseHopLimit"] == 1, options
        assert options["HttpEndpoint"] == "enabled", options


def _fetch(moto: Moto, secret_id: str, path: Path) -> subprocess.CompletedProcess[str]:
    args = ["fleet", "fetch-secret", "--region", REGION, "--endpoint-url", moto.url]
    env = {**os.environ, **AWS_ENV, "TITUS_FLOW_HOME": str(path.parent / "home")}
    return run_cli([*args, secret_id, str(path)], env=env, timeout=60)


def test_fetch_secret_writes_an_owner_only_file_and_never_prints_it(
    moto: Moto, tmp_path: Path
) -> None:
    manager = boto3.client("secretsmanager", region_name=REGION, endpoint_url=moto.url)
    name = f"tf/api-key-{secrets.token_hex(3)}"
    value = f"key-{secrets.token_hex(8)}"
    arn = manager.create_secret(Name=name, SecretString=value)["ARN"]
    binary = manager.create_secret(Name=f"{name}-bin", SecretBinary=b"\x00pem\xff")["ARN"]

    target = tmp_path / "etc" / "api-key"
    done = _fetch(moto, arn, target)
    assert done.returncode == 0, done.stderr
    assert target.read_text() == value
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert value not in done.stdout + done.stderr

    assert _fetch(moto, binary, tmp_path / "bin").returncode == 0
    assert (tmp_path / "bin").read_bytes() == b"\x00pem\xff"

    missing = _fetch(moto, f"{name}-absent", tmp_path / "absent")
    assert missing.returncode == 1
    assert "ResourceNotFoundException" in missing.stderr
    assert not (tmp_path / "absent").exists()
