"""Live copies of running attempts' output, made while someone reads them.

A container engine keeps a running container's output to itself; the driver
copies it to the attempt's log file only when it removes the container. To read
a running attempt's output by byte offset (``titus-flow task logs --follow``),
the driver mirrors the engine's log stream into a file beside the log file
(:func:`mirror_path`): the first reader starts the mirror, which copies until
the container ends and is forgotten when the driver removes the container or
after ``idle`` seconds without a reader. A mirror started again writes its file
again from the first byte: the
engine's stream holds the same bytes in the same order, so a reader's offset
stays valid (it only waits until the file has caught up).

Mirrors run on threads of their own: the engine's stream blocks, and a long
follow must never hold a thread the driver needs for launches or waits.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

log = logging.getLogger(__name__)

MIRROR_SUFFIX: Final = ".live"
_STOP_WAIT: Final = 5.0  # seconds to wait for a mirror's thread once its stream is closed


class OutputStream(Protocol):
    """A blocking stream of output chunks that another thread can close."""

    def __iter__(self) -> Iterator[bytes]:
        """Chunks as the engine sends them; ends when the output does or on close."""
        ...

    def close(self) -> None:
        """End the stream; a thread blocked in it wakes up."""
        ...


def mirror_path(log_path: Path) -> Path:
    """Where the live copy of the attempt whose output is kept at ``log_path`` goes."""
    return log_path.with_name(log_path.name + MIRROR_SUFFIX)


class TooManyMirrorsError(Exception):
    """Every mirror slot is taken by attempts someone reads."""


@dataclass
class _Mirror:
    name: str
    path: Path
    last_read: float
    stream: OutputStream | None = None
    stopped: bool = False
    thread: threading.Thread | None = None
    timer: threading.Timer | None = None
    done: threading.Event = field(default_factory=threading.Event)


class OutputMirrors:
    """The mirrors of one driver, at most one per attempt, each on its own thread."""

    def __init__(self, *, idle: float = 60.0, max_mirrors: int = 64) -> None:
        """Stop mirrors nobody read for ``idle`` seconds; run at most ``max_mirrors``."""
        self._idle = idle
        self._max = max_mirrors
        self._lock = threading.Lock()
        self._mirrors: dict[str, _Mirror] = {}

    def ensure(self, name: str, path: Path, open_stream: Callable[[], OutputStream]) -> None:
        """Have ``path`` receive the output of ``name`` as it is written.

        Starts a mirror unless one runs, else counts as a read that keeps it
        going. ``open_stream`` (called on the mirror's thread) opens the
        engine's stream from the first byte, following new output; it may raise
        when there is no such container (the mirror then just ends). Raises
        :class:`TooManyMirrorsError` when every slot is taken.
        """
        with self._lock:
            mirror = self._mirrors.get(name)
            if mirror is not None:
                mirror.last_read = time.monotonic()
                return
            if len(self._mirrors) >= self._max:
                raise TooManyMirrorsError(
                    f"{self._max} running attempts are being read already; try again later"
                )
            mirror = _Mirror(name=name, path=path, last_read=time.monotonic())
            mirror.thread = threading.Thread(
                target=self._run,
                args=(mirror, open_stream),
                name=f"titus-mirror-{name}",
                daemon=True,
            )
            self._mirrors[name] = mirror
            self._arm(mirror, self._idle)
        mirror.thread.start()

    def stop(self, name: str) -> None:
        """Stop the mirror of ``name`` (if any) and wait until it has stopped writing."""
        with self._lock:
            mirror = self._mirrors.pop(name, None)
            if mirror is None:
                return
            self._cancel(mirror)
        mirror.done.wait(_STOP_WAIT)

    def close(self) -> None:
        """Stop every mirror."""
        for name in self.running():
            self.stop(name)

    def running(self) -> list[str]:
        """Names of the attempts mirrored now."""
        with self._lock:
            return sorted(self._mirrors)

    # -- internals (the caller holds the lock where noted) ---------------------

    def _arm(self, mirror: _Mirror, delay: float) -> None:
        """Check for idleness in ``delay`` seconds (lock held)."""
        mirror.timer = threading.Timer(delay, self._expire, (mirror,))
        mirror.timer.daemon = True
        mirror.timer.start()

    def _expire(self, mirror: _Mirror) -> None:
        with self._lock:
            if self._mirrors.get(mirror.name) is not mirror:
                return
            quiet = time.monotonic() - mirror.last_read
            if quiet < self._idle:
                self._arm(mirror, self._idle - quiet)
                return
            del self._mirrors[mirror.name]
            self._cancel(mirror)

    @staticmethod
    def _cancel(mirror: _Mirror) -> None:
        """Mark ``mirror`` stopped and wake its thread (lock held)."""
        mirror.stopped = True
        if mirror.timer is not None:
            mirror.timer.cancel()
        if mirror.stream is not None:
            with contextlib.suppress(Exception):  # already closed or broken: it ends anyway
                mirror.stream.close()

    def _run(self, mirror: _Mirror, open_stream: Callable[[], OutputStream]) -> None:
        try:
            try:
                stream = open_stream()
            except Exception as err:  # gone already, or the engine failed: a later read retries
                log.info("no live output of %s: %s", mirror.name, err)
                self._forget(mirror)
                return
            with self._lock:
                if mirror.stopped:
                    with contextlib.suppress(Exception):
                        stream.close()
                    return
                mirror.stream = stream
            with contextlib.suppress(Exception):  # a closed stream ends or raises: both end it
                mirror.path.parent.mkdir(parents=True, exist_ok=True)
                with mirror.path.open("wb") as out:
                    for chunk in stream:
                        out.write(chunk)
                        out.flush()
        finally:
            mirror.done.set()

    def _forget(self, mirror: _Mirror) -> None:
        with self._lock:
            if self._mirrors.get(mirror.name) is mirror:
                del self._mirrors[mirror.name]
                self._cancel(mirror)
