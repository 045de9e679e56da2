"""Metrics endpoint of a process (issue #15): address checks, agent meters, bounded labels."""

from __future__ import annotations

import asyncio
import os
import re
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_fork import run_cli
from click.testing import CliRunner
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from titus_flow import metrics as m
from titus_flow.cli import _register_commands, cli
from titus_flow.errors import UserError
from titus_flow.ids import ID_PATTERN
from titus_flow.metrics import Sample, parse_scrape, total
from titus_flow.runtime.base import ImageNotFoundError
from titus_flow.telemetry import AgentMeters, check_metrics_address, launch_result

# What a task id looks like (<job id>-<index>, the job id ending in a random hex part).
TASK_OR_JOB_ID = re.compile(rf"{ID_PATTERN}-[0-9a-f]{{6,}}(-[0-9]+)?")


@pytest.mark.parametrize("good", ["127.0.0.1:9464", "localhost:1", "0.0.0.0:65535", "[::1]:9464"])
def test_good_addresses_pass(good: str) -> None:
    assert check_metrics_address(good) == good


@pytest.mark.parametrize(
    "bad", ["9464", ":9464", "127.0.0.1:", "127.0.0.1:0", "h:70000", "[x]:1", "a b:1"]
)
def test_bad_addresses_name_the_flag_and_the_fix(bad: str) -> None:
    with pytest.raises(UserError, match=r"--metrics-address .*HOST:PORT.*127\.0\.0\.1:9464"):
        check_metrics_address(bad)


@pytest.mark.parametrize("command", ["worker", "agent", "codec-server"])
def test_every_process_command_checks_the_flag(command: str) -> None:
    _register_commands()
    result = CliRunner().invoke(cli, [command, "--metrics-address", "nonsense"])
    assert isinstance(result.exception, UserError), result.output
    assert "--metrics-address 'nonsense': use HOST:PORT" in str(result.exception)


def test_a_bad_setting_exits_2_without_a_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "TITUS_FLOW_HOME": str(tmp_path), "TITUS_FLOW_METRICS_ADDRESS": "9464"}
    done = run_cli(["worker"], env=env, timeout=60)
    assert done.returncode == 2, done
    assert "setting metrics_address" in done.stderr and "HOST:PORT" in done.stderr
    assert "Traceback" not in done.stderr


def test_launch_results_are_a_bounded_word() -> None:
    assert launch_result(asyncio.CancelledError()) == "cancelled"
    assert launch_result(ImageNotFoundError("x")) == "image_not_found"
    assert launch_result(RuntimeError("x")) == "runtime"


def scrape(address: str) -> list[Sample]:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as answer:
        return parse_scrape(answer.read().decode())


def test_agent_meters_on_a_scrape_have_bounded_labels(free_port: Callable[[], int]) -> None:
    address = f"127.0.0.1:{free_port()}"
    runtime = Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(bind_address=address, counters_total_suffix=True)
        )
    )
    meters = AgentMeters(runtime.metric_meter)
    meters.attempt_running("docker", +1)
    meters.attempt_running("docker", +1)
    meters.attempt_running("docker", -1)
    with meters.launching("docker"):
        pass
    with pytest.raises(ImageNotFoundError), meters.launching("docker"):
        raise ImageNotFoundError("hello-1a2b3c4d-0: no such image")
    samples = scrape(address)
    assert total(samples, m.AGENT_TASKS_RUNNING, driver="docker") == 1
    launches = f"{m.AGENT_LAUNCHES}_total"
    assert total(samples, launches, result="ok") == 1
    assert total(samples, launches, result="image_not_found") == 1
    ours = [s for s in samples if m.defined_name(s.name)]
    assert ours and {key for s in ours for key in s.labels} <= m.LABEL_KEYS | {"service_name"}
    assert not [s for s in samples for v in s.labels.values() if TASK_OR_JOB_ID.fullmatch(v)]


def test_the_id_check_would_see_a_task_id() -> None:
    assert TASK_OR_JOB_ID.fullmatch("hello-1a2b3c4d-0")
    assert TASK_OR_JOB_ID.fullmatch("hello-1a2b3c4d")
    assert not TASK_OR_JOB_ID.fullmatch("image_not_found")
    assert not TASK_OR_JOB_ID.fullmatch("temporal-core-sdk")
