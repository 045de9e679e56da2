"""A remote codec server: Temporal's Web UI and CLI decode payloads through it.

Temporal's codec server protocol: ``POST .../encode`` and ``POST .../decode``
with a JSON body ``{"payloads": [...]}`` (``temporal.api.common.v1.Payloads``
in protobuf's JSON form), answered in the same form. Only the last path
segment counts, so the endpoints may sit under any prefix (e.g. a namespace).

The Web UI calls it from the browser, so the server answers CORS preflights
for the UI's origin only. It binds to loopback by default; an optional bearer
token (``Authorization: Bearer <token>``) guards it where others can reach it.
Whoever can call ``/decode`` reads every payload: keep it on loopback, or
behind the token and TLS.

Example::

    $ titus-flow codec-server --port 8234        # keys from the usual settings
    $ temporal workflow show -w JOB_ID --codec-endpoint http://127.0.0.1:8234
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from titus_flow.codec import CodecError, EncryptionCodec

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024 * 1024
"""Largest request body accepted (a page of history's payloads fits many times)."""
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
_ALLOWED_HEADERS = "Content-Type, X-Namespace, Authorization"


def ui_origins(ui_port: int) -> list[str]:
    """The origins of the embedded Web UI, as browsers send them."""
    return [f"http://127.0.0.1:{ui_port}", f"http://localhost:{ui_port}"]


class CodecServer(ThreadingHTTPServer):
    """An HTTP server answering the codec protocol with ``codec``."""

    daemon_threads = True

    def __init__(
        self,
        codec: EncryptionCodec,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        origins: Sequence[str] = (),
        token: str | None = None,
    ) -> None:
        """Bind to ``host:port`` (0: a free port); ``origins`` may call it from a browser."""
        super().__init__((host, port), _Handler)
        self.codec = codec
        self.origins = frozenset(origins)
        self.token = token

    @property
    def url(self) -> str:
        """Base URL of the server (the codec endpoint to give the UI and CLI)."""
        host, port = self.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        return f"http://{host}:{port}"

    def start_in_thread(self) -> threading.Thread:
        """Serve in a daemon thread (tests, embedding); stop with ``shutdown()``."""
        thread = threading.Thread(target=self.serve_forever, name="codec-server", daemon=True)
        thread.start()
        return thread


class _Handler(BaseHTTPRequestHandler):
    server: CodecServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _cors(self) -> None:
        origin = self.headers.get("Origin")
        if origin and origin in self.server.origins:
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Access-Control-Allow-Credentials", "true")
            self.send_header("Vary", "Origin")

    def _reply(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self._cors()
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: HTTPStatus, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        self._reply(status, body, "application/json")

    def do_OPTIONS(self) -> None:
        """CORS preflight: allowed for the configured origins only."""
        self.send_response(HTTPStatus.NO_CONTENT)
        self._cors()
        if self.headers.get("Origin") in self.server.origins:
            self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
            self.send_header("Access-Control-Allow-Headers", _ALLOWED_HEADERS)
            self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _authorized(self) -> bool:
        token = self.server.token
        if token is None:
            return True
        given = self.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())

    def do_POST(self) -> None:
        """``.../encode`` or ``.../decode`` a Payloads JSON body."""
        action = self.path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the body is not read
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_BODY_BYTES} bytes")
            return
        body = self.rfile.read(length)
        if action not in ("encode", "decode"):
            self._error(HTTPStatus.NOT_FOUND, "POST .../encode or .../decode")
            return
        if not self._authorized():
            self._error(HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token")
            return
        try:
            payloads = json_format.Parse(body or b"{}", Payloads())
        except (json_format.ParseError, UnicodeDecodeError) as err:
            self._error(HTTPStatus.BAD_REQUEST, f"not a Payloads JSON body: {err}")
            return
        codec = self.server.codec
        try:
            done = (
                codec.encrypt(payloads.payloads)
                if action == "encode"
                else codec.decrypt(payloads.payloads)
            )
        except CodecError as err:
            self._error(HTTPStatus.BAD_REQUEST, str(err))
            return
        reply = json_format.MessageToJson(Payloads(payloads=done)).encode()
        self._reply(HTTPStatus.OK, reply, "application/json")
