"""HealthMonitor against real servers on 127.0.0.1 and a fake driver for exec."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from titus_flow.runtime import DriverError
from titus_flow.runtime import health as health_module
from titus_flow.runtime.base import EXEC_TIMED_OUT, Driver
from titus_flow.runtime.health import (
    MAX_MESSAGE_CHARS,
    Health,
    HealthChange,
    HealthMonitor,
)
from titus_flow.spec import ExecCheck, HttpCheck, TcpCheck
from titus_flow.spec.health import HealthCheck

# -- helpers -----------------------------------------------------------------------------


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeDriver:
    """Only ``exec`` matters here: it answers with scripted exit codes (or errors)."""

    name = "fake"

    def __init__(self, *answers: int | Exception) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, list[str], float]] = []
        self.hang = False

    def as_driver(self) -> Driver:
        return cast(Driver, self)  # the monitor only calls exec (and reads name)

    async def exec(self, name: str, command: list[str], timeout: float) -> int:
        self.calls.append((name, command, timeout))
        if self.hang:
            await asyncio.sleep(3600)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


class HttpServer:
    """A tiny HTTP server: answers ``status``, or misbehaves as ``reply`` says.

    ``reply`` None: accept and never answer; b"": hang up at once; other bytes: sent raw.
    """

    def __init__(self) -> None:
        self.status = 200
        self.reply: bytes | None = b"use status"
        self.requests: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.reply is None:
                await reader.read()  # until the client gives up
                return
            self.requests.append(await reader.readuntil(b"\r\n\r\n"))
            if self.reply == b"use status":
                writer.write(
                    f"HTTP/1.0 {self.status} Whatever\r\nContent-Length: 2\r\n\r\nok".encode()
                )
            else:
                writer.write(self.reply)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def http() -> AsyncIterator[HttpServer]:
    server = HttpServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def tcp_port() -> AsyncIterator[int]:
    """A listener that accepts connections and closes them."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


def monitor(
    check: HealthCheck,
    *,
    port: int = 0,
    driver: FakeDriver | None = None,
    clock: Callable[[], float] | None = None,
    started_at: datetime | None = None,
) -> HealthMonitor:
    return HealthMonitor(
        check,
        ports={"http": port},
        container_name="tf-task-1-a1",
        driver=(driver or FakeDriver(0)).as_driver(),
        started_at=started_at or datetime.now(UTC),
        **({"clock": clock} if clock is not None else {}),
    )


def http_check(**fields: Any) -> HttpCheck:
    return HttpCheck(port="http", **fields)


def exec_check(**fields: Any) -> ExecCheck:
    return ExecCheck(command=["cat", "/ready"], **fields)


async def probes(m: HealthMonitor, count: int) -> list[Health | None]:
    """Run ``count`` probes; the new state of each one that changed it, else None."""
    return [change.state if (change := await m.probe()) else None for _ in range(count)]


# -- http --------------------------------------------------------------------------------


async def test_http_2xx_is_healthy_and_sends_a_plain_get(http: HttpServer) -> None:
    m = monitor(http_check(path="/healthz"), port=http.port)
    before = m.state  # a local: mypy would keep m.state narrowed across the probe
    change = await m.probe()
    assert before is Health.STARTING
    assert change is not None
    assert change.state is Health.HEALTHY is m.state
    assert change.message == f"GET http://127.0.0.1:{http.port}/healthz -> 200"
    request = http.requests[0].decode()
    assert request.startswith("GET /healthz HTTP/1.0\r\n")
    assert f"\r\nHost: 127.0.0.1:{http.port}\r\n" in request


@pytest.mark.parametrize("status", [204, 299])
async def test_any_2xx_succeeds(http: HttpServer, status: int) -> None:
    http.status = status
    change = await monitor(http_check(), port=http.port).probe()
    assert change is not None and change.state is Health.HEALTHY


@pytest.mark.parametrize("status", [301, 404, 500, 503])
async def test_other_statuses_fail_with_the_status_in_the_message(
    http: HttpServer, status: int
) -> None:
    http.status = status
    m = monitor(http_check(unhealthy_threshold=1), port=http.port)
    change = await m.probe()
    assert change is not None and change.state is Health.UNHEALTHY
    assert change.message == f"GET http://127.0.0.1:{http.port}/ -> {status}"


