"""The agent's uploads of ended attempts' logs to S3, in the background.

Supervise hands each ended attempt's kept log to a :class:`LogUploader` and
waits for it at most :data:`UPLOAD_WAIT_SECONDS`: the task's outcome never
waits on S3 for longer, and never fails because of it. The upload goes on
meanwhile, retried with backoff (:data:`RETRY_DELAYS`), a few at a time. A
done upload leaves ``attempt-<n>.uploaded`` beside the log; an attempt that
ended without one (the agent stopped, S3 was down past the last retry) is
queued again when the agent starts and at each of its reconcile rounds
(:meth:`LogUploader.requeue`), for as long as the agent keeps the log.
``titus_flow_log_uploads{result}`` counts the tries: ``uploaded``, ``error``
(retried), ``gave_up`` (after the last retry), ``gone`` (the log was pruned first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from temporalio.common import MetricMeter

from titus_flow.errors import UserError
from titus_flow.log_store import LogFileGoneError, LogLocation, ObjectStore, upload_log
from titus_flow.metrics import LOG_UPLOADS
from titus_flow.views import LogRef

log = logging.getLogger(__name__)

UPLOAD_WAIT_SECONDS: Final = 1.0
"""Longest supervise waits for an attempt's upload before it reports the attempt's end."""
RETRY_DELAYS: Final = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0)
"""Seconds before each retry of a failed upload (about two minutes in all); then the
next requeue tries again."""
CONCURRENT_UPLOADS: Final = 4
UPLOADED_SUFFIX: Final = ".uploaded"


def uploaded_marker(log_path: Path) -> Path:
    """The file whose presence says ``log_path`` (``attempt-<n>.log``) is in the store."""
    return log_path.with_suffix(UPLOADED_SUFFIX)


class LogUploader:
    """Uploads attempts' logs to ``location`` through ``store``; nothing it does raises.

    Create and use it inside the agent's event loop.
    """

    def __init__(
        self,
        store: ObjectStore,
        location: LogLocation,
        *,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        concurrency: int = CONCURRENT_UPLOADS,
        meter: MetricMeter = MetricMeter.noop,
    ) -> None:
        """``meter``: where ``titus_flow_log_uploads{result}`` counts each try (the process's)."""
        self._tries = meter.create_counter(LOG_UPLOADS, "Tries to upload a task log to S3.")
        self.store = store
        self.location = location
        self.retry_delays = tuple(retry_delays)
        self._slots = asyncio.Semaphore(concurrency)
        self._pending: dict[Path, asyncio.Task[bool]] = {}
        self._sending: set[Path] = set()  # uploads talking to the store now

    def ref(self, task_id: str, attempt: int) -> LogRef:
        """Where the log of ``attempt`` of ``task_id`` goes (not yet seen uploaded)."""
        return self.location.ref(task_id, attempt)

    def submit(self, log_path: Path, task_id: str, attempt: int) -> asyncio.Future[bool]:
        """Upload the log at ``log_path`` (once: a second submit joins the first).

        The future is True once it is in the store, False if the upload gave up
        (after its retries) or the log is gone.
        """
        pending = self._pending.get(log_path)
        if pending is not None:
            return pending
        if uploaded_marker(log_path).exists():
            done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            done.set_result(True)
            return done
        task = asyncio.create_task(self._upload(log_path, task_id, attempt))
        self._pending[log_path] = task
        task.add_done_callback(lambda _: self._pending.pop(log_path, None))
        return task

    async def settled(self, upload: asyncio.Future[bool], timeout: float) -> bool:
        """Whether ``upload`` is done and succeeded within ``timeout`` seconds (it goes on)."""
        done, _ = await asyncio.wait({upload}, timeout=timeout)
        return bool(done) and not upload.cancelled() and upload.result()

    async def _upload(self, log_path: Path, task_id: str, attempt: int) -> bool:
        """Try, then retry after each of ``retry_delays``; True once stored."""
        try:
            key = self.location.key(task_id, attempt)
        except UserError as err:  # not a task's directory: nothing to upload
            log.warning("not uploading %s: %s", log_path, err)
            return False
        where = f"s3://{self.location.bucket}/{key}"
        for delay in (0.0, *self.retry_delays):
            await asyncio.sleep(delay)
            try:
                async with self._slots:
                    self._sending.add(log_path)
                    try:
                        await asyncio.to_thread(
                            upload_log, self.store, log_path, self.location.bucket, key
                        )
                    finally:
                        self._sending.discard(log_path)
                await asyncio.to_thread(uploaded_marker(log_path).touch)
            except LogFileGoneError as err:
                log.info("not uploading the log of %s attempt %d: %s", task_id, attempt, err)
                self._tries.add(1, {"result": "gone"})
                return False
            except Exception as err:  # any failure of the store: the task's outcome stands
                log.warning("uploading %s failed (retrying in a while): %s", where, err)
                self._tries.add(1, {"result": "error"})
                continue
            log.info("uploaded the log of %s attempt %d to %s", task_id, attempt, where)
            self._tries.add(1, {"result": "uploaded"})
            return True
        self._tries.add(1, {"result": "gave_up"})
        log.warning(
            "gave up uploading %s after %d tries; the agent tries again at its next reconcile",
            where,
            len(self.retry_delays) + 1,
        )
        return False

    async def requeue(self, log_dir: Path) -> int:
        """Submit every ended attempt's log under ``log_dir`` not yet in the store; how many."""
        found = await asyncio.to_thread(_not_uploaded, log_dir)
        fresh = [item for item in found if item[0] not in self._pending]
        for log_path, task_id, attempt in fresh:
            self.submit(log_path, task_id, attempt)
        return len(fresh)

    async def close(self, grace: float = 5.0) -> None:
        """Give uploads under way ``grace`` seconds; cancel the rest (requeued at next start).

        Uploads waiting for a retry or a slot are cancelled at once: a stopping
        agent does not wait out a backoff.
        """
        sending = [task for path, task in self._pending.items() if path in self._sending]
        if sending:
            await asyncio.wait(sending, timeout=grace)
        late = list(self._pending.values())
        for task in late:
            task.cancel()
        for task in late:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _not_uploaded(log_dir: Path) -> list[tuple[Path, str, int]]:
    """``(log, task id, attempt)`` of each ended attempt whose log has no upload marker."""
    found = []
    for exit_file in log_dir.glob("*/attempt-*.exit.json"):
        name = exit_file.name.removesuffix(".exit.json")  # attempt-<n>
        number = name.removeprefix("attempt-")
        log_path = exit_file.with_name(f"{name}.log")
        if not number.isdigit() or uploaded_marker(log_path).exists() or not log_path.exists():
            continue
        found.append((log_path, exit_file.parent.name, int(number)))
    return found
