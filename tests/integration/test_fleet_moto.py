"""A real AWS-compatible HTTP endpoint for fleet tests: ``moto_server`` on 127.0.0.1.

Other fleet test modules import the fixtures from here. The fleet's boto3 client
talks to it unchanged, through ``endpoint_url``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from mypy_boto3_ec2 import EC2Client

from titus_flow.fleet import FleetSpec, parse_fleet

REGION = "us-east-1"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
}


@dataclass
class Moto:
    """A running moto server and a VPC with two subnets in two zones."""

    url: str
    ami: str
    subnets: list[tuple[str, str]]  # (subnet id, zone)

    def ec2(self) -> EC2Client:
        client: EC2Client = boto3.client("ec2", region_name=REGION, endpoint_url=self.url)
        return client

    def fleet(self, name: str = "pool", **fields: object) -> FleetSpec:
        """A fleet spec pointing at this server (fields override the defaults)."""
        raw: dict[str, object] = {
            "name": name,
            "region": REGION,
            "ami": self.ami,
            "instance_types": ["m5.large", "m5.xlarge"],
            "subnets": [{"id": s, "zone": z} for s, z in self.subnets],
            "max": 5,
            "temporal": {"address": "127.0.0.1:7233"},
            "endpoint_url": self.url,
            "tags": {"team": "infra"},
            **fields,
        }
        return parse_fleet(raw, "test")

    def instances(self, fleet: str) -> list[dict[str, object]]:
        """Non-terminated instances with the fleet tag, straight from EC2."""
        pages = self.ec2().describe_instances(
            Filters=[
                {"Name": "tag:titus-flow:fleet", "Values": [fleet]},
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
            ]
        )
        return [dict(i) for r in pages["Reservations"] for i in r["Instances"]]


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"moto_server did not answer on {url}: {log.read_text()[-2000:]}")


@pytest.fixture(scope="session")
def aws_env() -> Iterator[None]:
    """Fake credentials for the standard chain; never real ones."""
    saved = {k: os.environ.get(k) for k in AWS_ENV}
    os.environ.update(AWS_ENV)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@contextlib.contextmanager
def moto_server(port: int, log: Path) -> Iterator[Moto]:
    """``moto_server`` on loopback ``port`` with a VPC of two subnets; stopped after.

    Shared by the ``moto`` fixture and scripts/record_histories.py.
    """
    binary = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    assert binary, "moto_server is not installed (pip install 'moto[server]')"
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **AWS_ENV},
            start_new_session=True,
        )
    try:
        _wait_ready(url, proc, log)
        ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=url)
        ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
        subnets = []
        for index, zone in enumerate(("us-east-1a", "us-east-1b")):
            subnet = ec2.create_subnet(
                VpcId=vpc, CidrBlock=f"10.42.{index}.0/24", AvailabilityZone=zone
            )["Subnet"]["SubnetId"]
            subnets.append((subnet, zone))
        yield Moto(url=url, ami=ami, subnets=subnets)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def moto(
    aws_env: None, free_port: Callable[[], int], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Moto]:
    """``moto_server`` on a free loopback port, with a VPC and two subnets."""
    with moto_server(free_port(), tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


def test_moto_server_answers_describe_instances(moto: Moto) -> None:
    assert moto.ec2().describe_instances()["ResponseMetadata"]["HTTPStatusCode"] == 200
