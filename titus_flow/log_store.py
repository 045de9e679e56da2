"""Task logs in S3: where an attempt's log goes, how it is packed, the store that holds it.

An agent given a log bucket (setting ``log_bucket``, ``--log-bucket``) uploads
each ended attempt's log, gzip-compressed, to one object per attempt::

    s3://<bucket>/<prefix>/<job id>/<task id>/<attempt>/log.gz

The object holds stdout and stderr interleaved, as the agent keeps them and
``titus-flow task logs`` prints them. The key depends only on the ids, so the
attempt's reference (:class:`~titus_flow.views.LogRef`) is known before the
upload ends, and a reader can derive it from the same settings. Ids are checked
(:mod:`titus_flow.ids`): no key leaves its prefix, and keys hold no secret.

boto3 finds credentials, region and endpoint the usual way, as the agent's AWS
secrets do (:mod:`titus_flow.secrets`): instance role or ``AWS_*`` variables,
``AWS_ENDPOINT_URL_S3`` (or ``AWS_ENDPOINT_URL``) for a test server such as moto.
"""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, Protocol

from titus_flow.config import Settings
from titus_flow.ids import split_task_id
from titus_flow.views import LogRef

LOG_OBJECT: Final = "log.gz"
"""Name of an attempt's log object under its ``<attempt>/`` key prefix."""
DEFAULT_PREFIX: Final = "titus-flow"
SPOOL_BYTES: Final = 8 * 1024 * 1024  # compressed logs up to this stay in memory


class LogStoreError(Exception):
    """The store could not be reached, or refused the call (no credentials, denied, ...)."""


class LogNotFoundError(LogStoreError):
    """No object at that key (never uploaded, or deleted since)."""


class LogFileGoneError(Exception):
    """The agent's kept log is not there to upload (pruned meanwhile, or never written)."""


@dataclass(frozen=True)
class LogLocation:
    """A bucket and key prefix that attempts' logs go under."""

    bucket: str
    prefix: str = DEFAULT_PREFIX

    def key(self, task_id: str, attempt: int) -> str:
        """``<prefix>/<job id>/<task id>/<attempt>/log.gz``; the prefix's slashes are tidied."""
        job_id, _ = split_task_id(task_id)  # also checks the id: nothing leaves the prefix
        parts = [part for part in self.prefix.split("/") if part]
        return "/".join([*parts, job_id, task_id, str(attempt), LOG_OBJECT])

    def ref(self, task_id: str, attempt: int) -> LogRef:
        """The attempt's reference (not yet seen uploaded)."""
        return LogRef(url=f"s3://{self.bucket}/{self.key(task_id, attempt)}")


def log_location(settings: Settings) -> LogLocation | None:
    """Where ``settings`` put attempts' logs; None when no ``log_bucket`` is set."""
    if settings.log_bucket is None:
        return None
    return LogLocation(settings.log_bucket, settings.log_prefix)


def parse_url(url: str) -> tuple[str, str]:
    """The bucket and key of ``s3://bucket/key``; ValueError for anything else."""
    bucket, _, key = url.removeprefix("s3://").partition("/")
    if not url.startswith("s3://") or not bucket or not key:
        raise ValueError(f"not an s3://bucket/key URL: {url!r}")
    return bucket, key


class ObjectStore(Protocol):
    """The two calls logs need of an object store (S3, or a fake in tests)."""

    def put(self, bucket: str, key: str, body: IO[bytes]) -> None:
        """Store ``body`` (read from its current position) at ``bucket``/``key``."""
        ...

    def get(self, bucket: str, key: str) -> bytes:
        """The object's bytes; :class:`LogNotFoundError` if there is none."""
        ...


class S3Store:
    """:class:`ObjectStore` on S3 through boto3, from the standard credential chain.

    boto3 itself tries each call once: the caller decides about retries (the
    agent's uploader backs off; a reader reports the failure).
    """

    def __init__(self) -> None:
        self._client: Any = None

    def _s3(self) -> Any:
        if self._client is None:
            import boto3  # only processes that move logs load boto3
            from botocore.config import Config

            self._client = boto3.client(
                "s3",
                config=Config(
                    retries={"mode": "standard", "max_attempts": 1},
                    connect_timeout=5,
                    read_timeout=30,
                ),
            )
        return self._client

    def put(self, bucket: str, key: str, body: IO[bytes]) -> None:
        """Upload ``body`` as ``bucket``/``key`` (a gzip file)."""
        self._call(
            bucket,
            key,
            lambda: self._s3().put_object(
                Bucket=bucket, Key=key, Body=body, ContentType="application/gzip"
            ),
        )

    def get(self, bucket: str, key: str) -> bytes:
        """The bytes of ``bucket``/``key``."""
        answer = self._call(bucket, key, lambda: self._s3().get_object(Bucket=bucket, Key=key))
        return bytes(answer["Body"].read())

    @staticmethod
    def _call(bucket: str, key: str, call: Any) -> Any:
        """Run one S3 call; its failures as :class:`LogStoreError` (never the credentials)."""
        import botocore.exceptions

        try:
            return call()
        except botocore.exceptions.ClientError as err:
            code = str(err.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                raise LogNotFoundError(f"s3://{bucket}/{key} does not exist") from None
            raise LogStoreError(f"s3://{bucket}/{key}: {code or err}") from None
        except botocore.exceptions.BotoCoreError as err:  # no credentials, endpoint down, ...
            raise LogStoreError(f"s3://{bucket}/{key}: {err}") from None


def upload_log(store: ObjectStore, path: Path, bucket: str, key: str) -> None:
    """Compress the kept log at ``path`` and store it at ``bucket``/``key``.

    The file is opened without following a link and must be a regular file:
    a task cannot have its agent upload a host file in its place.
    :class:`LogFileGoneError` if it is not there.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise LogFileGoneError(f"{path} is gone") from None
    except OSError as err:
        raise LogFileGoneError(f"cannot open {path} ({err.strerror})") from None
    with os.fdopen(fd, "rb") as source, tempfile.SpooledTemporaryFile(SPOOL_BYTES) as packed:
        if not stat.S_ISREG(os.fstat(source.fileno()).st_mode):
            raise LogFileGoneError(f"{path} is not a regular file")
        with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0) as zipped:
            shutil.copyfileobj(source, zipped)
        packed.seek(0)
        store.put(bucket, key, packed)


def read_log(store: ObjectStore, url: str) -> bytes:
    """The uncompressed log at ``url`` (``s3://bucket/key``)."""
    bucket, key = parse_url(url)
    blob = store.get(bucket, key)
    try:
        return gzip.decompress(blob)
    except (OSError, EOFError) as err:  # not gzip, or cut short
        raise LogStoreError(f"{url} is not a whole gzip file ({err})") from None
