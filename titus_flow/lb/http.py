"""Just enough HTTP/1.1 framing for a reverse proxy: heads, bodies, hop-by-hop headers.

The proxy never re-encodes a body: it reads a message's head, decides how the
body is framed (``Content-Length``, ``chunked``, or up to the end of the
connection) and copies the bytes as they are. Only the head is rewritten (the
hop-by-hop headers, which belong to one connection, are dropped, RFC 9110 7.6.1).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import Enum

HEAD_LIMIT = 64 * 1024
"""The largest request or response head read (the StreamReader's line limit)."""
COPY_CHUNK = 64 * 1024

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "upgrade",
    }
)
_REASONS = {
    400: "Bad Request",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class BadMessageError(ValueError):
    """A head or body that does not parse as HTTP/1.x."""


class Framing(Enum):
    """How the body after a head is delimited."""

    NONE = "none"
    LENGTH = "length"
    CHUNKED = "chunked"
    UNTIL_CLOSE = "until_close"


@dataclass
class Head:
    """A request or response head: its first line split in three, then the headers."""

    start: tuple[str, str, str]
    headers: list[tuple[str, str]] = field(default_factory=list)

    def get(self, name: str) -> str | None:
        """The value of header ``name`` (case-insensitive), joined if it repeats."""
        values = [v for k, v in self.headers if k.lower() == name]
        return ", ".join(values) if values else None

    def tokens(self, name: str) -> set[str]:
        """The comma-separated tokens of header ``name``, lower-cased."""
        value = self.get(name) or ""
        return {t.strip().lower() for t in value.split(",") if t.strip()}

    def encode(
        self, extra: list[tuple[str, str]] | None = None, drop: frozenset[str] = frozenset()
    ) -> bytes:
        """The head as bytes without its hop-by-hop headers and ``drop``, plus ``extra``."""
        dropped = _HOP_BY_HOP | drop | self.tokens("connection")
        kept = [(k, v) for k, v in self.headers if k.lower() not in dropped]
        lines = [" ".join(self.start), *(f"{k}: {v}" for k, v in kept + (extra or []))]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    @property
    def version(self) -> str:
        """The HTTP version: a response line's first field, a request line's last."""
        return self.start[0] if self.start[0].startswith("HTTP/") else self.start[2]

    def wants_keep_alive(self) -> bool:
        """Whether the sender of this head keeps its connection open after the message."""
        connection = self.tokens("connection")
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection


async def read_head(reader: asyncio.StreamReader) -> Head | None:
    """The next head on ``reader``; None if the connection closed before one began.

    Raises :class:`BadMessageError` for a head that is cut, too large or malformed.
    """
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as err:
        if not err.partial.strip():
            return None
        raise BadMessageError("connection closed inside a head") from err
    except asyncio.LimitOverrunError as err:
        raise BadMessageError("head too large") from err
    lines = raw.decode("latin-1").split("\r\n")
    first = lines[0].split(" ", 2)
    if len(first) < 3 and not (len(first) == 2 and first[0].startswith("HTTP/")):
        raise BadMessageError(f"bad start line {lines[0][:80]!r}")
    start = (first[0], first[1], first[2] if len(first) > 2 else "")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadMessageError(f"bad header line {line[:80]!r}")
        headers.append((name, value.strip()))
    return Head(start, headers)


def request_framing(request: Head) -> tuple[Framing, int]:
    """How a request's body is framed, and its length for ``Framing.LENGTH``."""
    if "chunked" in request.tokens("transfer-encoding"):
        return Framing.CHUNKED, 0
    length = _content_length(request)
    return (Framing.LENGTH, length) if length else (Framing.NONE, 0)


def response_framing(response: Head, request_method: str) -> tuple[Framing, int]:
    """How a response's body is framed (RFC 9112 6.3), and its length for LENGTH."""
    status = int(response.start[1]) if response.start[1].isdigit() else 0
    if request_method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return Framing.NONE, 0
    if "chunked" in response.tokens("transfer-encoding"):
        return Framing.CHUNKED, 0
    if response.get("content-length") is not None:
        length = _content_length(response)
        return (Framing.LENGTH, length) if length else (Framing.NONE, 0)
    return Framing.UNTIL_CLOSE, 0


def _content_length(head: Head) -> int:
    value = head.get("content-length")
    if value is None:
        return 0
    # Repeated identical values are allowed (RFC 9110 8.6); different ones are not.
    values = {v.strip() for v in value.split(",")}
    if len(values) != 1 or not next(iter(values)).isdigit():
        raise BadMessageError(f"bad Content-Length {value[:40]!r}")
    return int(values.pop())


async def copy_body(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, framing: Framing, length: int
) -> None:
    """Copy one body of ``framing`` from ``reader`` to ``writer``, bytes unchanged."""
    if framing is Framing.LENGTH:
        await _copy_exactly(reader, writer, length)
    elif framing is Framing.CHUNKED:
        await _copy_chunked(reader, writer)
    elif framing is Framing.UNTIL_CLOSE:
        while chunk := await reader.read(COPY_CHUNK):
            writer.write(chunk)
            await writer.drain()


async def _copy_exactly(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, length: int
) -> None:
    left = length
    while left > 0:
        chunk = await reader.read(min(left, COPY_CHUNK))
        if not chunk:
            raise asyncio.IncompleteReadError(b"", left)
        writer.write(chunk)
        await writer.drain()
        left -= len(chunk)


async def _copy_chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        size_line = await reader.readuntil(b"\r\n")
        writer.write(size_line)
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError as err:
            raise BadMessageError("bad chunk size") from err
        if size == 0:
            break
        await _copy_exactly(reader, writer, size + 2)  # the chunk and its CRLF
    while True:  # trailer fields, up to the empty line that ends the body
        line = await reader.readuntil(b"\r\n")
        writer.write(line)
        if line == b"\r\n":
            break
    await writer.drain()


def error_response(status: int, detail: str) -> bytes:
    """A complete plain-text response that closes the connection."""
    body = f"{status} {_REASONS.get(status, 'Error')}: {detail}\n".encode()
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body
