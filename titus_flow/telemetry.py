"""One Temporal runtime per process, serving Prometheus ``/metrics`` when asked (issue #15).

A worker, an agent (hollow ones too) and the codec server each create their
runtime once, with :func:`process_runtime`, before any client connects; it
becomes the process's default runtime, so every ``Client.connect`` in the
process uses it. With a metrics address, the runtime's Prometheus exporter
serves, on ``http://HOST:PORT/metrics``, the temporalio SDK's own metrics and
titus-flow's (names in :mod:`titus_flow.metrics`): workflows emit theirs through
``workflow.metric_meter()`` and process code through :func:`process_meter`.

Exported as Prometheus names them: counters end in ``_total``, durations are
in seconds, no unit suffix is added to a name.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections import Counter
from collections.abc import Iterator

from temporalio.common import MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from titus_flow import metrics
from titus_flow._version import __version__
from titus_flow.errors import UserError

METRICS_ADDRESS_HELP = (
    "Serve Prometheus /metrics on HOST:PORT (e.g. 127.0.0.1:9464) [default: setting"
    " metrics_address, env TITUS_FLOW_METRICS_ADDRESS; unset: off]."
)

_runtime: Runtime | None = None
_agent_meters: AgentMeters | None = None


def check_metrics_address(value: str, source: str = "--metrics-address") -> str:
    """Return ``value`` if it is ``HOST:PORT`` (IPv6 hosts in brackets), else raise.

    Raises :class:`UserError` naming ``source`` (the flag or setting) and the fix.
    """
    host, sep, port = value.rpartition(":")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    ok = bool(sep and bare) and port.isdigit() and 1 <= int(port) <= 65535
    if ok and bare != host:  # brackets hold an IPv6 address and nothing else
        try:
            ok = ipaddress.ip_address(bare).version == 6
        except ValueError:
            ok = False
    if not ok or " " in host:
        raise UserError(
            f"{source} {value!r}: use HOST:PORT with a port from 1 to 65535,"
            " e.g. 127.0.0.1:9464 ([::1]:9464 for IPv6)"
        )
    return value


def free_loopback_address() -> str:
    """``127.0.0.1:PORT`` with a port free right now (for ``titus-flow up``'s processes)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def process_runtime(metrics_address: str | None, role: str) -> Runtime:
    """The process's Temporal runtime, created on the first call and the default after.

    It logs the core's warnings (a long-running process should show its retries)
    and, with ``metrics_address``, serves ``/metrics`` there and sets
    ``titus_flow_process_info{role, version}`` to 1. Later calls return the same
    runtime whatever they pass. Raises :class:`UserError` when the address cannot
    be bound (in use, not this host's).
    """
    global _runtime, _agent_meters
    if _runtime is not None:
        return _runtime
    exporter = None
    if metrics_address:
        exporter = PrometheusConfig(
            bind_address=check_metrics_address(metrics_address, "metrics_address"),
            counters_total_suffix=True,
            durations_as_seconds=True,
        )
    try:
        runtime = Runtime(telemetry=TelemetryConfig(metrics=exporter))
    except ValueError as err:  # the exporter could not bind
        raise UserError(f"metrics_address {metrics_address}: cannot serve /metrics: {err}") from err
    Runtime.set_default(runtime, error_if_already_set=False)
    _runtime, _agent_meters = runtime, None
    if exporter is not None:
        runtime.metric_meter.create_gauge(
            metrics.PROCESS_INFO, "1 for each titus-flow process, by role and version"
        ).set(1, {"role": role, "version": __version__})
    return runtime


def process_meter() -> MetricMeter:
    """The metric meter of this process's runtime (a no-op one before it exists)."""
    return _runtime.metric_meter if _runtime is not None else MetricMeter.noop


class AgentMeters:
    """The agent-side metrics: attempts running and launches, by driver.

    One per process (hollow agents share it), so the running gauge counts every
    agent of the process.
    """

    def __init__(self, meter: MetricMeter) -> None:
        """Create the instruments on ``meter``."""
        self._running_gauge = meter.create_gauge(
            metrics.AGENT_TASKS_RUNNING, "Attempts this process's agents supervise now"
        )
        self._launches = meter.create_counter(
            metrics.AGENT_LAUNCHES, "Launches of attempts by this process's agents, by result"
        )
        self._running: Counter[str] = Counter()

    def attempt_running(self, driver: str, delta: int) -> None:
        """Count ``delta`` more attempts running (supervised) on ``driver``."""
        self._running[driver] += delta
        self._running_gauge.set(self._running[driver], {"driver": driver})

    @contextlib.contextmanager
    def launching(self, driver: str) -> Iterator[None]:
        """Count the launch in the block by how it ended (``result`` label).

        ``ok``, ``cancelled``, or the error's class name in snake case without
        ``_error`` (``image_not_found``, ``launch_refused``, ``driver``...): a
        bounded set, the driver's own exception classes.
        """
        result = "ok"
        try:
            yield
        except BaseException as err:
            result = launch_result(err)
            raise
        finally:
            self._launches.add(1, {"driver": driver, "result": result})


def launch_result(err: BaseException) -> str:
    """The ``result`` label of a launch that raised ``err``."""
    name = type(err).__name__
    if name == "CancelledError":
        return "cancelled"
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
    return snake.removesuffix("_error") or "error"


def agent_meters() -> AgentMeters:
    """The process's :class:`AgentMeters` (on :func:`process_meter`)."""
    global _agent_meters
    if _agent_meters is None:
        _agent_meters = AgentMeters(process_meter())
    return _agent_meters
