"""A CLI command reaches the dev server chosen only by a ``temporal.toml`` profile
(TEMPORAL_CONFIG_FILE + TEMPORAL_PROFILE), as the Temporal CLI would."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cli_fork import run_cli

pytestmark = pytest.mark.integration


def test_cli_uses_the_temporal_profile(dev_server: str, tmp_path: Path) -> None:
    toml = tmp_path / "temporal.toml"
    # The default profile points at a closed port: only the selected one works.
    toml.write_text(
        '[profile.default]\naddress = "127.0.0.1:1"\n\n'
        f'[profile.dev]\naddress = "{dev_server}"\nnamespace = "default"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "TITUS_FLOW_"))}
    env.update(
        TITUS_FLOW_HOME=str(tmp_path / "home"),
        TITUS_FLOW_CONFIG=str(tmp_path / "no-config.yaml"),
        TEMPORAL_CONFIG_FILE=str(toml),
        TEMPORAL_PROFILE="dev",
    )
    done = run_cli(["jobs", "list", "-o", "json"], env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert isinstance(json.loads(done.stdout), list)
