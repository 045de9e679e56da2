"""Unit tests of the isolation helpers: image policy, ids, safe result reading, pruning,
host-network placement and env_file secrets."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from titus_flow.activities.agent_files import prune_kept_output, read_output
from titus_flow.errors import UserError
from titus_flow.ids import check_id, split_task_id
from titus_flow.runtime.policy import image_refusal
from titus_flow.secrets import SecretNotFoundError, resolve_secrets
from titus_flow.spec.constraints import Constraints, placement_constraints


@pytest.mark.parametrize(
    ("image", "allowed", "ok"),
    [
        ("busybox:latest", [], True),
        ("busybox:latest", ["docker.io"], True),
        ("busybox:latest", ["127.0.0.1:5000"], False),
        ("127.0.0.1:5000/busybox:1", ["127.0.0.1:5000"], True),
        ("127.0.0.1:5000/team/app:1", ["127.0.0.1:5000/team/"], True),
        ("127.0.0.1:5000/other/app:1", ["127.0.0.1:5000/team/"], False),
        ("ghcr.io/o/app:2", ["ghcr.io/o/app"], True),
        (f"ghcr.io/o/app@sha256:{'a' * 64}", [f"sha256:{'a' * 64}"], True),
        ("ghcr.io/o/app:2", [f"sha256:{'a' * 64}"], False),
    ],
)
def test_image_policy(image: str, allowed: list[str], ok: bool) -> None:
    assert (image_refusal(image, allowed) is None) is ok


@pytest.mark.parametrize("bad", ["../etc", ".", "..", "a/b", "", "-x", "a\nb", "x" * 201])
def test_ids_that_could_leave_a_directory_are_refused(bad: str) -> None:
    with pytest.raises(UserError, match="invalid job id"):
        check_id(bad)
    with pytest.raises(UserError, match="invalid task id"):
        split_task_id(f"{bad}-0")


def test_task_ids_split_into_job_and_index() -> None:
    assert split_task_id("hello-3f9c2a1b-12") == ("hello-3f9c2a1b", 12)


def test_output_through_a_symlink_fifo_or_hard_link_is_ignored(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text('{"stolen": true}')
    link = tmp_path / "link"
    link.mkdir()
    (link / "result.json").symlink_to(secret)
    assert read_output(link) == (None, "output ignored: result.json is a symbolic link")
    fifo = tmp_path / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / "result.json")
    assert read_output(fifo) == (None, "output ignored: result.json is not a regular file")
    hard = tmp_path / "hard"
    hard.mkdir()
    os.link(secret, hard / "result.json")
    assert "hard link" in read_output(hard)[1]
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "result.json").write_text('{"rows": 3}')
    assert read_output(plain) == ({"rows": 3}, "")
    assert read_output(tmp_path / "absent") == (None, "")


def _ended_attempt(log_dir: Path, task: str, size: int, ended: float) -> None:
    (log_dir / task).mkdir(parents=True, exist_ok=True)
    (log_dir / task / "attempt-1.log").write_bytes(b"x" * size)
    (log_dir / task / "attempt-1.out").mkdir()
    exit_file = log_dir / task / "attempt-1.exit.json"
    exit_file.write_text("{}")
    os.utime(exit_file, (ended, ended))


def test_pruning_by_age_then_total_size_keeps_recent_and_running_attempts(tmp_path: Path) -> None:
    now = 1_000_000.0
    _ended_attempt(tmp_path, "old-0", 10, now - 10_000)
    _ended_attempt(tmp_path, "big-0", 1000, now - 500)
    _ended_attempt(tmp_path, "new-0", 1000, now - 200)
    _ended_attempt(tmp_path, "fresh-0", 5000, now - 5)
    (tmp_path / "running-0").mkdir()
    (tmp_path / "running-0" / "attempt-1.log").write_bytes(b"y" * 5000)
    removed = prune_kept_output(tmp_path, max_age=3600, max_total_bytes=6500, now=now)
    assert removed == 2  # old (age), then big (the oldest over the total)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh-0", "new-0", "running-0"]


def test_host_network_adds_a_hard_constraint_only_for_host() -> None:
    assert placement_constraints(Constraints(), "bridge") == Constraints()
    hard = placement_constraints(Constraints(), "host").hard.attributes
    assert hard == {"titus-flow.host-network": "allowed"}


def test_env_file_secrets_only_from_the_secrets_dir(tmp_path: Path) -> None:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "a.env").write_text("# team a\nexport TOKEN='t0k'\nOTHER=x\n")
    (tmp_path / "outside.env").write_text("TOKEN=nope\n")
    (secrets_dir / "escape.env").symlink_to(tmp_path / "outside.env")

    def resolve(ref: str) -> dict[str, str]:
        return asyncio.run(resolve_secrets({"TOKEN": ref}, secrets_dir=secrets_dir))

    assert resolve(f"env_file:{secrets_dir}/a.env") == {"TOKEN": "t0k"}
    assert resolve(f"env_file:{secrets_dir}/a.env#OTHER") == {"TOKEN": "x"}
    for ref, why in [
        (f"env_file:{tmp_path}/outside.env", "only files under"),
        (f"env_file:{secrets_dir}/escape.env", "only files under"),
        (f"env_file:{secrets_dir}/a.env#MISSING", "sets no MISSING"),
        (f"env_file:{secrets_dir}/none.env", "cannot open"),
    ]:
        with pytest.raises(SecretNotFoundError, match=why) as info:
            resolve(ref)
        assert "t0k" not in str(info.value) and "nope" not in str(info.value)