async def test_http_ignores_proxy_settings(
    http: HttpServer, monkeypatch: pytest.MonkeyPatch, free_port: Callable[[], int]
) -> None:
    # A proxy that would refuse the connection: the probe must not go through it.
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("NO_PROXY", "")
    change = await monitor(http_check(), port=http.port).probe()
    assert change is not None and change.state is Health.HEALTHY


async def test_http_path_is_sent_percent_encoded(http: HttpServer) -> None:
    m = monitor(http_check(path="/ready?x=1&name=é"), port=http.port)
    await m.probe()
    assert http.requests[0].startswith(b"GET /ready?x=1&name=%C3%A9 HTTP/1.0\r\n")
    assert m.last_message.endswith("/ready?x=1&name=%C3%A9 -> 200")


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (b"", "connection closed without a response"),
        (b"SSH-2.0-OpenSSH_9.6\r\n", "not an HTTP response: b'SSH-2.0-OpenSSH_9.6\\r\\n'"),
        (b"HTTP/1.1 2000 Odd\r\n\r\n", "not an HTTP response"),
    ],
)
async def test_a_server_that_does_not_speak_http_fails(
    http: HttpServer, reply: bytes, expected: str
) -> None:
    http.reply = reply
    m = monitor(http_check(), port=http.port)
    assert await m.probe() is None
    assert m.last_message.startswith(f"GET http://127.0.0.1:{http.port}/: {expected}")


async def test_http_to_a_closed_port_fails(free_port: Callable[[], int]) -> None:
    port = free_port()
    m = monitor(http_check(), port=port)
    assert await m.probe() is None
    assert m.last_message == f"GET http://127.0.0.1:{port}/: Connection refused"


async def test_a_server_that_never_answers_times_out(http: HttpServer) -> None:
    http.reply = None
    m = monitor(http_check(timeout="200ms"), port=http.port)
    began = time.monotonic()
    assert await m.probe() is None
    assert 0.15 < time.monotonic() - began < 2
    assert m.last_message == f"GET http://127.0.0.1:{http.port}/: timed out after 0.2s"


# -- tcp ---------------------------------------------------------------------------------


async def test_tcp_connect_succeeds(tcp_port: int) -> None:
    m = monitor(TcpCheck(port="http"), port=tcp_port)
    change = await m.probe()
    assert change is not None and change.state is Health.HEALTHY
    assert change.message == f"TCP 127.0.0.1:{tcp_port} connected"


async def test_tcp_to_a_closed_port_fails(free_port: Callable[[], int]) -> None:
    port = free_port()
    m = monitor(TcpCheck(port="http", unhealthy_threshold=1), port=port)
    change = await m.probe()
    assert change is not None and change.state is Health.UNHEALTHY
    assert change.message == f"TCP 127.0.0.1:{port}: Connection refused"


async def test_a_port_without_a_host_port_fails_without_raising() -> None:
    m = HealthMonitor(
        TcpCheck(port="admin", unhealthy_threshold=1),
        ports={"http": 8080},
        container_name="c",
        driver=FakeDriver(0).as_driver(),
        started_at=datetime.now(UTC),
    )
    change = await m.probe()
    assert change is not None and change.state is Health.UNHEALTHY
    assert change.message == "port 'admin' has no host port on this task"


# -- exec --------------------------------------------------------------------------------


async def test_exec_runs_the_command_in_the_container() -> None:
    driver = FakeDriver(1, 0)
    m = monitor(exec_check(timeout="3s"), driver=driver)
    assert await m.probe() is None
    assert m.last_message == "exec cat /ready -> exit 1"
    change = await m.probe()
    assert change is not None and change.state is Health.HEALTHY
    assert change.message == "exec cat /ready -> exit 0"
    assert driver.calls == [("tf-task-1-a1", ["cat", "/ready"], 3.0)] * 2


async def test_exec_messages_quote_the_command() -> None:
    m = monitor(ExecCheck(command=["sh", "-c", "test -f /ready"]), driver=FakeDriver(2))
    await m.probe()
    assert m.last_message == "exec sh -c 'test -f /ready' -> exit 2"


async def test_exec_timeout_and_driver_errors_are_failures() -> None:
    driver = FakeDriver(EXEC_TIMED_OUT, DriverError("container tf-task-1-a1 is not running"))
    m = monitor(exec_check(timeout="2s"), driver=driver)
    await m.probe()
    assert m.last_message == "exec cat /ready: timed out after 2s (exit 124)"
    await m.probe()
    assert m.last_message == "exec cat /ready: container tf-task-1-a1 is not running"


