"""The capacity-groups and apply commands with bad input: exit 2, one line naming the
option or field and the fix, nothing sent (the address points nowhere, so reaching
for the cluster would say "cannot reach" instead)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from cli_fork import run_cli

from titus_flow import CapacityGroup
from titus_flow.cli.capacity_commands import _build, _parse
from titus_flow.errors import UserError

NOWHERE = "127.0.0.1:9"


def titus(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(["--address", NOWHERE, *args], timeout=60)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert all(text in lines[0] for text in expected), lines[0]
    assert "cannot reach" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("create", "Prod"), ("NAME: invalid name 'Prod'", "lowercase")),
        (("update", "a_b", "--limit-tasks", "3"), ("NAME: invalid name 'a_b'",)),
        (("create", "p", "--limit-cpu", "two"), ("--limit-cpu: invalid number of cores 'two'",)),
        (("update", "p", "--limit-tasks", "1.5"), ("--limit-tasks: invalid count '1.5'",)),
        (("update", "p", "--guarantee-memory", "lots"), ("--guarantee-memory: invalid size",)),
        (("create", "p", "--limit-tasks", "-1"), ("--limit-tasks: must be greater than",)),
        (
            ("create", "p", "--guarantee-cpu", "2"),
            ("--guarantee-cpu: only critical groups hold a guarantee", "tier critical"),
        ),
        (
            ("create", "p", "--tier", "critical", "--guarantee-cpu", "4", "--limit-cpu", "2"),
            ("--limit-cpu:", "raise --limit-cpu or lower --guarantee-cpu"),
        ),
        (
            ("create", "p", "--tier", "critical", "--guarantee-cpu", "0"),
            ("--guarantee-cpu: guarantees nothing",),
        ),
    ],
)
def test_bad_options_exit_2_naming_the_option(args: tuple[str, ...], expected: tuple[str]) -> None:
    assert_one_line_error(titus("capacity-groups", *args), *expected)


def test_bad_tier_is_a_usage_error() -> None:
    result = titus("capacity-groups", "create", "p", "--tier", "gold")
    assert result.returncode == 2 and "--tier" in result.stderr


def test_apply_validates_the_whole_file_before_any_change(tmp_path: Path) -> None:
    # The first group is fine; the second is not: nothing may be applied.
    path = tmp_path / "groups.yaml"
    path.write_text(
        "capacity_groups:\n"
        "  - {name: prod, tier: critical, guarantee: {cpu: 2}}\n"
        "  - {name: batch, limit: {tasks: many}}\n"
    )
    assert_one_line_error(
        titus("apply", str(path)), f"{path}: batch.limit.tasks: must be a valid integer"
    )


def test_apply_of_a_job_file_says_how_to_run_it(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("name: hello\ncontainer: {image: busybox}\n")
    assert_one_line_error(titus("apply", str(path)), "jobs run with `titus-flow run`")


def test_run_of_a_group_file_says_how_to_apply_it(tmp_path: Path) -> None:
    path = tmp_path / "groups.yaml"
    path.write_text("capacity_groups: [{name: batch}]\n")
    assert_one_line_error(titus("run", str(path)), f"apply them with `titus-flow apply {path}`")


def test_validate_accepts_group_files_next_to_job_files(tmp_path: Path) -> None:
    (tmp_path / "groups.yaml").write_text("capacity_groups: [{name: batch, limit: {tasks: 4}}]\n")
    (tmp_path / "groups.py").write_text(
        "from titus_flow import CapacityGroup\n"
        "prod = CapacityGroup(name='prod', tier='critical', guarantee={'cpu': 2})\n"
    )
    (tmp_path / "job.yaml").write_text(
        "name: hello\ncontainer: {image: busybox}\ncapacity_group: batch\n"
    )
    result = titus("validate", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "capacity-group batch" in result.stdout and "capacity-group prod" in result.stdout
    assert "hello" in result.stdout


def test_validate_reports_a_bad_group_file(tmp_path: Path) -> None:
    path = tmp_path / "groups.yaml"
    path.write_text("capacity_groups: [{name: batch, guarantee: {cpu: 1}}]\n")
    assert_one_line_error(
        titus("validate", str(path)), f"{path}: batch.guarantee: only critical groups"
    )


# --- update merges the options given into the current group -------------------------------

PROD = CapacityGroup(
    name="prod",
    tier="critical",
    guarantee={"cpu": 4, "memory": "8Gi"},
    limit={"cpu": 8, "tasks": 10},
)


def update(base: CapacityGroup, tier: str | None = None, **options: str) -> CapacityGroup:
    return _build(base.name, base, tier, _parse(base.name, options))


@pytest.mark.parametrize(
    ("tier", "options", "expected"),
    [
        (None, {}, PROD.model_dump()),
        (
            None,
            {"limit_tasks": "20"},
            {**PROD.model_dump(), "limit": {**PROD.model_dump()["limit"], "tasks": 20}},
        ),
        (
            None,
            {"limit_cpu": "none"},
            {**PROD.model_dump(), "limit": {"cpu": None, "memory": None, "tasks": 10}},
        ),
        (None, {"limit_cpu": "none", "limit_tasks": "none"}, {**PROD.model_dump(), "limit": None}),
        (
            "flex",
            {"guarantee_cpu": "none", "guarantee_memory": "none"},
            {**PROD.model_dump(), "tier": "flex", "guarantee": None},
        ),
        (
            None,
            {"guarantee_memory": "16Gi"},
            {**PROD.model_dump(), "guarantee": {"cpu": 4.0, "memory": "16Gi"}},
        ),
    ],
)
def test_update_keeps_what_is_not_given(
    tier: str | None, options: dict[str, str], expected: dict[str, Any]
) -> None:
    assert update(PROD, tier, **options).model_dump() == expected


def test_update_to_flex_must_drop_the_guarantee() -> None:
    with pytest.raises(UserError, match="only critical groups hold a guarantee"):
        update(PROD, "flex")
