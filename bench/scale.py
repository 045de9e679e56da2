"""Scale: large batch jobs, a large service and many jobs at once, on hollow agents.

Each line of the benchmark runs on a stack of its own, as ``titus-flow up`` runs
it: a fresh dev server (SQLite file), a control worker process and one process of
hollow agents (``titus-flow agent --hollow N``: the real agent code, the sim
driver, tasks that "run" 1 s). So a line's peak RSS and warnings are its own.
For each line it prints tasks, agents, wall time, tasks/s, the largest workflow
history (events) and payload (bytes), the longest workflow task (wall time, from
the histories), the peak RSS of the control worker and of the hollow-agent
process, and the worker's TMPRL1104 ("workflow task over 5 s") and TMPRL1101
(deadlock) warnings; then tasks/s at the largest batch size
against the smallest, per agent count, from the same run.

Scenarios (issue #11): ``batch`` jobs of each ``--sizes`` on each ``--agents``;
``service``: a service job scaled 0 -> 1,000 -> 0; ``many``: 200 jobs of 50
tasks submitted at once; ``process``: a batch job of each ``--sizes`` running
``true`` as real processes on one process-driver agent, with ``titus-flow run``.

Run: ``.venv/bin/python bench/scale.py [--quick] [--sizes 1000,3000]
[--agents 100] [--scenarios batch,service,many] [--timeout 900]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from temporalio.service import RPCError

from titus_flow import BatchJob, Container, Resources, ServiceJob, stack
from titus_flow.client import JobNotFoundError, TitusClient, connect
from titus_flow.config import load_settings
from titus_flow.history_stats import history_stats
from titus_flow.spec.jobs import Capacity

TASK = Container(image="busybox:latest", command="sleep 1")
"""What every task runs: on the sim driver, 1 s and exit 0."""
TASK_RESOURCES = Resources(cpu=0.1, memory=64, disk=0, network_mbps=0)
AGENT_CPU, AGENT_MEMORY = "2", "16Gi"
"""Each hollow agent: 20 tasks at once (so a job spreads over many agents); 100
agents hold a 1,000-task service."""
PROCESS_AGENT = ("--cpu", "200", "--memory", "400Gi")
"""The ``process`` scenario's one agent (issue 11's set-up): 10,000 tasks of
:data:`PROCESS_TASK_RESOURCES` fit in half of it."""
PROCESS_TASK_RESOURCES = {"cpu": 0.01, "memory": "16Mi", "disk": 0}
PARTITIONS: int | None = None
"""Task queue partitions of the server (``--partitions``; None: the server's default)."""
PROFILE_DIR: Path | None = None
"""``--profile DIR``: run the control worker under py-spy (every thread, CPU only), one
collapsed-stack file per line in DIR, and save every workflow history there (JSON)."""
WARNINGS = {"TMPRL1104": "workflow task over 5 s", "TMPRL1101": "deadlock (no yield in 2 s)"}


class SetupError(Exception):
    """The stack of a line could not be brought up."""


@dataclass
class Line:
    """One measured line."""

    name: str
    tasks: int
    agents: int
    seconds: float | None = None  # None: did not finish
    outcome: str = ""
    max_events: int = 0
    longest_task: float = 0.0  # seconds of the longest workflow task in any history
    slowest_where: str = ""  # the workflow of that task
    max_payload: int = 0
    payload_where: str = ""
    worker_rss_mb: float = 0.0
    agents_rss_mb: float = 0.0
    worker_cpu: float = 0.0  # CPU seconds (user + system) of the control worker
    server_cpu: float = 0.0  # and of the dev server
    warnings: dict[str, int] | None = None
    describe_seconds: float | None = None  # `titus-flow job describe` of the ended job
    started_seconds: float | None = None  # submit to every task started (batch lines)

    @property
    def rate(self) -> float | None:
        """Tasks per second, if the line finished."""
        return self.tasks / self.seconds if self.seconds else None

    def __str__(self) -> str:
        wall = f"{self.seconds:7.1f} s" if self.seconds is not None else "      - "
        rate = f"{self.rate:6.1f}/s" if self.rate is not None else "     - "
        warnings = " ".join(f"{k}={v}" for k, v in (self.warnings or {}).items())
        return (
            f"{self.name:<26} tasks={self.tasks:<6} agents={self.agents:<5} wall={wall}"
            f" rate={rate} events={self.max_events:<6} payload={self.max_payload:<8}"
            f" wft_max={self.longest_task:4.1f}s"
            f" worker_rss={self.worker_rss_mb:4.0f}MB agents_rss={self.agents_rss_mb:5.0f}MB"
            f" cpu(worker/server)={self.worker_cpu:.0f}/{self.server_cpu:.0f}s"
            f" {warnings}{self._describe()} {self.outcome}"
        )

    def _describe(self) -> str:
        said = ""
        if self.started_seconds is not None:
            said += f" all_started={self.started_seconds:.1f}s"
        if self.describe_seconds is not None:
            said += f" describe={self.describe_seconds:.2f}s"
        return said


def peak_rss_mb(pid: int) -> float:
    """The peak resident set (VmHWM) of a live process, in MB."""
    try:
        for row in Path(f"/proc/{pid}/status").read_text().splitlines():
            if row.startswith("VmHWM:"):
                return int(row.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@dataclass
class Stack:
    """A fresh dev server, control worker and hollow-agent process."""

    home: Path
    client: TitusClient
    processes: dict[str, subprocess.Popen[bytes]]
    env: dict[str, str]

    async def cli_seconds(self, *args: str) -> float:
        """Wall time of ``titus-flow ARGS`` as a user runs it (a new process); fails if it fails."""
        start = time.perf_counter()
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "titus_flow", *args],
            env=self.env,
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"titus-flow {' '.join(args)}: {done.stderr.decode()[-500:]}")
        return time.perf_counter() - start

    def log(self, name: str) -> Path:
        """The log file of process ``name``."""
        return self.home / f"{name}.log"

    def warnings(self) -> dict[str, int]:
        """How many of each :data:`WARNINGS` the worker logged so far."""
        text = self.log("worker").read_text(errors="replace")
        return {code: len(re.findall(code, text)) for code in WARNINGS}

    def alive(self, name: str) -> bool:
        """Whether process ``name`` still runs."""
        return self.processes[name].poll() is None


