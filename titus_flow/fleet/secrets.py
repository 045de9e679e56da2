"""Credentials a fleet instance fetches at boot from AWS Secrets Manager.

The boot script runs ``titus-flow fleet fetch-secret`` for each Secrets Manager
reference of the fleet spec (``temporal.tls_cert``, ``api_key``, ``codec_keys``
...). The value goes straight into a root-only file that the agent's settings
point at; it is never printed, logged, or put in a workflow input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from titus_flow.processes import write_atomically


class SecretFetchError(Exception):
    """The secret could not be read; the message names it and AWS's reason."""


def fetch_secret(secret_id: str, region: str, endpoint_url: str | None = None) -> bytes:
    """The current value of ``secret_id`` (SecretString as UTF-8, else SecretBinary)."""
    # Loaded here: boto3 costs every worker, agent and CLI start 0.2 s of CPU otherwise.
    import boto3
    from botocore.config import Config

    client: Any = boto3.client(
        "secretsmanager",
        region_name=region,
        endpoint_url=endpoint_url,
        config=Config(retries={"mode": "standard", "max_attempts": 5}),
    )
    try:
        reply = client.get_secret_value(SecretId=secret_id)
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "Unknown")
        raise SecretFetchError(f"secret {secret_id}: {code}") from err
    except BotoCoreError as err:
        raise SecretFetchError(f"secret {secret_id}: {err}") from err
    if "SecretString" in reply:
        return str(reply["SecretString"]).encode()
    return bytes(reply["SecretBinary"])


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by its owner only, atomically (no partial file)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomically(path, [data], private=True)
