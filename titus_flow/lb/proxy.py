"""The local load balancer's HTTP reverse proxy (asyncio, standard library only).

Each request goes to the next registered target in turn, over a connection of
its own (``Connection: close`` upstream, so a target that leaves the rotation
gets no new request, not even on a kept-alive connection). The client's side may
keep its connection alive. A target that refuses the connection is skipped for
the next one; a request without a body whose target closed the connection
before answering (a task stopping under it) is sent again to another target, as
the method is idempotent. Otherwise an upstream failure is a 502, and so is a
request that finds no target registered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from titus_flow.lb.http import (
    HEAD_LIMIT,
    BadMessageError,
    Framing,
    Head,
    copy_body,
    error_response,
    read_head,
    request_framing,
    response_framing,
)
from titus_flow.lb.reporter import RequestMeter
from titus_flow.lb.targets import Target, TargetPool

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 2.0
RESPONSE_TIMEOUT = 60.0
"""Seconds a target may take to send its response head."""
IDLE_TIMEOUT = 30.0
"""Seconds a kept-alive client connection may wait for its next request."""
MAX_ATTEMPTS = 3
"""Targets one request may be tried on (only when retrying is safe)."""
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})


class _UpstreamClosedError(Exception):
    """The target closed the connection before any byte of a response."""


class LocalProxy:
    """An HTTP/1.1 reverse proxy over a :class:`TargetPool`."""

    def __init__(
        self,
        pool: TargetPool,
        meter: RequestMeter,
        connect_timeout: float = CONNECT_TIMEOUT,
        response_timeout: float = RESPONSE_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self._pool = pool
        self._meter = meter
        self._connect_timeout = connect_timeout
        self._response_timeout = response_timeout
        self._idle_timeout = idle_timeout
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._in_flight = 0
        self._quiet = asyncio.Event()
        self._quiet.set()

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on ``host:port`` (port 0: any free one); the address bound."""
        self._server = await asyncio.start_server(self._serve, host, port, limit=HEAD_LIMIT)
        bound = self._server.sockets[0].getsockname()
        return str(bound[0]), int(bound[1])

    async def close(self, grace: float = 10.0) -> None:
        """Stop accepting, let requests in flight finish (up to ``grace`` s), then close."""
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._quiet.wait(), grace)
        for writer in list(self._connections):
            writer.close()
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One client connection: its requests one after another while it keeps alive."""
        self._connections.add(writer)
        try:
            while self._server is not None and self._server.is_serving():
                try:
                    request = await asyncio.wait_for(read_head(reader), self._idle_timeout)
                except BadMessageError as err:
                    writer.write(error_response(400, str(err)))
                    break
                except (TimeoutError, OSError):
                    break
                if request is None:
                    break
                self._meter.hit()
                self._begin()
                try:
                    keep_alive = await self._exchange(request, reader, writer)
                finally:
                    self._end()
                if not keep_alive:
                    break
            with contextlib.suppress(OSError):
                await writer.drain()
        finally:
            self._connections.discard(writer)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def _begin(self) -> None:
        self._in_flight += 1
        self._quiet.clear()

    def _end(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0:
            self._quiet.set()

    async def _exchange(
        self, request: Head, client: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> bool:
        """Forward ``request`` and its response; whether the client connection stays open."""
        try:
            framing, length = request_framing(request)
        except BadMessageError as err:
            client_writer.write(error_response(400, str(err)))
            return False
        method = request.start[0]
        retry_safe = method in _IDEMPOTENT and framing is Framing.NONE
        if "100-continue" in request.tokens("expect"):
            # Answered here: the body then goes upstream with the head.
            client_writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        head = request.encode(extra=[("Connection", "close")], drop=frozenset({"expect"}))
        tried: set[Target] = set()
        response_started = False
        for _ in range(MAX_ATTEMPTS):
            upstream = await self._connect(tried)
            if upstream is None:
                detail = "no target answered" if tried else "no target registered"
                client_writer.write(error_response(502, detail))
                return False
            target, up_reader, up_writer = upstream
            try:
                up_writer.write(head)
                await copy_body(client, up_writer, framing, length)
                await up_writer.drain()
                response = await asyncio.wait_for(
                    self._response_head(up_reader), self._response_timeout
                )
                res_framing, res_length = response_framing(response, method)
                keep_alive = request.wants_keep_alive() and res_framing is not Framing.UNTIL_CLOSE
                response_started = True
                client_writer.write(
                    response.encode(extra=[("Connection", "keep-alive" if keep_alive else "close")])
                )
                await copy_body(up_reader, client_writer, res_framing, res_length)
                await client_writer.drain()
                return keep_alive
            except (
                OSError,
                TimeoutError,
                asyncio.IncompleteReadError,
                BadMessageError,
                _UpstreamClosedError,
            ) as err:
                if response_started:
                    return False  # the client sees its response cut, as from the target
                log.info("%s failed %s %s: %s", target, method, request.start[1], repr(err))
                # Before any answer, a request without a body only touched the target.
                if retry_safe and isinstance(err, ConnectionError | _UpstreamClosedError):
                    continue
                status = 504 if isinstance(err, TimeoutError) else 502
                client_writer.write(error_response(status, "the target failed"))
                return False
            finally:
                up_writer.close()
        client_writer.write(error_response(502, "no target answered"))
        return False

    async def _response_head(self, reader: asyncio.StreamReader) -> Head:
        """The final response head (1xx interim ones are dropped)."""
        while True:
            response = await read_head(reader)
            if response is None:
                raise _UpstreamClosedError
            if not response.start[1].startswith("1"):
                return response

    async def _connect(
        self, tried: set[Target]
    ) -> tuple[Target, asyncio.StreamReader, asyncio.StreamWriter] | None:
        """A connection to the next target not ``tried`` that accepts one (added to it)."""
        while (target := self._pool.pick(frozenset(tried))) is not None:
            tried.add(target)
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(target.host, target.port, limit=HEAD_LIMIT),
                    self._connect_timeout,
                )
            except (OSError, TimeoutError) as err:
                log.info("%s refused a connection: %s", target, type(err).__name__)
                continue
            return target, reader, writer
        return None