@contextlib.asynccontextmanager
async def fresh_stack(
    agents: int, partitions: int | None = None, *, real_processes: bool = False
) -> AsyncIterator[Stack]:
    """Start a dev server, a control worker and ``agents`` hollow agents; stop them after.

    ``partitions``: task queue partitions the server makes per queue (default: its
    own, 4); an agent's queue needs one, and each costs the server database writes.
    ``real_processes``: instead, one process-driver agent (tasks are real processes)
    as big as :data:`PROCESS_AGENT` says.
    """
    home = Path(tempfile.mkdtemp(prefix="titus-scale-"))
    binary = stack.temporal_binary()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"127.0.0.1:{port}"
    processes: dict[str, subprocess.Popen[bytes]] = {}
    keep = False
    server_log = home / "temporal.log"
    argv = stack.server_argv(binary, port=port, ui_port=None, db_filename=home / "scale.db")
    if partitions is not None:
        for key in ("matching.numTaskqueueReadPartitions", "matching.numTaskqueueWritePartitions"):
            argv += ["--dynamic-config-value", f"{key}={partitions}"]
    processes["server"] = stack.start_process(argv, server_log)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TITUS_FLOW_", "TEMPORAL_"))}
    env.update(
        TITUS_FLOW_ADDRESS=address,
        TITUS_FLOW_HOME=str(home),
        TITUS_FLOW_CONTROL_TASK_QUEUE="scale",
        TITUS_FLOW_LOG_LEVEL="WARNING",
    )
    titus_flow = [sys.executable, "-m", "titus_flow"]
    try:
        stack.wait_ready(binary, address, lambda: processes["server"].poll() is None, server_log)
        worker = [*titus_flow, "worker"]
        if PROFILE_DIR is not None:
            PROFILE_DIR.mkdir(parents=True, exist_ok=True)
            profile = PROFILE_DIR / f"worker-{home.name}.txt"
            spy = Path(sys.executable).with_name("py-spy")
            record = ["record", "--gil", "-r", "50", "-f", "raw", "-o", str(profile)]
            worker = [str(spy), *record, "--", *worker]
        processes["worker"] = stack.start_process(worker, home / "worker.log", env)
        if real_processes:
            agent = ["agent", "--driver", "process", "--id", "local", *PROCESS_AGENT]
        else:
            agent = ["agent", "--hollow", str(agents), "--id", "hollow"]
            agent += ["--cpu", AGENT_CPU, "--memory", AGENT_MEMORY]
        processes["agents"] = stack.start_process([*titus_flow, *agent], home / "agents.log", env)
        settings = load_settings(environ=env)
        client = TitusClient(await connect(settings), settings)
        bench = Stack(home, client, processes, env)

        count = 0

        async def registered() -> bool:
            nonlocal count
            if not bench.alive("agents") or not bench.alive("worker"):
                raise SetupError(f"a process died; see {home}")
            with contextlib.suppress(RPCError, Exception):
                count = len(await client.agents())
            return count >= agents

        wait = 120 + agents / 10
        if not await until(registered, wait):
            raise SetupError(f"only {count} of {agents} agents registered in {wait:.0f}s")
        yield bench
    except BaseException:
        keep = True  # the logs say what went wrong
        print(f"kept the logs of the failed stack in {home}", file=sys.stderr)
        raise
    finally:
        if PROFILE_DIR is not None and "worker" in processes:
            # Stop the worker alone first: py-spy writes its profile once it exits.
            profiler = processes["worker"]
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker_pid(profiler.pid), signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                profiler.wait(60)
        for name in ("agents", "worker", "server"):
            if name in processes:
                proc = processes[name]
                stack.stop_process_group(proc.pid, lambda proc=proc: proc.poll() is None)  # type: ignore[misc]
        if not keep:
            shutil.rmtree(home, ignore_errors=True)


