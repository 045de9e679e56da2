"""A path-aware reader over a parsed JSON or YAML mapping.

Every getter checks the type of what it reads and raises
:class:`~titus_flow.migrate.report.MigrateInputError` naming the field's path
and the type it expected. The reader remembers which keys were consumed, so
:meth:`Reader.report` lists every field nobody read as dropped ("nothing is
dropped silently" holds by construction), next to those dropped on purpose with
:meth:`Reader.drop`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from typing import Any, overload

from titus_flow.migrate.report import NO_COUNTERPART, Dropped, MigrateInputError

_INTEGER_TEXT = re.compile(r"^-?[0-9]{1,20}$")
_NUMBER_TEXT = re.compile(r"^-?[0-9]{1,20}(?:\.[0-9]{1,20})?(?:[eE][-+]?[0-9]{1,3})?$")


def describe(value: Any) -> str:
    """A short description of a value's type, for messages (never its text)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return type(value).__name__


def join(path: str, key: str | int) -> str:
    """``path`` extended by a mapping key (``a.b``) or a list index (``a[0]``)."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, list | dict) and not value)


class Reader:
    """Typed, path-aware access to one mapping of the input.

    Getters return ``None`` (or ``default``) when the key is absent or null.
    Mappings read with :meth:`child` / :meth:`children` are readers of their
    own whose unread keys the parent's :meth:`unread` includes.
    """

    def __init__(self, data: Any, path: str = "", *, dropped: list[Dropped] | None = None) -> None:
        if not isinstance(data, Mapping):
            raise MigrateInputError(path, f"expected a mapping, got {describe(data)}")
        for key in data:
            if not isinstance(key, str):
                raise MigrateInputError(path, f"keys must be strings, got {describe(key)}")
        self.data: Mapping[str, Any] = data
        self.path = path
        self._consumed: set[str] = set()
        self._children: dict[str, list[Reader]] = {}
        self._dropped: list[Dropped] = [] if dropped is None else dropped

    # -- bookkeeping ----------------------------------------------------------------------

    def at(self, key: str | int) -> str:
        """The path of ``key`` in this mapping."""
        return join(self.path, key)

    def has(self, key: str) -> bool:
        """Whether ``key`` is present and not null (does not count as reading it)."""
        return self.data.get(key) is not None

    def raw(self, key: str) -> Any:
        """The value of ``key`` as parsed, unchecked; it counts as read, subtree included."""
        self._consumed.add(key)
        return self.data.get(key)

    def fail(self, key: str | int, message: str) -> MigrateInputError:
        """An input error about ``key`` of this mapping (to raise)."""
        return MigrateInputError(self.at(key), message)

    def drop(self, key: str, reason: str) -> None:
        """Report ``key`` (if present) as not carried, for ``reason``; it counts as read."""
        self._consumed.add(key)
        if not _is_empty(self.data.get(key)):
            self._dropped.append(Dropped(self.at(key), reason))

    def drop_path(self, path: str, reason: str) -> None:
        """Report a field below this mapping, named by its full ``path``, as not carried."""
        self._dropped.append(Dropped(path, reason))

    def unread(self) -> list[Dropped]:
        """Every non-empty field of this mapping (and of its read children) nobody consumed."""
        left: list[Dropped] = []
        for key, value in self.data.items():
            if key in self._children:
                for child in self._children[key]:
                    left += child.unread()
            elif key not in self._consumed and not _is_empty(value):
                left.append(Dropped(self.at(key), NO_COUNTERPART))
        return left

    def report(self) -> list[Dropped]:
        """What was dropped on purpose, then what nobody read; sorted by path."""
        return sorted([*self._dropped, *self.unread()], key=lambda item: item.path)

    # -- typed getters --------------------------------------------------------------------

    def _get(self, key: str) -> Any:
        self._consumed.add(key)
        return self.data.get(key)

    @overload
    def text(self, key: str) -> str | None: ...
    @overload
    def text(self, key: str, default: str) -> str: ...
    def text(self, key: str, default: str | None = None) -> str | None:
        """A string."""
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.fail(key, f"expected a string, got {describe(value)}")
        return value

    def required_text(self, key: str) -> str:
        """A string that must be present and not empty."""
        value = self.text(key)
        if not value:
            raise self.fail(key, "missing: a non-empty string is required")
        return value

    @overload
    def integer(self, key: str, *, minimum: int | None = 0) -> int | None: ...
    @overload
    def integer(self, key: str, default: int, *, minimum: int | None = 0) -> int: ...
    def integer(
        self, key: str, default: int | None = None, *, minimum: int | None = 0
    ) -> int | None:
        """An integer: a JSON number, or a string of digits (proto3 JSON's int64/uint64)."""
        value = self._get(key)
        if value is None:
            return default
        number: int | None = None
        whole_float = isinstance(value, float) and value.is_integer()
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif whole_float or (isinstance(value, str) and _INTEGER_TEXT.fullmatch(value)):
            number = int(value)
        if number is None:
            raise self.fail(
                key, f"expected an integer (or a string of digits), got {describe(value)}"
            )
        if minimum is not None and number < minimum:
            raise self.fail(key, f"must be at least {minimum}, got {number}")
        return number

    @overload
    def number(self, key: str) -> float | None: ...
    @overload
    def number(self, key: str, default: float) -> float: ...
    def number(self, key: str, default: float | None = None) -> float | None:
        """A finite, non-negative number: a JSON number or a numeric string."""
        value = self._get(key)
        if value is None:
            return default
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if numeric or (isinstance(value, str) and _NUMBER_TEXT.fullmatch(value)):
            number = float(value)
        else:
            raise self.fail(key, f"expected a number, got {describe(value)}")
        if not math.isfinite(number) or number < 0:
            raise self.fail(key, "must be a finite number, at least 0")
        return number

    @overload
    def flag(self, key: str) -> bool | None: ...
    @overload
    def flag(self, key: str, default: bool) -> bool: ...
    def flag(self, key: str, default: bool | None = None) -> bool | None:
        """A boolean (true or false, not a string)."""
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {describe(value)}")
        return value

    def items(self, key: str) -> list[Any]:
        """A list (empty when absent), its items unchecked; it counts as read."""
        value = self._get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(key, f"expected a list, got {describe(value)}")
        return value

    def strings(self, key: str) -> list[str]:
        """A list of strings (empty when absent)."""
        values = self.items(key)
        for index, value in enumerate(values):
            if not isinstance(value, str):
                raise MigrateInputError(
                    join(self.at(key), index), f"expected a string, got {describe(value)}"
                )
        return list(values)

    def string_map(self, key: str) -> dict[str, str]:
        """A mapping of strings to strings (empty when absent)."""
        value = self._get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(key, f"expected a mapping, got {describe(value)}")
        for name, item in value.items():
            if not isinstance(name, str):
                raise self.fail(key, f"keys must be strings, got {describe(name)}")
            if not isinstance(item, str):
                raise MigrateInputError(
                    join(self.at(key), name), f"expected a string, got {describe(item)}"
                )
        return dict(value)

    def child(self, key: str) -> Reader | None:
        """The mapping at ``key`` as a reader of its own (None when absent)."""
        value = self.data.get(key)
        if value is None:
            self._consumed.add(key)
            return None
        reader = Reader(value, self.at(key), dropped=self._dropped)
        self._children[key] = [reader]
        return reader

    def children(self, key: str) -> list[Reader]:
        """The list of mappings at ``key``, each a reader of its own."""
        values = self.items(key)
        readers = [
            Reader(value, join(self.at(key), index), dropped=self._dropped)
            for index, value in enumerate(values)
        ]
        self._children[key] = readers
        return readers

    def oneof(self, choices: Collection[str], *, exclusive: bool = True) -> str | None:
        """Which of ``choices`` (a proto3 oneof: at most one key set) this mapping holds.

        ``exclusive``: the mapping is only the oneof, so any other key is an
        unknown member and an error. None when no choice is present.
        """
        present = [key for key in self.data if key in choices and self.data[key] is not None]
        if exclusive:
            for key in self.data:
                if key not in choices:
                    known = ", ".join(sorted(choices))
                    raise self.fail(key, f"unknown key: expected one of {known}")
        if len(present) > 1:
            raise MigrateInputError(
                self.path, f"{' and '.join(present)} are exclusive (a oneof): keep one"
            )
        return present[0] if present else None

    def required_oneof(self, choices: Collection[str], *, exclusive: bool = True) -> str:
        """Like :meth:`oneof`, but one of ``choices`` must be present."""
        chosen = self.oneof(choices, exclusive=exclusive)
        if chosen is None:
            raise MigrateInputError(self.path, f"missing: set one of {', '.join(sorted(choices))}")
        return chosen
