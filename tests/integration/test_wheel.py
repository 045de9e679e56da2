"""The package as users get it: a PEP 517 build, installed from the wheel into a
fresh virtualenv outside the source tree, then used for real (issue: shippable).

An editable install hides a module missing from the wheel; these tests only ever
import titus_flow from the fresh install.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from titus_cluster import Cluster

import titus_flow

SOURCE = Path(titus_flow.__file__).resolve().parents[1]


# Runs inside the fresh venv: imports every module of the installed package and
# asks every CLI command for --help; prints what it found as JSON.
_PROBE = r"""
import importlib, json, pkgutil, sys
from importlib.metadata import version
from pathlib import Path

import click
from click.testing import CliRunner

import titus_flow
from titus_flow.cli import _register_commands
from titus_flow.cli.app import cli

modules, outside = [], []
for info in pkgutil.walk_packages(titus_flow.__path__, "titus_flow."):
    module = importlib.import_module(info.name)
    modules.append(info.name)
    if not Path(module.__file__).resolve().is_relative_to(Path(sys.prefix).resolve()):
        outside.append(info.name)

_register_commands()
helps = {}
def walk(command, path):
    result = CliRunner().invoke(cli, [*path, "--help"])
    helps[" ".join(path) or "(root)"] = result.exit_code
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            walk(sub, [*path, name])
walk(cli, [])

print(json.dumps({
    "file": titus_flow.__file__, "modules": modules, "outside": outside, "helps": helps,
    "version": titus_flow.__version__, "metadata_version": version("titus-flow"),
}))
"""


def _source_modules() -> set[str]:
    """Every module of the source tree, as the installed package must have it."""
    package = SOURCE / "titus_flow"
    found = set()
    for path in package.rglob("*.py"):
        if "__pycache__" in path.parts:
            continue
        parts = path.relative_to(SOURCE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts != ("titus_flow",) and parts[-1] != "__main__":
            found.add(".".join(parts))
    return found


def _isolated_env() -> dict[str, str]:
    """This environment without PYTHONPATH, which would put a source tree first."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _build_and_install(work: Path) -> Path:
    """Build the sdist and wheel into ``work/dist``, install the wheel into ``work/venv``."""
    env = _isolated_env()
    dist = work / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(SOURCE)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (wheel,) = dist.glob("titus_flow-*.whl")
    assert list(dist.glob("titus_flow-*.tar.gz")), "the build made no sdist"

    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120, env=env)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout.strip()
    )
    dev_site = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    (site / "zz-titus-flow-test-dependencies.pth").write_text(dev_site + "\n")
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    return python


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """Python of a fresh venv with titus-flow installed from a freshly built wheel.

    The build is the standard one (``python -m build``: an sdist, then the wheel
    from that sdist), without build isolation so no test reaches a package index.
    Dependencies are shared with the development venv through a ``.pth`` file
    that comes after the venv's own site-packages, so titus_flow itself is only
    ever the wheel's. One build serves the whole run: xdist workers share the
    run's temp root, and a lock makes the first one build while the others wait.
    """
    root = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        root = root.parent  # shared by the run's workers
    work = root / "wheel-install"
    with open(root / "wheel-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = work / "installed"
        if not done.exists():
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            done.write_text(str(_build_and_install(work)))
        return Path(done.read_text())


def test_wheel_holds_every_module_and_every_command_answers_help(
    installed: Path, tmp_path: Path
) -> None:
    probe = subprocess.run(
        [str(installed), "-c", _PROBE],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # never the source tree, whose titus_flow/ would be importable
        env=_isolated_env(),
    )
    assert probe.returncode == 0, probe.stderr[-4000:]
    found = json.loads(probe.stdout.splitlines()[-1])
    assert Path(found["file"]).resolve().is_relative_to(installed.parents[1].resolve())
    assert found["outside"] == [], "modules imported from outside the install"
    missing = _source_modules() - set(found["modules"])
    assert not missing, f"the wheel lacks {sorted(missing)}"
    assert {"workflows", "activities", "flow"} <= {name.split(".")[1] for name in found["modules"]}
    failed = {cmd: code for cmd, code in found["helps"].items() if code != 0}
    assert not failed, f"--help failed for {failed}"
    assert len(found["helps"]) > 40  # every group and command, not just the root
    # One version, from one place.
    assert found["version"] == found["metadata_version"] == titus_flow.__version__


def test_installed_console_script_runs(installed: Path, tmp_path: Path) -> None:
    script = installed.parent / "titus-flow"
    for argv in (["--help"], ["worker", "--help"], ["agent", "--help"]):
        done = subprocess.run(
            [str(script), *argv],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env=_isolated_env(),
        )
        assert done.returncode == 0, done.stderr
        assert "Usage: titus-flow" in done.stdout
    version = subprocess.run(
        [str(script), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=_isolated_env(),
    )
    assert version.stdout.strip() == f"titus-flow, version {titus_flow.__version__}"


@pytest.mark.docker
@pytest.mark.asyncio(loop_scope="session")
async def test_a_batch_job_runs_on_a_worker_and_agent_from_the_wheel(
    installed: Path, cluster_factory: Callable[[], Cluster], tmp_path: Path
) -> None:
    cluster = cluster_factory()
    # Only the install: not the source tree (`python -m` imports from its cwd first).
    cluster.python, cluster.cwd = str(installed), tmp_path
    cluster.env.pop("PYTHONPATH", None)
    cluster.start_worker()
    cluster.start_agent("wheel", "--cpu", "1", "--memory", "512Mi")
    job_file = tmp_path / "job.yaml"
    job_file.write_text(
        yaml.safe_dump(
            {
                "kind": "batch",
                "name": "from-the-wheel",
                "container": {"image": "busybox:latest", "command": "echo from the wheel"},
                "resources": {"cpu": 0.1, "memory": "32Mi", "disk": 0},
                "instances": 2,
            }
        )
    )
    done = cluster.cli("run", str(job_file), "-o", "json", timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr + cluster.logs()
    (view,) = json.loads(done.stdout)  # one view per job of the file
    assert view["state"] == "Succeeded"
    assert len(view["tasks"]) == 2
    # The processes really ran the installed package's Python.
    for name in ("worker", "agent-wheel"):
        argv = Path(f"/proc/{cluster.processes[name].pid}/cmdline").read_text().split("\0")
        assert argv[:3] == [str(installed), "-m", "titus_flow"]
    with zipfile.ZipFile(next((installed.parents[2] / "dist").glob("*.whl"))) as whl:
        assert "titus_flow/py.typed" in whl.namelist()