async def until(check: Callable[[], Awaitable[bool]], timeout: float, every: float = 0.5) -> bool:
    """Poll ``check`` until true; whether it became true within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(every)
    return False


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_pid(pid: int) -> int:
    """The control worker's pid: ``pid``, or its child when ``pid`` is py-spy's."""
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/comm").read_text().strip() == "py-spy":
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            return int(children[0]) if children else pid
    return pid


async def save_histories(bench: Stack, directory: Path) -> None:
    """Every workflow history of the stack, as JSON files in ``directory`` (for ``Replayer``)."""
    directory.mkdir(parents=True, exist_ok=True)
    temporal = bench.client.temporal
    async for execution in temporal.list_workflows(""):
        handle = temporal.get_workflow_handle(execution.id, run_id=execution.run_id)
        history = await handle.fetch_history()
        name = f"{bench.home.name}-{execution.id}-{execution.run_id}.json"
        (directory / name).write_text(history.to_json())


async def measure(line: Line, bench: Stack) -> Line:
    """Fill in the line's history, payload, RSS and warning columns (processes still up)."""
    line.worker_rss_mb = peak_rss_mb(worker_pid(bench.processes["worker"].pid))
    line.worker_cpu = cpu_seconds(worker_pid(bench.processes["worker"].pid))
    line.server_cpu = cpu_seconds(bench.processes["server"].pid)
    line.agents_rss_mb = peak_rss_mb(bench.processes["agents"].pid)
    line.warnings = bench.warnings()
    stats = await history_stats(bench.client.temporal, query="")
    line.max_events = stats.max_events
    line.longest_task = stats.longest_workflow_task
    if stats.slowest is not None:
        line.slowest_where = stats.slowest.run.workflow_id
    if stats.largest_payload is not None:
        line.max_payload = stats.largest_payload.bytes
        line.payload_where = str(stats.largest_payload)
    if PROFILE_DIR is not None:
        await save_histories(bench, PROFILE_DIR / "histories")
    return line


def batch_job(name: str, tasks: int) -> BatchJob:
    """``tasks`` tasks of :data:`TASK`."""
    return BatchJob(name=name, container=TASK, resources=TASK_RESOURCES, instances=tasks)


async def progress_counts(titus: TitusClient, job_id: str) -> dict[str, int]:
    """The job's task counts by state ({} while it does not answer)."""
    with contextlib.suppress(RPCError, JobNotFoundError):
        return (await titus.progress(job_id)).counts
    return {}


async def run_batch(line: Line, timeout: float) -> Line:
    """One batch job of ``line.tasks`` tasks on ``line.agents`` hollow agents."""
    tasks, agents = line.tasks, line.agents
    async with fresh_stack(agents, PARTITIONS) as bench:
        titus = bench.client
        start = time.perf_counter()
        job_id = await titus.submit(batch_job("scale", tasks))
        watching = asyncio.create_task(all_started(titus, job_id, tasks))
        try:
            view = await asyncio.wait_for(titus.wait(job_id), timeout)
        except TimeoutError:
            line.outcome = f"TIMED OUT after {timeout:.0f}s: {await progress_counts(titus, job_id)}"
        else:
            line.seconds = time.perf_counter() - start
            counts = view.counts()
            normal = counts.get("Finished/normal", 0)
            line.outcome = f"{view.state.value}, {normal}/{tasks} Finished/normal"
            if normal != tasks:
                line.outcome += f" {counts}"
            # What a user waits for (a new CLI process included), issue 11: under 2 s.
            line.describe_seconds = await bench.cli_seconds("job", "describe", job_id)
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            line.started_seconds = await watching - start
        return await measure(line, bench)


