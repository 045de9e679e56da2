"""A headless Chromium driven over the DevTools protocol on a pipe (no extra packages).

Chromium reads protocol messages on fd 3 and writes them on fd 4 when started
with ``--remote-debugging-pipe``; each message is JSON ended by a NUL byte.
Only 127.0.0.1 resolves, and background services are off, so a test that
uses it sends traffic to this machine only.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

_FLAGS = (
    "--headless",
    "--no-sandbox",  # tests run as root
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--window-size=1400,1000",
)


RELOAD_EVERY = 20.0  # seconds a page may show nothing before the test reloads it


def chromium_binary() -> str | None:
    """The Chromium on PATH, if any."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Chrome:
    """One headless browser with one page; use as a context manager."""

    def __init__(self, binary: str, profile: Path) -> None:
        """Start ``binary`` with a fresh profile in ``profile``."""
        to_chrome, self._write = os.pipe()
        self._read, from_chrome = os.pipe()

        def pipes_as_3_and_4() -> None:
            # Through fresh copies: dup2 onto the same number would keep close-on-exec.
            reading, writing = os.dup(to_chrome), os.dup(from_chrome)
            os.dup2(reading, 3)
            os.dup2(writing, 4)

        self.proc = subprocess.Popen(
            [binary, *_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=pipes_as_3_and_4,
            close_fds=False,
            start_new_session=True,
        )
        os.close(to_chrome)
        os.close(from_chrome)
        self._buffer = b""
        self._next_id = 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]

    def __enter__(self) -> Chrome:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the browser and its helper processes."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=10)
        for fd in (self._write, self._read):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        message: dict[str, Any] = json.loads(raw)
        return message

    def call(self, method: str, timeout: float = 30, **params: Any) -> dict[str, Any]:
        """Send one DevTools command (to the page once attached); its result."""
        self._next_id += 1
        request: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if getattr(self, "_session", None):
            request["sessionId"] = self._session
        os.write(self._write, json.dumps(request).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            message = self._message(deadline)
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result

    def open(self, url: str) -> None:
        """Navigate the page to ``url``."""
        self.call("Page.navigate", url=url)

    def text(self) -> str:
        """The page's visible text now."""
        reply = self.call("Runtime.evaluate", expression="document.body.innerText")
        return str(reply.get("result", {}).get("value", ""))

    def wait_for_text(self, needle: str, timeout: float) -> str:
        """Wait until the page shows ``needle``; the page's text (raises on timeout)."""
        deadline = time.monotonic() + timeout
        reloaded = time.monotonic()
        while True:
            text = self.text()
            if needle in text:
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"the page never showed {needle!r}; it shows:\n{text[:3000]}")
            now = time.monotonic()
            if "Internal Error" in text or now - reloaded > RELOAD_EVERY:
                # The UI's server answered 500, or its page never rendered, while
                # the loaded machine was busy: a user would refresh, and so does the test.
                self.call("Page.reload")
                reloaded = now
            time.sleep(0.5)

    def screenshot(self, path: Path, full_page: bool = False) -> None:
        """Save a PNG of the window (or of the whole page) to ``path``."""
        reply = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=full_page)
        path.write_bytes(base64.b64decode(reply["data"]))