async def test_a_wedged_driver_cannot_stall_the_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health_module, "_EXEC_DRIVER_SLACK", 0.1)
    driver = FakeDriver(0)
    driver.hang = True
    m = monitor(exec_check(timeout="100ms"), driver=driver)
    assert await m.probe() is None
    assert m.last_message == "exec cat /ready: the fake driver did not answer in 0.2s"


async def test_long_messages_are_cut() -> None:
    m = monitor(ExecCheck(command=["echo", "x" * 1000]), driver=FakeDriver(1))
    await m.probe()
    assert len(m.last_message) == MAX_MESSAGE_CHARS
    assert m.last_message.endswith("…")


@pytest.mark.parametrize("error", [RuntimeError("boom"), ValueError(), OSError(5, "I/O error")])
async def test_probes_never_raise(error: Exception) -> None:
    m = monitor(exec_check(), driver=FakeDriver(error))
    assert await m.probe() is None
    assert m.last_message.startswith("exec cat /ready: ")
    assert m.last_message != "exec cat /ready: "


# -- thresholds --------------------------------------------------------------------------


async def test_thresholds_need_consecutive_results() -> None:
    driver = FakeDriver(0, 1, 0, 0, 1, 1, 0, 1, 1, 1, 0, 1, 0, 0)
    m = monitor(exec_check(healthy_threshold=2, unhealthy_threshold=3), driver=driver)
    # 0 1: a failure breaks the success streak; 0 0: healthy.
    assert await probes(m, 4) == [None, None, None, Health.HEALTHY]
    # 1 1 0: a success breaks the failure streak; 1 1 1: unhealthy.
    assert await probes(m, 6) == [None, None, None, None, None, Health.UNHEALTHY]
    # 0 1 0 0: back to healthy only after two successes in a row.
    assert await probes(m, 4) == [None, None, None, Health.HEALTHY]


async def test_starting_becomes_unhealthy_without_ever_being_healthy() -> None:
    m = monitor(exec_check(unhealthy_threshold=2), driver=FakeDriver(1))
    assert await probes(m, 3) == [None, Health.UNHEALTHY, None]
    assert m.state is Health.UNHEALTHY


async def test_a_steady_state_reports_no_further_changes() -> None:
    m = monitor(exec_check(), driver=FakeDriver(0))
    assert await probes(m, 3) == [Health.HEALTHY, None, None]


# -- grace period ------------------------------------------------------------------------


async def test_failures_in_the_grace_period_do_not_count() -> None:
    clock = FakeClock()
    m = monitor(
        exec_check(unhealthy_threshold=1, start_grace_period="30s"),
        driver=FakeDriver(1),
        clock=clock,
    )
    for _ in range(10):
        assert await m.probe() is None
        clock.advance(2.9)  # the last probe in grace starts at 26.1s
    assert m.state is Health.STARTING
    clock.advance(1.5)  # 30.5s: past the grace period
    change = await m.probe()
    assert change is not None and change.state is Health.UNHEALTHY


async def test_the_failure_streak_starts_when_the_grace_period_ends() -> None:
    clock = FakeClock()
    m = monitor(
        exec_check(unhealthy_threshold=2, start_grace_period="10s"),
        driver=FakeDriver(1),
        clock=clock,
    )
    assert await probes(m, 5) == [None] * 5
    clock.advance(10)
    assert await probes(m, 2) == [None, Health.UNHEALTHY]


async def test_a_failure_in_the_grace_period_still_breaks_the_success_streak() -> None:
    clock = FakeClock()
    m = monitor(
        exec_check(healthy_threshold=2, start_grace_period="1m"),
        driver=FakeDriver(0, 1, 0, 0),
        clock=clock,
    )
    assert await probes(m, 4) == [None, None, None, Health.HEALTHY]


async def test_the_grace_period_ends_once_the_task_is_healthy() -> None:
    clock = FakeClock()
    m = monitor(
        exec_check(unhealthy_threshold=1, start_grace_period="1h"),
        driver=FakeDriver(0, 1),
        clock=clock,
    )
    assert await probes(m, 2) == [Health.HEALTHY, Health.UNHEALTHY]


async def test_the_grace_period_counts_from_started_at() -> None:
    # A restarted agent resumes supervising a task that started long ago.
    m = monitor(
        exec_check(unhealthy_threshold=1, start_grace_period="30s"),
        driver=FakeDriver(1),
        started_at=datetime.now(UTC) - timedelta(minutes=1),
    )
    change = await m.probe()
    assert change is not None and change.state is Health.UNHEALTHY


