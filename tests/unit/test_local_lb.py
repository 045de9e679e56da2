"""The local load balancer (titus_flow.lb) against fake targets on 127.0.0.1.

Targets are small asyncio HTTP servers; the target source and the metric sink
are fakes, so the proxy is tested without Temporal.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Sequence

import pytest

from titus_flow.contracts.metric_reports import MetricReport
from titus_flow.lb import LocalProxy, RequestMeter, Target, TargetPool, run_local_lb
from titus_flow.lb.http import Head, read_head, response_framing
from titus_flow.lb.reporter import report_loop, requests_per_task_report

# -- fakes -------------------------------------------------------------------------------


class Upstream:
    """A target: answers ``<name> <method> <path> <body>`` unless told otherwise."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.requests: list[tuple[str, str, bytes]] = []
        self.hold: asyncio.Event | None = None  # set: answer; unset: wait for it
        self.held = asyncio.Event()  # set once a request is waiting on ``hold``
        self.hang_up = False  # close without answering
        self.chunked = False
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> Target:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return Target(task_id=self.name, host="127.0.0.1", port=self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_head(reader)
        assert head is not None
        length = int(head.get("content-length") or 0)
        body = await reader.readexactly(length) if length else b""
        self.requests.append((head.start[0], head.start[1], body))
        assert head.get("connection") == "close"
        if self.hold is not None:
            self.held.set()
            await self.hold.wait()
        if not self.hang_up:
            text = f"{self.name} {head.start[0]} {head.start[1]} {body.decode()}".encode()
            if self.chunked:
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                half = len(text) // 2
                for part in (text[:half], text[half:]):
                    writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                writer.write(b"0\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(text) + text)
            await writer.drain()
        writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


class FakeSource:
    """The targets the test says are registered; can be made to fail."""

    def __init__(self, targets: Sequence[Target] = ()) -> None:
        self.targets = list(targets)
        self.error: Exception | None = None
        self.asked = 0

    async def registered(self) -> Sequence[Target]:
        self.asked += 1
        if self.error is not None:
            raise self.error
        return self.targets


class FakeSink:
    def __init__(self) -> None:
        self.reports: list[MetricReport] = []
        self.error: Exception | None = None
        self.arrived = asyncio.Event()
        self.failures = 0
        self.failed_twice = asyncio.Event()

    async def report(self, report: MetricReport) -> None:
        if self.error is not None:
            self.failures += 1
            if self.failures >= 2:
                self.failed_twice.set()
            raise self.error
        self.reports.append(report)
        self.arrived.set()


async def fetch(
    port: int, path: str = "/", method: str = "GET", body: bytes = b"", *, keep: bool = False
) -> tuple[int, bytes]:
    """One request on a new connection: (status, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        return await exchange(reader, writer, path, method, body, keep=keep)
    finally:
        writer.close()


async def exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    path: str = "/",
    method: str = "GET",
    body: bytes = b"",
    *,
    keep: bool = False,
) -> tuple[int, bytes]:
    connection = "keep-alive" if keep else "close"
    head = f"{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: {connection}\r\n"
    if body:
        head += f"Content-Length: {len(body)}\r\n"
    writer.write(head.encode() + b"\r\n" + body)
    response = await read_head(reader)
    assert response is not None
    return int(response.start[1]), await read_body(reader, response, method)


async def read_body(reader: asyncio.StreamReader, response: Head, method: str) -> bytes:
    framing, length = response_framing(response, method)
    if framing.value == "length":
        return await reader.readexactly(length)
    if framing.value == "chunked":
        out = b""
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            out += (await reader.readexactly(size + 2))[:-2]
        await reader.readuntil(b"\r\n")
        return out
    return await reader.read() if framing.value == "until_close" else b""


@pytest.fixture
async def upstreams() -> AsyncIterator[list[Upstream]]:
    started = [Upstream(f"t{i}") for i in range(3)]
    for upstream in started:
        await upstream.start()
    yield started
    for upstream in started:
        if upstream.hold is not None:
            upstream.hold.set()
        await upstream.stop()


async def proxy_over(source: FakeSource) -> tuple[LocalProxy, TargetPool, RequestMeter, int]:
    pool = TargetPool(source)
    await pool.refresh()
    meter = RequestMeter()
    proxy = LocalProxy(pool, meter, response_timeout=5.0)
    _, port = await proxy.start("127.0.0.1", 0)
    return proxy, pool, meter, port


def targets_of(upstreams: list[Upstream]) -> list[Target]:
    return [Target(task_id=u.name, host="127.0.0.1", port=u.port) for u in upstreams]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- routing -----------------------------------------------------------------------------


async def test_requests_go_round_robin(upstreams: list[Upstream]) -> None:
    proxy, _, meter, port = await proxy_over(FakeSource(targets_of(upstreams)))
    try:
        answers = [await fetch(port, f"/{i}") for i in range(6)]
    finally:
        await proxy.close()
    assert all(status == 200 for status, _ in answers)
    assert [len(u.requests) for u in upstreams] == [2, 2, 2]
    assert answers[0][1].startswith(b"t0 GET /0") and answers[1][1].startswith(b"t1 GET /1")
    assert meter.take_rate() > 0


async def test_no_target_is_a_502() -> None:
    proxy, _, _, port = await proxy_over(FakeSource())
    try:
        status, body = await fetch(port)
    finally:
        await proxy.close()
    assert status == 502 and b"no target registered" in body


async def test_keep_alive_bodies_and_chunked_responses(upstreams: list[Upstream]) -> None:
    upstreams[1].chunked = True
    proxy, _, _, port = await proxy_over(FakeSource(targets_of(upstreams[1:2])))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        first = await exchange(reader, writer, "/a", "POST", b"payload", keep=True)
        second = await exchange(reader, writer, "/b", keep=True)
    finally:
        writer.close()
        await proxy.close()
    assert first == (200, b"t1 POST /a payload")
    assert second == (200, b"t1 GET /b ")
    assert upstreams[1].requests[0] == ("POST", "/a", b"payload")


async def test_a_refused_connection_goes_to_the_next_target(upstreams: list[Upstream]) -> None:
    dead = Target(task_id="t0-dead", host="127.0.0.1", port=closed_port())
    proxy, _, _, port = await proxy_over(FakeSource([dead, *targets_of(upstreams[:1])]))
    try:
        answers = [await fetch(port) for _ in range(4)]
    finally:
        await proxy.close()
    assert [status for status, _ in answers] == [200] * 4
    assert len(upstreams[0].requests) == 4


async def test_a_get_the_target_hangs_up_on_is_sent_again(upstreams: list[Upstream]) -> None:
    upstreams[0].hang_up = True
    proxy, _, _, port = await proxy_over(FakeSource(targets_of(upstreams[:2])))
    try:
        answers = [await fetch(port) for _ in range(2)]
        post = await fetch(port, method="POST", body=b"x")  # t0 again: not safe to resend
    finally:
        await proxy.close()
    # Each request is t0's turn: it hangs up, and each GET goes on to t1.
    assert [status for status, _ in answers] == [200, 200]
    assert post[0] == 502
    assert [len(u.requests) for u in upstreams[:2]] == [3, 2]


async def test_a_deregistered_target_finishes_in_flight_but_gets_nothing_new(
    upstreams: list[Upstream],
) -> None:
    source = FakeSource(targets_of(upstreams[:2]))
    proxy, pool, _, port = await proxy_over(source)
    upstreams[1].hold = asyncio.Event()
    try:
        await fetch(port, "/first")  # t0's turn, then t1's
        slow = asyncio.create_task(fetch(port, "/slow"))
        await upstreams[1].held.wait()
        source.targets = targets_of(upstreams[:1])  # t1 draining
        await pool.refresh()
        later = [await fetch(port, f"/n{i}") for i in range(3)]
        upstreams[1].hold.set()
        assert await slow == (200, b"t1 GET /slow ")
    finally:
        await proxy.close()
    assert [status for status, _ in later] == [200] * 3
    assert [path for _, path, _ in upstreams[1].requests] == ["/slow"]


async def test_close_waits_for_requests_in_flight(upstreams: list[Upstream]) -> None:
    proxy, _, _, port = await proxy_over(FakeSource(targets_of(upstreams[:1])))
    upstreams[0].hold = asyncio.Event()
    slow = asyncio.create_task(fetch(port, "/slow"))
    await upstreams[0].held.wait()
    closing = asyncio.create_task(proxy.close())
    await asyncio.sleep(0)  # let close() stop accepting before the request ends
    assert not closing.done()
    upstreams[0].hold.set()
    assert await slow == (200, b"t0 GET /slow ")
    await closing


async def test_a_bad_request_is_a_400() -> None:
    proxy, _, _, port = await proxy_over(FakeSource())
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GARBAGE\r\n\r\n")
        response = await read_head(reader)
    finally:
        writer.close()
        await proxy.close()
    assert response is not None and response.start[1] == "400"


# -- targets -----------------------------------------------------------------------------


async def test_pool_keeps_its_targets_when_the_source_fails() -> None:
    one = Target(task_id="a", host="127.0.0.1", port=1)
    source = FakeSource([one])
    pool = TargetPool(source)
    await pool.refresh()
    source.error = RuntimeError("Temporal is busy")
    await pool.refresh()
    assert pool.targets == (one,)
    source.error, source.targets = None, []
    await pool.refresh()
    assert pool.targets == () and pool.pick() is None


# -- metrics -----------------------------------------------------------------------------


def test_requests_per_task_is_the_rate_over_the_registered_targets() -> None:
    report = requests_per_task_report("lb:web", rate=30.0, targets=3)
    assert report is not None and report.source == "lb:web"
    (sample,) = report.samples
    assert (sample.metric, sample.value, sample.weight) == ("requests_per_task", 10.0, 3.0)
    assert requests_per_task_report("lb:web", rate=30.0, targets=0) is None


def test_meter_rate_uses_the_time_since_the_last_take() -> None:
    now = [100.0]
    meter = RequestMeter(clock=lambda: now[0])
    for _ in range(10):
        meter.hit()
    now[0] += 2.0
    assert meter.take_rate() == 5.0
    now[0] += 1.0
    assert meter.take_rate() == 0.0


async def test_report_loop_survives_a_failing_sink() -> None:
    sink = FakeSink()
    sink.error = RuntimeError("signal failed")
    meter, stop = RequestMeter(), asyncio.Event()
    targets = [2]
    loop = asyncio.create_task(report_loop("lb:web", meter, lambda: targets[0], sink, stop, 0.02))
    try:
        await asyncio.wait_for(sink.failed_twice.wait(), 5)
        sink.error = None
        await asyncio.wait_for(sink.arrived.wait(), 5)
    finally:
        stop.set()
        await loop
    assert sink.reports[0].samples[0].weight == 2.0


async def test_run_local_lb_serves_and_reports(upstreams: list[Upstream]) -> None:
    source, sink, stop = FakeSource(targets_of(upstreams)), FakeSink(), asyncio.Event()
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    run = asyncio.create_task(
        run_local_lb(
            "web",
            source,
            sink,
            ("127.0.0.1", 0),
            stop,
            on_listening=lambda host, port: bound.set_result(port),
            poll_period=0.05,
            report_period=0.05,
        )
    )
    try:
        port = await asyncio.wait_for(bound, 5)
        for _ in range(3):
            assert (await fetch(port))[0] == 200
        await asyncio.wait_for(sink.arrived.wait(), 5)
    finally:
        stop.set()
        await asyncio.wait_for(run, 10)
    assert source.asked >= 1
    assert {r.source for r in sink.reports} == {"lb:web"}
    assert all(r.samples[0].weight == 3.0 for r in sink.reports)
