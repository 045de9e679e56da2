"""Secrets a task receives as environment variables, resolved by its agent at launch.

A job holds only references (``Container.secrets``, see
:data:`titus_flow.spec.container.SecretRef`); the agent looks the values up
when it launches the attempt and hands them to the driver in memory
(:attr:`LaunchRequest.secret_env <titus_flow.runtime.base.LaunchRequest.secret_env>`).
No value is ever written to a workflow input or result, a log line or a search
attribute: errors name the reference, never what it resolved to.

The references it resolves are these.

* ``env_file:/path[#KEY]``: the line ``KEY=VALUE`` of a file on the agent host
  (``KEY`` defaults to the variable's name). The file must lie under the agent's
  ``secrets_dir`` setting, so a job cannot name any file the agent can read.
* ``arn:aws:secretsmanager:...``: the secret's ``SecretString``
  (AWS Secrets Manager, in the ARN's region).
* ``ssm:/name`` or ``arn:aws:ssm:...:parameter/name``: the parameter's value,
  decrypted (AWS Systems Manager Parameter Store).

boto3 finds credentials, region and endpoint the usual way (instance role,
``AWS_*`` variables, ``AWS_ENDPOINT_URL`` for a test server such as moto).
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from titus_flow.runtime.base import LaunchRefusedError

ENV_FILE_PREFIX: Final = "env_file:"
SSM_PREFIX: Final = "ssm:"
MAX_ENV_FILE_BYTES: Final = 1024 * 1024

# Errors of AWS that mean the reference is wrong for good, not that AWS failed now.
_MISSING_CODES: Final = frozenset(
    {"ResourceNotFoundException", "ParameterNotFound", "ParameterVersionNotFound"}
)
_DENIED_CODES: Final = frozenset({"AccessDeniedException", "AccessDenied"})


class SecretUnavailableError(Exception):
    """A secret could not be read now (AWS unreachable, throttled): the launch is retried."""


class SecretNotFoundError(LaunchRefusedError):
    """A reference names no secret this agent may read: the task fails (a user error)."""


async def resolve_secrets(refs: Mapping[str, str], *, secrets_dir: Path | None) -> dict[str, str]:
    """The value of every secret in ``refs`` (variable name -> reference).

    Raises :class:`SecretNotFoundError` for a reference that cannot resolve
    (missing, not allowed) and :class:`SecretUnavailableError` for a failure
    that may pass. Blocking work (files, AWS calls) runs on a thread.
    """
    if not refs:
        return {}
    return await asyncio.to_thread(_resolve_all, dict(refs), secrets_dir)


def _resolve_all(refs: dict[str, str], secrets_dir: Path | None) -> dict[str, str]:
    clients: dict[tuple[str, str | None], Any] = {}  # one boto3 client per service and region
    return {name: _resolve(name, ref, secrets_dir, clients) for name, ref in refs.items()}


def _resolve(
    name: str, ref: str, secrets_dir: Path | None, clients: dict[tuple[str, str | None], Any]
) -> str:
    if ref.startswith(ENV_FILE_PREFIX):
        path, _, key = ref.removeprefix(ENV_FILE_PREFIX).partition("#")
        return _from_env_file(Path(path), key or name, ref, secrets_dir)
    if ref.startswith("arn:") and ":secretsmanager:" in ref:
        client = _client(clients, "secretsmanager", ref.split(":")[3])
        answer = _aws_call(ref, lambda: client.get_secret_value(SecretId=ref))
        if "SecretString" not in answer:
            raise SecretNotFoundError(f"secret {ref} holds binary data, not text")
        return str(answer["SecretString"])
    if ref.startswith("arn:") and ":ssm:" in ref:
        region: str | None = ref.split(":")[3]
        parameter = "/" + ref.split(":parameter/", 1)[1]
    else:
        region, parameter = None, ref.removeprefix(SSM_PREFIX)
    client = _client(clients, "ssm", region)
    answer = _aws_call(ref, lambda: client.get_parameter(Name=parameter, WithDecryption=True))
    return str(answer["Parameter"]["Value"])


def _client(clients: dict[tuple[str, str | None], Any], service: str, region: str | None) -> Any:
    if (service, region) not in clients:
        import boto3  # only agents that resolve AWS secrets need boto3 loaded

        clients[service, region] = boto3.client(service, region_name=region)  # type: ignore[call-overload]
    return clients[service, region]


def _aws_call(ref: str, call: Any) -> Any:
    """Run one AWS call for ``ref``; its errors as the two kinds this module raises."""
    import botocore.exceptions

    try:
        return call()
    except botocore.exceptions.ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", ""))
        if code in _MISSING_CODES:
            raise SecretNotFoundError(f"secret {ref} does not exist") from None
        if code in _DENIED_CODES:
            raise SecretNotFoundError(f"this agent may not read secret {ref} ({code})") from None
        raise SecretUnavailableError(f"cannot read secret {ref}: {code or err}") from None
    except botocore.exceptions.BotoCoreError as err:  # no credentials, endpoint down, ...
        raise SecretUnavailableError(f"cannot read secret {ref}: {err}") from None


def _from_env_file(path: Path, key: str, ref: str, secrets_dir: Path | None) -> str:
    """The value of ``key`` in a ``KEY=VALUE`` file under ``secrets_dir``."""
    if secrets_dir is None:
        raise SecretNotFoundError(f"{ref}: this agent has no secrets_dir, so reads no env_file")
    root = secrets_dir.resolve()
    real = path.resolve()
    if not real.is_relative_to(root):
        raise SecretNotFoundError(f"{ref}: only files under {root} may be read")
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        raise SecretNotFoundError(f"{ref}: cannot open it ({err.strerror})") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_ENV_FILE_BYTES:
            raise SecretNotFoundError(f"{ref}: not a regular file of at most 1 MiB")
        text = file.read(MAX_ENV_FILE_BYTES).decode(errors="replace")
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("export "):
            line = line.removeprefix("export ").lstrip()
        name, sep, value = line.partition("=")
        if sep and name.strip() == key:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            return value
    raise SecretNotFoundError(f"{ref}: the file sets no {key}")
