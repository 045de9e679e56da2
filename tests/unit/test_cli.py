"""The CLI as users run it: exit codes, messages, help, schema (subprocesses, so the
exit codes are the real ones after os._exit)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import click
import jsonschema
import pytest
import yaml
from cli_fork import run_cli
from click.testing import CliRunner

from titus_flow import __version__
from titus_flow.cli import _register_commands
from titus_flow.cli.app import cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(
    p for p in (ROOT / "examples").iterdir() if p.suffix in {".yaml", ".yml", ".json"}
)


def titus(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return run_cli(args, cwd=cwd, timeout=60)


def test_version() -> None:
    result = titus("--version")
    assert result.returncode == 0
    assert __version__ in result.stdout


def test_validate_examples_exits_0() -> None:
    job_files = [str(p) for p in EXAMPLES] + [str(ROOT / "examples" / "retries.py")]
    result = titus("validate", *job_files)
    assert result.returncode == 0, result.stderr
    assert "hello" in result.stdout


def test_validate_of_the_examples_folder_skips_its_scripts() -> None:
    """What scripts/demo.sh runs: examples/load.py (a load generator) is not a job file."""
    folder = titus("validate", "examples/")
    assert folder.returncode == 0, folder.stderr
    assert "--  skipped  examples/load.py (no jobs or workflows)" in folder.stdout
    assert "ok  service  autoscaled-web" in folder.stdout
    named = titus("validate", "examples/load.py")
    assert named.returncode == 2 and "examples/load.py: no jobs found" in named.stderr


@pytest.mark.parametrize("attempt", range(3))  # repeated: the exit path must be stable
def test_bad_memory_exits_2_with_one_line_naming_the_field(tmp_path: Path, attempt: int) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ncontainer: {image: busybox}\nresources: {memory: lots}\n")
    result = titus("validate", str(bad))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "memory" in lines[0] and "lots" in lines[0] and "Gi" in lines[0]
    assert "Traceback" not in result.stderr


def test_validate_json_output_lists_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: Bad_Name\ncontainer: {image: busybox}\n")
    result = titus("validate", "-o", "json", str(bad))
    assert result.returncode == 2
    report = json.loads(result.stdout)
    assert report["valid"] is False and any("name" in e for e in report["errors"])


def test_run_with_bad_input_submits_nothing_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ncontainer: {image: busybox}\ninstances: 0\n")
    # The address points nowhere: reaching Temporal would fail differently (exit 1
    # with "cannot reach"); validation must stop it first.
    result = run_cli(["--address", "127.0.0.1:9", "run", str(bad)], timeout=60)
    assert result.returncode == 2
    assert "instances" in result.stderr and "cannot reach" not in result.stderr


def test_unknown_command_and_bad_option_exit_2() -> None:
    assert titus("no-such-command").returncode == 2
    assert titus("validate").returncode == 2  # missing FILE


def test_unreachable_server_is_a_clear_error_not_a_traceback() -> None:
    result = titus("--address", "127.0.0.1:9", "jobs", "list")
    assert result.returncode == 1  # the cluster, not the input (2)
    assert result.stderr.startswith("error: cannot reach Temporal at 127.0.0.1:9 (")
    assert len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_schema_validates_the_example_files() -> None:
    result = titus("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    for path in EXAMPLES:
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "x", "container": {"image": "busybox"}, "memory": 1}, schema)


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found += _commands(command, (*prefix, name))
    return found


def test_every_command_has_help() -> None:
    _register_commands()
    commands = _commands(cli)
    assert ("run",) in commands and ("job", "describe") in commands
    runner = CliRunner()
    for path in commands:
        result = runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output


def _command(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


@pytest.mark.parametrize("bad", ["", " ", "../etc", "a/b"])
def test_every_job_id_argument_is_checked_before_any_call(bad: str) -> None:
    """Exit 2 naming JOB_ID, never a server's refusal (the runner has no server to call)."""
    _register_commands()
    taking = [
        path
        for path in _commands(cli)
        if any(p.name == "job_id" for p in _command(path).params if isinstance(p, click.Argument))
    ]
    assert ("job", "describe") in taking and ("lb",) in taking and len(taking) >= 10
    runner = CliRunner()
    for path in taking:
        command = _command(path)
        arguments = [p for p in command.params if isinstance(p, click.Argument)]
        # JOB_ID first; any other argument a harmless word (checked after it).
        argv = [bad if p.name == "job_id" else "x" for p in arguments]
        result = runner.invoke(cli, [*path, *argv])
        assert result.exit_code == 2, (path, result.output)
        assert "Invalid value for 'JOB_ID': invalid job id" in result.output, (path, result.output)