async def all_started(titus: TitusClient, job_id: str, tasks: int) -> float:
    """When every task of the job had started (Started or Finished normally), polled."""
    while True:
        counts = await progress_counts(titus, job_id)
        if counts.get("Started", 0) + counts.get("Finished/normal", 0) >= tasks:
            return time.perf_counter()
        await asyncio.sleep(0.5)


async def run_many(line: Line, jobs: int, tasks: int, timeout: float) -> Line:
    """``jobs`` batch jobs of ``tasks`` tasks each, submitted at once."""
    agents = line.agents
    async with fresh_stack(agents, PARTITIONS) as bench:
        titus = bench.client
        start = time.perf_counter()
        ids = await asyncio.gather(
            *(titus.submit(batch_job(f"many{i}", tasks)) for i in range(jobs))
        )
        try:
            views = await asyncio.wait_for(asyncio.gather(*(titus.wait(i) for i in ids)), timeout)
        except TimeoutError:
            line.outcome = f"TIMED OUT after {timeout:.0f}s"
        else:
            line.seconds = time.perf_counter() - start
            states: dict[str, int] = {}
            for view in views:
                states[view.state.value] = states.get(view.state.value, 0) + 1
            normal = sum(v.counts().get("Finished/normal", 0) for v in views)
            line.outcome = f"jobs {states}, {normal}/{line.tasks} Finished/normal"
        return await measure(line, bench)


async def run_service(line: Line, timeout: float) -> Line:
    """A service job scaled 0 -> ``line.tasks`` (until all Started) -> 0 (until none runs)."""
    peak, agents = line.tasks, line.agents
    async with fresh_stack(agents, PARTITIONS) as bench:
        titus = bench.client
        job = ServiceJob(
            name="scale-svc",
            container=Container(image="busybox:latest", command="sleep 1d"),
            resources=TASK_RESOURCES,
            capacity=Capacity(min=0, desired=0, max=peak),
        )
        job_id = await titus.submit(job)
        last: dict[str, int] = {}

        def started(count: int) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                nonlocal last
                with contextlib.suppress(RPCError, JobNotFoundError):
                    view = await titus.describe(job_id)
                    # Counts, not rows: a big service's view lists only some tasks.
                    last = view.counts()
                    live = sum(n for key, n in last.items() if not key.startswith("Finished"))
                    return last.get("Started", 0) == count and live == count
                return False

            return check

        await until(started(0), 60)
        start = time.perf_counter()
        await titus.scale(job_id, desired=peak)
        if not await until(started(peak), timeout, every=2.0):
            line.outcome = f"TIMED OUT scaling up after {timeout:.0f}s: {last}"
            return await measure(line, bench)
        up = line.started_seconds = time.perf_counter() - start
        await titus.scale(job_id, desired=0)
        if not await until(started(0), timeout, every=2.0):
            line.outcome = f"up {up:.1f}s; TIMED OUT scaling down after {timeout:.0f}s: {last}"
            return await measure(line, bench)
        line.seconds = time.perf_counter() - start
        line.outcome = f"{peak} Started in {up:.1f}s, back to 0 in {line.seconds - up:.1f}s"
        await titus.kill(job_id)
        return await measure(line, bench)


async def run_processes(line: Line, timeout: float) -> Line:
    """A batch job of ``line.tasks`` real processes running ``true``, with ``titus-flow run``.

    One process-driver agent; the job file is what a user would write, and the
    wall time is the ``run`` command's, from submit to its exit.
    """
    async with fresh_stack(1, PARTITIONS, real_processes=True) as bench:
        job_file = bench.home / f"true-{line.tasks}.json"
        job = {
            "kind": "batch",
            "name": f"true-{line.tasks}",
            "container": {"image": "busybox:latest", "command": ["true"]},
            "resources": PROCESS_TASK_RESOURCES,
            "instances": line.tasks,
        }
        job_file.write_text(json.dumps({"jobs": [job]}))
        try:
            line.seconds = await asyncio.wait_for(
                bench.cli_seconds("run", str(job_file), "-o", "json"), timeout
            )
        except TimeoutError:
            line.outcome = f"TIMED OUT after {timeout:.0f}s"
            return await measure(line, bench)
        (listed,) = await bench.client.list_jobs()  # the stack's only job
        job_id = str(listed["id"])
        view = await bench.client.describe(job_id)
        normal = view.counts().get("Finished/normal", 0)
        line.outcome = f"{view.state.value}, {normal}/{line.tasks} Finished/normal"
        line.describe_seconds = await bench.cli_seconds("job", "describe", job_id)
        return await measure(line, bench)