async def test_a_naive_started_at_is_utc() -> None:
    naive = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=1)
    m = monitor(
        exec_check(unhealthy_threshold=1, start_grace_period="30s"),
        driver=FakeDriver(1),
        started_at=naive,
    )
    change = await m.probe()
    assert change is not None and change.at.tzinfo is not None


# -- schedule and timestamps -------------------------------------------------------------


async def test_next_probe_is_an_interval_after_the_last_one_began() -> None:
    clock = FakeClock()
    m = monitor(exec_check(interval="10s"), clock=clock)
    assert m.next_probe_in() == 0  # the first probe is due at once
    await m.probe()
    assert m.next_probe_in() == 10
    clock.advance(4)
    assert m.next_probe_in() == 6
    clock.advance(15)
    assert m.next_probe_in() == 0


async def test_a_change_is_stamped_on_the_started_at_timeline() -> None:
    clock = FakeClock()
    started_at = datetime.now(UTC)
    m = monitor(exec_check(), clock=clock, started_at=started_at)
    clock.advance(42)
    change = await m.probe()
    assert change is not None
    assert abs(change.at - (started_at + timedelta(seconds=42))) < timedelta(seconds=1)


# -- run ---------------------------------------------------------------------------------


async def test_run_reports_each_change_until_stopped(http: HttpServer) -> None:
    http.status = 503
    m = monitor(http_check(interval="10ms", unhealthy_threshold=2), port=http.port)
    changes: list[HealthChange] = []
    stop = asyncio.Event()
    seen = asyncio.Event()

    async def on_change(change: HealthChange) -> None:
        changes.append(change)
        seen.set()

    runner = asyncio.create_task(m.run(on_change, stop))
    await asyncio.wait_for(seen.wait(), 2)
    seen.clear()
    http.status = 200
    await asyncio.wait_for(seen.wait(), 2)
    stop.set()
    await asyncio.wait_for(runner, 1)
    assert [c.state for c in changes] == [Health.UNHEALTHY, Health.HEALTHY]
    assert changes[0].message == f"GET http://127.0.0.1:{http.port}/ -> 503"
    assert changes[0].at <= changes[1].at
    assert len(http.requests) >= 3


async def test_stop_interrupts_a_probe_in_progress(http: HttpServer) -> None:
    http.reply = None
    m = monitor(http_check(timeout="1m", unhealthy_threshold=1), port=http.port)
    stop = asyncio.Event()
    calls: list[HealthChange] = []

    async def on_change(change: HealthChange) -> None:
        calls.append(change)

    runner = asyncio.create_task(m.run(on_change, stop))
    await asyncio.sleep(0.1)
    stop.set()
    await asyncio.wait_for(runner, 1)
    assert calls == [] and m.state is Health.STARTING


async def test_stop_interrupts_the_wait_between_probes() -> None:
    driver = FakeDriver(0)
    m = monitor(exec_check(interval="1h"), driver=driver)
    stop = asyncio.Event()
    calls: list[HealthChange] = []

    async def on_change(change: HealthChange) -> None:
        calls.append(change)
        stop.set()

    await asyncio.wait_for(m.run(on_change, stop), 1)
    assert [c.state for c in calls] == [Health.HEALTHY]
    assert len(driver.calls) == 1


async def test_run_with_stop_already_set_never_probes() -> None:
    driver = FakeDriver(0)
    stop = asyncio.Event()
    stop.set()

    async def on_change(change: HealthChange) -> None:
        raise AssertionError("no change expected")

    await monitor(exec_check(), driver=driver).run(on_change, stop)
    assert driver.calls == []


async def test_an_on_change_error_propagates() -> None:
    async def on_change(change: HealthChange) -> None:
        raise RuntimeError("could not report")

    with pytest.raises(RuntimeError, match="could not report"):
        await asyncio.wait_for(monitor(exec_check()).run(on_change, asyncio.Event()), 1)


async def test_cancelling_run_cancels_its_probe(http: HttpServer) -> None:
    http.reply = None
    m = monitor(http_check(timeout="1m"), port=http.port)

    async def on_change(change: HealthChange) -> None:
        pass

    runner = asyncio.create_task(m.run(on_change, asyncio.Event()))
    await asyncio.sleep(0.1)
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(runner, 1)
