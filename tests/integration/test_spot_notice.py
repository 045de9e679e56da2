"""A spot interruption notice drains the agent and its service tasks move (issue 6).

EC2's instance metadata service does not exist here, so a small IMDSv2 stand-in
on 127.0.0.1 serves ``spot/instance-action`` (404, then a notice when the test
says so); everything else is real: dev server, control worker, agent processes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from titus_cluster import Cluster, eventually

from titus_flow import Capacity, Constraints, ConstraintSet, Container, Resources, ServiceJob
from titus_flow.spot import interruption_notice

pytestmark = pytest.mark.asyncio(loop_scope="session")

NOTICE = '{"action": "terminate", "time": "2026-11-26T12:00:00Z"}'


class FakeImds(ThreadingHTTPServer):
    """IMDSv2's token and spot notice endpoints; ``notice`` is None until set."""

    notice: str | None = None


class _Handler(BaseHTTPRequestHandler):
    server: FakeImds

    def do_PUT(self) -> None:  # the IMDSv2 session token
        self._answer(200, "token-1")

    def do_GET(self) -> None:
        if self.headers.get("X-aws-ec2-metadata-token") != "token-1":
            self._answer(401, "")
        elif self.path == "/latest/meta-data/spot/instance-action" and self.server.notice:
            self._answer(200, self.server.notice)
        else:
            self._answer(404, "")

    def _answer(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def imds() -> Iterator[FakeImds]:
    server = FakeImds(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


async def test_interruption_notice_reads_imdsv2(imds: FakeImds) -> None:
    url = f"http://127.0.0.1:{imds.server_port}"
    assert await interruption_notice(url) is None
    imds.notice = NOTICE
    assert await interruption_notice(url) == NOTICE


async def test_spot_notice_drains_the_agent_and_its_service_task_moves(
    cluster_factory: Callable[[], Cluster], imds: FakeImds
) -> None:
    cluster = cluster_factory()
    cluster.start_worker()
    options = ("--driver", "process", "--cpu", "1", "--memory", "1Gi")
    url = f"http://127.0.0.1:{imds.server_port}"
    cluster.start_agent("spot", *options, "--spot-notices", "--imds-url", url)
    cluster.start_agent("steady", *options)
    client = await cluster.wait_for_agents(2)
    spot = cluster.agent_id("spot")

    job_id = await client.submit(
        ServiceJob(
            name="on-spot",
            container=Container(image="busybox:latest", command=["sleep", "600"]),
            resources=Resources(cpu=0.5, memory=32, disk=0, network_mbps=0),
            capacity=Capacity(min=1, desired=2, max=3),
            constraints=Constraints(soft=ConstraintSet(unique_host=True)),
        )
    )
    view = await client.wait_healthy(job_id, timeout=60)
    assert spot in {t.agent for t in view.live_tasks()}  # one task on each agent

    imds.notice = NOTICE

    async def moved_off_spot() -> bool:
        view = await client.describe(job_id)
        agents = {a.agent_id: a for a in await client.agents()}
        on_spot = [t for t in view.live_tasks() if t.agent == spot]
        return agents[spot].state == "draining" and not on_spot and view.healthy_tasks() == 2

    await eventually(moved_off_spot, 60, "the spot agent to drain and its task to move")
    moved = [t for t in (await client.describe(job_id)).tasks if t.agent == spot]
    assert moved and "draining" in moved[0].message
    await client.kill(job_id)
