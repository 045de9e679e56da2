"""The base every spec model shares: strict, immutable, schema-exportable."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, NoReturn, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from titus_flow.spec.quantities import format_duration

_T = TypeVar("_T")
_K = TypeVar("_K")
_V = TypeVar("_V")

_IMMUTABLE = (
    "spec models are immutable: make a changed copy with"
    " Model.model_validate({**model.model_dump(), ...})"
)


class FrozenList(list[_T]):
    """The list in a field of a spec model: read-only and hashable.

    A ``list`` subclass, so it still equals plain lists and type-checks as one;
    only in-place changes raise :class:`TypeError` (werkzeug's ``ImmutableList``
    does the same).
    """

    __slots__ = ()

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(_IMMUTABLE)

    append = extend = insert = pop = remove = clear = sort = reverse = _refuse
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(self))

    def __reduce__(self) -> tuple[Any, ...]:
        # The default protocol rebuilds a list subclass by appending, which we refuse.
        return (type(self), (list(self),))


class FrozenDict(dict[_K, _V]):
    """The dict in a field of a spec model: read-only and hashable (see :class:`FrozenList`)."""

    __slots__ = ()

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(_IMMUTABLE)

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (dict(self),))


def freeze(value: Any) -> Any:
    """``value`` with every list and dict in it replaced by a read-only, hashable one."""
    if isinstance(value, list) and not isinstance(value, FrozenList):
        return FrozenList(freeze(item) for item in value)
    if isinstance(value, dict) and not isinstance(value, FrozenDict):
        return FrozenDict({key: freeze(item) for key, item in value.items()})
    return value


def _serialized_defaults(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Write duration defaults in the JSON Schema as the model serializes them.

    Pydantic encodes a ``timedelta`` default as ISO 8601 (``"PT10S"``), which the
    schema's own ``Duration`` pattern would reject.
    """
    properties = schema.get("properties", {})
    for name, field in model.model_fields.items():
        if isinstance(field.default, timedelta) and name in properties:
            properties[name]["default"] = format_duration(field.default)


class SpecModel(BaseModel):
    """Base of all spec models: unknown fields are errors and instances are deeply frozen.

    Lists and dicts in fields become :class:`FrozenList` / :class:`FrozenDict`, so
    a job cannot change under the code that holds it, and models are hashable.
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        # Defaults go through the same validators, so they are frozen (and checked) too.
        validate_default=True,
        json_schema_extra=_serialized_defaults,
    )

    @field_validator("*")
    @classmethod
    def _freeze(cls, value: Any) -> Any:
        return freeze(value)


@dataclass(frozen=True)
class Matches:
    """Annotation: the string must match ``pattern``; the error says what it should be.

    Pydantic's own pattern error only quotes the regular expression; this one names
    the thing (``what``) and how to write it (``hint``). The JSON Schema keeps the
    ``pattern``.
    """

    pattern: str
    what: str
    hint: str

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        regex = re.compile(self.pattern)

        def check(value: str) -> str:
            # fullmatch: in Python, "$" also matches before a trailing newline.
            if not regex.fullmatch(value):
                raise ValueError(f"invalid {self.what} {value!r}: {self.hint}")
            return value

        return core_schema.no_info_after_validator_function(check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {**handler(schema), "pattern": self.pattern}


NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_NAME = re.compile(NAME_PATTERN)
NAME_HINT = "use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit"

Name = Annotated[str, Matches(NAME_PATTERN, "name", NAME_HINT)]
"""A DNS-label name: lowercase letters, digits and '-', at most 63 characters."""

RESERVED_LABEL_PREFIX = "titus-flow."


def _not_reserved(key: str) -> str:
    if key.startswith(RESERVED_LABEL_PREFIX):
        raise ValueError(
            f"label {key!r} uses the prefix {RESERVED_LABEL_PREFIX!r}, which titus-flow"
            " reserves for its own labels; rename it"
        )
    return key


LABEL_KEY_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9_./]{0,251}[A-Za-z0-9])?$"
LabelKey = Annotated[
    str,
    Matches(
        LABEL_KEY_PATTERN,
        "label key",
        "use letters, digits, '-', '_', '.' and '/', at most 253 characters,"
        " starting and ending with a letter or digit",
    ),
    AfterValidator(_not_reserved),
]
"""A label key: letters, digits, '-', '_', '.', '/' (Docker / Kubernetes style).

Keys starting with ``titus-flow.`` are reserved for the labels titus-flow sets.
"""


def is_name(value: str) -> bool:
    """Whether ``value`` is a valid :data:`Name`."""
    return bool(_NAME.fullmatch(value))


def repeated(values: list[str]) -> str:
    """The values listed more than once, sorted and comma-separated ("" if none).

    Example::

        repeated(["a", "b", "a"])  # "a"
    """
    return ", ".join(sorted({v for v in values if values.count(v) > 1}))
