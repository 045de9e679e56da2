"""``titus-flow jobs list`` with many jobs in visibility (issue 11: it stays fast).

A fresh dev server (SQLite file, as ``titus-flow up`` runs it) is filled with
job workflows as ``titus-flow run`` starts them (the job's type and search
attributes), on a task queue no worker polls: they only have to exist. Each
round adds jobs up to the next ``--sizes`` total, the newest batch running and
the rest ended (terminated), as a cluster's history looks; then it times the
command a user runs, as a new process (``jobs list``, its default page of
100), against the same command at the smallest size. Cost should stay flat:
the listing stops once no older job can be among the newest.

Run: ``.venv/bin/python bench/jobs_list.py [--sizes 1000,10000] [--running 100]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from temporalio.client import Client

from titus_flow import BatchJob, Container, Resources, stack, visibility
from titus_flow.contracts import BatchJobInput
from titus_flow.converter import WORKER_DATA_CONVERTER
from titus_flow.workflows.batch import BatchJobWorkflow

JOB = BatchJob(
    name="listed",
    container=Container(image="busybox:latest", command="true"),
    resources=Resources(),
)
AT_ONCE = 64  # concurrent start / terminate calls


async def add_jobs(client: Client, first: int, count: int, running: int) -> None:
    """Start jobs ``first`` .. ``first + count - 1``; end all but the last ``running``."""
    limit = asyncio.Semaphore(AT_ONCE)

    async def one(index: int) -> None:
        job_id = f"listed-{index:06d}"
        async with limit:
            handle = await client.start_workflow(
                BatchJobWorkflow.run,
                BatchJobInput(job=JOB, submitted_at=datetime.now(UTC)),
                id=job_id,
                task_queue="nobody-polls-this",
                search_attributes=visibility.job_search_attributes(job_id, JOB),
            )
            if index < first + count - running:
                await handle.terminate("benchmark: an ended job")

    await asyncio.gather(*(one(i) for i in range(first, first + count)))


def list_seconds(env: dict[str, str]) -> tuple[float, int]:
    """Wall time of ``titus-flow jobs list -o json`` as a new process, and the rows it printed."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "titus_flow", "jobs", "list", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return time.perf_counter() - start, done.stdout.count('"id"')


async def main() -> None:
    """Fill visibility size by size, timing ``jobs list`` at each."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="total jobs at each measurement")
    parser.add_argument("--running", type=int, default=100, help="jobs still running")
    args = parser.parse_args()
    sizes = sorted(int(part) for part in args.sizes.split(","))
    home = Path(tempfile.mkdtemp(prefix="titus-list-"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"127.0.0.1:{port}"
    binary = stack.temporal_binary()
    argv = stack.server_argv(binary, port=port, ui_port=None, db_filename=home / "list.db")
    server = stack.start_process(argv, home / "temporal.log")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TITUS_FLOW_", "TEMPORAL_"))}
    env.update(TITUS_FLOW_ADDRESS=address, TITUS_FLOW_HOME=str(home))
    try:
        stack.wait_ready(binary, address, lambda: server.poll() is None, home / "temporal.log")
        client = await Client.connect(address, data_converter=WORKER_DATA_CONVERTER)
        print(f"jobs list: {os.cpu_count()} cores; {args.running} running, the rest ended")
        have, first_seconds = 0, None
        for size in sizes:
            started = time.perf_counter()
            await add_jobs(client, have, size - have, min(args.running, size - have))
            filled = time.perf_counter() - started
            have = size
            await asyncio.sleep(2)  # visibility is written asynchronously
            seconds, rows = min(list_seconds(env) for _ in range(3))
            first_seconds = first_seconds or seconds
            print(
                f"jobs={size:<7} list={seconds:.2f}s rows={rows} (filled in {filled:.0f}s)"
                f" ratio to {sizes[0]}: {seconds / first_seconds:.2f}x",
                flush=True,
            )
    finally:
        stack.stop_process_group(server.pid, lambda: server.poll() is None)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