def print_service_vs_batch(lines: list[Line], agents: int) -> None:
    """The service's time to start its peak against a batch job of as many tasks (<= 2x)."""
    services = [x for x in lines if x.name.startswith("service") and x.started_seconds]
    for service in services:
        for batch in (x for x in lines if x.name == f"batch {service.tasks}" and x.started_seconds):
            assert service.started_seconds and batch.started_seconds
            print(
                f"service vs batch on {agents} agents: {service.tasks} tasks Started in"
                f" {service.started_seconds:.1f}s vs {batch.started_seconds:.1f}s:"
                f" {service.started_seconds / batch.started_seconds:.2f}x (target <= 2x)"
            )


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


async def main() -> None:
    """Run the chosen lines, one fresh stack each, and print them as they end."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="1000,3000,10000", help="batch job sizes (tasks)")
    parser.add_argument("--agents", default="100,1000", help="hollow agent counts")
    parser.add_argument("--scenarios", default="batch,service,many", help="which scenarios")
    parser.add_argument("--service-peak", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=200, help="jobs of the many-jobs scenario")
    parser.add_argument("--job-tasks", type=int, default=50, help="tasks per job (many-jobs)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds a line may take")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 300 and 1,000 tasks, 50 agents"
    )
    parser.add_argument(
        "--partitions",
        type=int,
        help="task queue partitions per queue on the server (default: its own, 4)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="py-spy the control worker (collapsed stacks) and save the histories in DIR",
    )
    args = parser.parse_args()
    global PARTITIONS, PROFILE_DIR
    PARTITIONS, PROFILE_DIR = args.partitions, args.profile
    if args.quick:
        args.sizes, args.agents = "300,1000", "50"
        args.service_peak, args.jobs, args.job_tasks = 100, 20, 10
    sizes, agent_counts = _ints(args.sizes), _ints(args.agents)
    scenarios = set(args.scenarios.split(","))
    print(
        f"scale: {os.cpu_count()} cores; every task runs 1 s on the sim driver;"
        f" task queue partitions: {PARTITIONS or 'server default'}",
        flush=True,
    )
    lines: list[Line] = []

    async def run(line: Line, measured: Awaitable[Line]) -> None:
        try:
            line = await measured
        except SetupError as err:
            line.outcome = f"FAILED: {err}"
        lines.append(line)
        print(line, flush=True)

    for agents in agent_counts:
        if "batch" in scenarios:
            for tasks in sizes:
                line = Line(f"batch {tasks}", tasks, agents)
                await run(line, run_batch(line, args.timeout))
        if "service" in scenarios:
            line = Line(f"service 0->{args.service_peak}->0", args.service_peak, agents)
            await run(line, run_service(line, args.timeout))
        if "many" in scenarios:
            line = Line(f"{args.jobs} jobs x {args.job_tasks}", args.jobs * args.job_tasks, agents)
            await run(line, run_many(line, args.jobs, args.job_tasks, args.timeout))
    if "process" in scenarios:
        for tasks in sizes:
            line = Line(f"process {tasks}", tasks, 1)
            await run(line, run_processes(line, args.timeout))
    for line in lines:
        if line.payload_where:
            print(f"largest payload of {line.name} on {line.agents}: {line.payload_where}")
        if line.slowest_where:
            print(f"longest workflow task of {line.name} on {line.agents}: {line.slowest_where}")
    for agents in agent_counts:
        print_service_vs_batch([x for x in lines if x.agents == agents], agents)
    for kind in ("batch", "process"):
        for agents in agent_counts if kind == "batch" else [1]:
            same = [b for b in lines if b.name.startswith(kind) and b.agents == agents and b.rate]
            if len(same) >= 2:
                small, large = min(same, key=lambda b: b.tasks), max(same, key=lambda b: b.tasks)
                assert small.rate and large.rate
                print(
                    f"ratio of {kind} on {agents} agents: tasks/s at {large.tasks} vs"
                    f" {small.tasks}: {large.rate / small.rate:.2f}x (target >= 0.8x)"
                )


if __name__ == "__main__":
    asyncio.run(main())
    sys.stdout.flush()
    os._exit(0)
