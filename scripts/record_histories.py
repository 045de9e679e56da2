"""Record scheduler workflow histories for tests/unit/test_scheduler_replay.py.

Run it with the code of the release whose histories you want (for the previous
release: ``git worktree add /tmp/prev <commit>`` and run this file from there
with this repo's venv), then copy the files it writes into
``tests/histories``::

    .venv/bin/python scripts/record_histories.py --out /tmp/histories

It starts its own in-memory dev server on a free loopback port, told to
suggest continue-as-new after a few dozen events so that one cheap scenario
crosses several runs; a control worker and two process-driver agents; then
runs a job that succeeds, a job whose tasks retry and fail, a capacity group
put, a drain of one agent and the loss (SIGKILL) of the other. Each run of the
scheduler's chain is written as ``scheduler-run-<n>.json.gz`` (the format the
replay tests read: ``temporal workflow show -o json`` output, gzipped).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import socket
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "integration")]  # this checkout's code

from titus_cluster import Cluster, eventually  # type: ignore[import-not-found]  # noqa: E402

from titus_flow import BatchJob, Container, Resources, stack  # noqa: E402
from titus_flow.spec.retry import Retry  # noqa: E402
from titus_flow.workflows.common import scheduler_workflow_id  # noqa: E402

# Low enough that the scenario continues the scheduler as new a few times.
SUGGEST_CONTINUE_AS_NEW_AFTER = 80


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _job(name: str, command: str, instances: int, attempts: int = 1) -> BatchJob:
    return BatchJob(
        name=name,
        container=Container(image="busybox:latest", command=["sh", "-c", command]),
        resources=Resources(cpu=0.1, memory=16, disk=0, network_mbps=0),
        instances=instances,
        retry=Retry(attempts=attempts),
    )


async def scenario(cluster: Cluster) -> None:
    """Jobs, a retry, a capacity group, a drain and a lost agent on one scheduler."""
    cluster.start_worker()
    cluster.start_agent("a", "--driver", "process", "--cpu", "2", "--memory", "1Gi")
    cluster.start_agent("b", "--driver", "process", "--cpu", "1", "--memory", "1Gi")
    client = await cluster.wait_for_agents(2)
    ok = await client.submit(_job("ok", "true", instances=3))
    assert (await cluster.wait_for(ok)).state.value == "Succeeded", ok
    retried = await client.submit(_job("retried", "exit 3", instances=2, attempts=2))
    await cluster.wait_for(retried)
    result = cluster.cli("capacity-groups", "create", "batchy", "--limit-tasks", "5")
    assert result.returncode == 0, result.stderr
    grouped = _job("grouped", "true", instances=2).model_copy(update={"capacity_group": "batchy"})
    await cluster.wait_for(await client.submit(grouped))
    await client.drain_agent(cluster.agent_id("b"))
    cluster.kill9("agent-b")

    async def lost() -> bool:
        states = {a.agent_id: a.state for a in await client.agents()}
        return states.get(cluster.agent_id("b")) == "lost"

    await eventually(lost, 120, "agent b marked lost")
    await cluster.wait_for(await client.submit(_job("after", "true", instances=2)))


async def dump(cluster: Cluster, out: Path) -> list[Path]:
    """Write every run of the scheduler's chain; return the files."""
    client = await cluster.client()
    temporal = client.temporal
    workflow_id = scheduler_workflow_id(cluster.control_queue)
    runs = [w.run_id async for w in temporal.list_workflows(f"WorkflowId = '{workflow_id}'")]
    written = []
    for n, run_id in enumerate(reversed(runs), start=1):  # oldest first
        history = await temporal.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        path = out / f"scheduler-run-{n}.json.gz"
        path.write_bytes(gzip.compress(history.to_json().encode(), mtime=0))
        written.append(path)
    return written


async def main() -> None:
    """Record the scenario on a fresh dev server and write the histories."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for the files")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    binary = stack.temporal_binary()
    port = _free_port()
    argv = stack.server_argv(binary, port=port, ui_port=None, db_filename=None)
    argv += [
        "--dynamic-config-value",
        f"limit.historyCount.suggestContinueAsNew={SUGGEST_CONTINUE_AS_NEW_AFTER}",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        proc = stack.start_process(argv, home / "temporal.log")

        def alive() -> bool:
            return proc.poll() is None

        address = f"127.0.0.1:{port}"
        cluster = Cluster(
            address=address,
            home=home / "cluster",
            control_queue="rec",
            cwd=ROOT,  # the processes run this checkout's code too
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("TITUS_FLOW_")},
                "TITUS_FLOW_ADDRESS": address,
                "TITUS_FLOW_HOME": str(home / "cluster"),
                "TITUS_FLOW_CONTROL_TASK_QUEUE": "rec",
                "TITUS_FLOW_LOG_LEVEL": "INFO",
            },
        )
        (cluster.home / "logs").mkdir(parents=True)
        try:
            stack.wait_ready(binary, address, alive, home / "temporal.log")
            await scenario(cluster)
            for path in await dump(cluster, args.out):
                print(path)
        except BaseException:
            print(cluster.logs(), file=sys.stderr)
            raise
        finally:
            await asyncio.to_thread(cluster.stop_all)  # it runs an event loop of its own
            stack.stop_process_group(proc.pid, alive)


if __name__ == "__main__":
    asyncio.run(main())
