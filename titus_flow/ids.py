"""Job and task ids: checked wherever they enter, because they become file paths.

An agent keeps each attempt's output under ``<log dir>/<task id>/``; a task id
such as ``../../etc`` would make it read or write elsewhere. Ids are also
container names and Temporal workflow ids, so one pattern serves all three:
what Docker allows in a container name, starting with a letter or digit (so
never ``.`` or ``..``), and no ``/``.
"""

from __future__ import annotations

import re
from typing import Final

from titus_flow.errors import UserError

ID_PATTERN: Final = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}"
_ID: Final = re.compile(ID_PATTERN)
_TASK_ID: Final = re.compile(rf"({ID_PATTERN})-([0-9]{{1,6}})")


def check_id(value: str, what: str = "job id") -> str:
    """Return ``value`` if it is a safe id (a job id, or a task id as a path component).

    Raises :class:`UserError` naming ``what`` otherwise.

    Example::

        check_id("hello-3f9c2a1b")  # "hello-3f9c2a1b"
        check_id("../../etc", "task id")  # UserError
    """
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise UserError(
            f"invalid {what} {value!r}: use up to 200 letters, digits, '_', '.' and '-',"
            " starting with a letter or digit"
        )
    return value


def split_task_id(task_id: str) -> tuple[str, int]:
    """The job id and index in ``task_id`` (``<job id>-<index>``); :class:`UserError` if invalid.

    Example::

        split_task_id("hello-3f9c2a1b-0")  # ("hello-3f9c2a1b", 0)
    """
    match = _TASK_ID.fullmatch(task_id) if isinstance(task_id, str) else None
    if match is None:
        raise UserError(
            f"invalid task id {task_id!r}: expected <job id>-<index>, e.g. hello-1a2b3c4d-0"
        )
    return match[1], int(match[2])
