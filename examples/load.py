"""A small HTTP load generator (standard library only) for the autoscaling demo.

Sends GET requests to URL at a steady rate (open loop: one every 1/RATE s,
whether or not the previous ones were answered, each on a connection of its
own), for DURATION seconds or until interrupted (Ctrl-C, SIGTERM), then prints
what happened: requests sent, answered 2xx/3xx, failed (by status or error),
latency percentiles. Exits 0 if no request failed, 1 otherwise.

    titus-flow run examples/autoscaled_web.yaml    # returns once the first task is healthy
    titus-flow lb <job id> --name web --listen 127.0.0.1:8080 &
    python examples/load.py http://127.0.0.1:8080/index.html --rate 30 --duration 120
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Tally:
    """What the requests so far came to."""

    sent: int = 0
    ok: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def percentile(self, p: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    def summary(self, elapsed: float) -> dict[str, object]:
        return {
            "sent": self.sent,
            "ok": self.ok,
            "failed": self.failed,
            "failures": dict(self.failures),
            "seconds": round(elapsed, 2),
            "p50_ms": _ms(self.percentile(50)),
            "p99_ms": _ms(self.percentile(99)),
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


async def one_request(host: str, port: int, path: str, timeout: float) -> str | None:
    """One GET on a new connection: None if answered 2xx/3xx, else why it failed."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(
                    f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                    "Connection: close\r\n\r\n".encode()
                )
                status_line = await reader.readline()
                await reader.read()  # the rest of the response, up to the close
            finally:
                writer.close()
    except (OSError, TimeoutError) as err:
        return type(err).__name__
    parts = status_line.split()
    if len(parts) < 2 or not parts[1].isdigit():
        return "no response"
    status = int(parts[1])
    return None if 200 <= status < 400 else f"HTTP {status}"


async def run(args: argparse.Namespace) -> Tally:
    """Send requests at ``args.rate`` until ``args.duration`` or a stop signal."""
    url = urlsplit(args.url)
    if url.scheme != "http" or not url.hostname:
        raise SystemExit(f"load.py: {args.url}: give an http:// URL")
    host, port = url.hostname, url.port or 80
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tally = Tally()
    in_flight: set[asyncio.Task[None]] = set()

    async def request() -> None:
        began = time.monotonic()
        failure = await one_request(host, port, path, args.timeout)
        if failure is None:
            tally.ok += 1
            tally.latencies.append(time.monotonic() - began)
        else:
            tally.failures[failure] += 1

    start = loop.time()
    next_progress = start + args.progress_every
    while not stop.is_set() and loop.time() - start < args.duration:
        task = asyncio.create_task(request())
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        tally.sent += 1
        if args.progress_every and loop.time() >= next_progress:
            next_progress += args.progress_every
            print(
                f"{loop.time() - start:6.1f}s sent={tally.sent} ok={tally.ok}"
                f" failed={tally.failed}",
                file=sys.stderr,
                flush=True,
            )
        # Open loop: the next request is due at a fixed time, however long this one takes.
        due = start + tally.sent / args.rate
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(due - loop.time(), 0.0))
    if in_flight:  # requests already sent are waited for, so each one is counted
        await asyncio.wait(in_flight)
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="http://host:port/path to GET")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds to run")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    parser.add_argument(
        "--progress-every", type=float, default=5.0, help="seconds between progress lines (0: none)"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args()
    if args.rate <= 0:
        parser.error("--rate must be > 0")
    began = time.monotonic()
    tally = asyncio.run(run(args))
    summary = tally.summary(time.monotonic() - began)
    if args.json:
        print(json.dumps(summary))
    else:
        print(" ".join(f"{k}={v}" for k, v in summary.items()))
    sys.exit(1 if tally.failed else 0)


if __name__ == "__main__":
    main()
