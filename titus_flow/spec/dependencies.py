"""How a batch job waits for another job of its file (``depends_on``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field,
    GetJsonSchemaHandler,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from titus_flow.spec.base import NAME_HINT, NAME_PATTERN, Name, SpecModel, is_name

DependencyMode = Literal["all", "n_to_n"]
"""``all``: wait for the whole job to succeed; ``n_to_n``: task i waits for its task i."""

TaskOrder = Literal["parallel", "sequential"]
"""``parallel``: tasks start as capacity allows; ``sequential``: task i after task i-1."""


class Dependency(SpecModel):
    """One ``depends_on`` entry: a job name, or ``{job: name, mode: n_to_n}``.

    A bare name is ``mode: all`` and serializes back to the bare name, so files
    and recorded jobs that list names read and write exactly as before.

    Example::

        Dependency(job="split", mode="n_to_n")
    """

    job: Name = Field(description="A batch job of the same file.")
    mode: DependencyMode = Field(
        default="all",
        description=(
            "all: wait for the whole job to succeed; n_to_n: task i waits for task i of"
            " that job (both jobs need the same instances), as AWS Batch does."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if not is_name(value):  # reported at depends_on[i], where the name is written
            raise ValueError(f"invalid name {value!r}: {NAME_HINT}")
        return {"job": value}

    @model_serializer(mode="wrap")
    def _as_name_when_all(self, handler: SerializerFunctionWrapHandler) -> str | dict[str, Any]:
        if self.mode == "all":
            return self.job
        dumped: dict[str, Any] = handler(self)
        return dumped

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        mapping = handler(core_schema)
        if handler.mode == "serialization":
            return mapping
        return {"anyOf": [{"type": "string", "pattern": NAME_PATTERN}, mapping]}
