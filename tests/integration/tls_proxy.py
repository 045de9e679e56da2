"""A TLS-terminating TCP proxy that requires client certificates, for mTLS tests.

The embedded dev server (``temporal server start-dev``) speaks plain gRPC only,
so a test that needs a real mTLS handshake puts this proxy in front of it::

    with TlsProxy("127.0.0.1:7233", cert=..., key=..., client_ca=...) as proxy:
        ...  # point titus-flow at proxy.address with its client cert, key and CA

The proxy listens on a free port of 127.0.0.1, completes a TLS handshake with
each client (server certificate ``cert``/``key``; a client certificate signed by
``client_ca`` is required, ``CERT_REQUIRED``; ALPN ``h2``, which gRPC clients
insist on), then copies the decrypted bytes to the upstream address and back.

It runs its own event loop in a thread, so both asyncio tests and tests that
block on a subprocess can use it. ``handshakes`` records each accepted client
(its certificate's common name and the ALPN protocol agreed), ``refused`` why
each refused handshake failed. Leaving the ``with`` block (or :meth:`stop`)
closes the listener and every connection and joins the thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

_CHUNK = 64 * 1024
_HANDSHAKE_SECONDS = 10.0


@dataclass(frozen=True)
class Handshake:
    """A client the proxy let in."""

    common_name: str
    """The common name of the client certificate's subject."""
    alpn: str | None
    """The application protocol agreed on (``h2`` for gRPC)."""


def server_context(cert: Path, key: Path, client_ca: Path) -> ssl.SSLContext:
    """A server-side TLS context that requires a client certificate signed by ``client_ca``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.load_verify_locations(cafile=client_ca)
    context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["h2"])
    return context


class _PausedProtocol(asyncio.StreamReaderProtocol):
    """A plain stream that reads nothing until the handler starts TLS on it.

    The client's hello may arrive before the handler runs; reading it into the
    plain stream's buffer would hide it from the TLS layer.
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.ReadTransport)
        transport.pause_reading()  # start_tls resumes it under the TLS layer
        super().connection_made(transport)


def _common_name(peer: object) -> str:
    """The subject common name of a certificate as ``SSLObject.getpeercert()`` gives it."""
    if not isinstance(peer, dict):
        return ""
    for rdn in peer.get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    return ""


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy ``reader`` to ``writer`` until end of file, then half-close ``writer``."""
    try:
        while chunk := await reader.read(_CHUNK):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, ssl.SSLError):
        writer.close()


class TlsProxy:
    """mTLS on 127.0.0.1 in front of a plain TCP ``upstream`` (``host:port``)."""

    def __init__(self, upstream: str, *, cert: Path, key: Path, client_ca: Path) -> None:
        host, _, port = upstream.rpartition(":")
        self._upstream = (host, int(port))
        self._context = server_context(cert, key, client_ca)
        self.handshakes: list[Handshake] = []
        self.refused: list[str] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._port = 0

    @property
    def address(self) -> str:
        """Where clients connect: ``127.0.0.1:<port>``."""
        assert self._port, "the proxy is not started"
        return f"127.0.0.1:{self._port}"

    def start(self) -> None:
        """Listen on a free port of 127.0.0.1; returns once the port is open."""
        ready: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._serve(ready)), name="tls-proxy"
        )
        self._thread.start()
        try:
            self._port = ready.result(timeout=10)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Close the listener and every connection; join the proxy's thread."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None and not loop.is_closed():
            # RuntimeError: the loop closed meanwhile, so the thread is ending anyway.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout=10)
        if thread.is_alive():
            raise RuntimeError("the TLS proxy's thread did not stop within 10 s")
        self._thread = None

    def __enter__(self) -> TlsProxy:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def _serve(self, ready: concurrent.futures.Future[int]) -> None:
        loop = asyncio.get_running_loop()
        self._loop, self._stopping = loop, asyncio.Event()
        try:
            server = await loop.create_server(
                lambda: _PausedProtocol(asyncio.StreamReader(), self._handle), "127.0.0.1", 0
            )
        except BaseException as err:
            ready.set_exception(err)
            return
        ready.set_result(server.sockets[0].getsockname()[1])
        try:
            await self._stopping.wait()
        finally:
            server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            try:
                await writer.start_tls(self._context, ssl_handshake_timeout=_HANDSHAKE_SECONDS)
            except (OSError, TimeoutError) as err:  # ssl.SSLError is an OSError
                self.refused.append(getattr(err, "reason", None) or str(err) or type(err).__name__)
                return
            tls = writer.get_extra_info("ssl_object")
            assert isinstance(tls, ssl.SSLObject)
            self.handshakes.append(
                Handshake(_common_name(tls.getpeercert()), tls.selected_alpn_protocol())
            )
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
        except ConnectionError:
            pass  # the upstream is not there, or a side went away: the client sees a close
        finally:
            writer.close()
            self._connections.discard(task)
