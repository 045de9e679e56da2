"""The control worker's data converter: undecodable workflow input fails the workflow.

It is Temporal's pydantic converter but for one thing. With the plain one, a
workflow started with input its run method cannot decode (``{"chunks": 0}``
where the model requires at least 1) fails its first workflow task, and the
server retries that task forever: the workflow hangs as Running and nothing
says why. Temporal's answer is that a converter may raise a failure error
(``ApplicationError``) to fail the workflow instead (sdk-python #321,
features #240). This converter does so for every payload decoded in a
workflow's context: its input, and also the results of its child workflows
(queries that do not decode fail with the same message; signals are still
dropped and updates rejected by the SDK). Activity results keep the SDK's
behaviour: one that does not decode fails the workflow task, which is retried
until a compatible worker is deployed.

With a payload codec (:mod:`titus_flow.codec`), :func:`with_codec` adds it to
either converter; the worker keeps the codec of the client it is given.

Example::

    from titus_flow.converter import WORKER_DATA_CONVERTER

    worker_client = Client(**{**client.config(), "data_converter": WORKER_DATA_CONVERTER})
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any, Self

import pydantic
import temporalio.api.common.v1
from temporalio.contrib.pydantic import PydanticPayloadConverter, pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
    SerializationContext,
    WorkflowSerializationContext,
)
from temporalio.exceptions import ApplicationError, FailureError

from titus_flow.errors import format_validation_error

INVALID_PAYLOAD = "InvalidPayload"
"""Failure type of a workflow whose input (or a child's result) does not decode."""


class WorkflowPayloadConverter(PydanticPayloadConverter):
    """Pydantic payloads; one that does not decode in a workflow's context fails the workflow.

    The failure is a non-retryable ``ApplicationError`` of type
    :data:`INVALID_PAYLOAD` whose message names each field and what is wrong
    with it, e.g. ``workflow pipeline-1a2b: a payload does not decode as
    PipelineInput: chunks: must be greater than or equal to 1 (got 0)``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._workflow_context: WorkflowSerializationContext | None = None

    def with_context(self, context: SerializationContext) -> Self:
        """A converter for ``context``; it fails the workflow on workflow payloads only.

        Itself when that changes nothing (an activity's context on a context-free
        converter): the SDK then reuses its data converter instead of building a
        new one per command and per activity result, which was about a sixth of
        a busy control worker's CPU (issue 11).
        """
        workflow_context = context if isinstance(context, WorkflowSerializationContext) else None
        if workflow_context == self._workflow_context:
            return self
        converter = copy.copy(self)  # shares the component converters (and their caches)
        converter._workflow_context = workflow_context
        return converter

    def from_payloads(
        self,
        payloads: Sequence[temporalio.api.common.v1.Payload],
        type_hints: list[type] | None = None,
    ) -> list[Any]:
        """Decode ``payloads``; see the class for what a payload that does not decode does."""
        try:
            return super().from_payloads(payloads, type_hints)
        except Exception as err:
            context = self._workflow_context
            if context is None or isinstance(err, FailureError):
                raise
            raise ApplicationError(
                f"workflow {context.workflow_id}: {decode_problem(err, type_hints)}",
                type=INVALID_PAYLOAD,
                non_retryable=True,
            ) from err


def decode_problem(err: BaseException, type_hints: Sequence[Any] | None) -> str:
    """What is wrong with a payload that did not decode, one ``field: problem`` per error.

    Example::

        decode_problem(err, [PipelineInput])
        # "a payload does not decode as PipelineInput: chunks: must be greater than ..."
    """
    expected = ", ".join(getattr(t, "__name__", str(t)) for t in type_hints or [])
    cause = err if isinstance(err, pydantic.ValidationError) else err.__cause__
    if isinstance(cause, pydantic.ValidationError):
        lines = format_validation_error(cause, "payload")
        problems = "; ".join(line.removeprefix("payload: ") for line in lines)
    else:
        problems = f"{type(err).__name__}: {err}"
    return "a payload does not decode" + (f" as {expected}" if expected else "") + f": {problems}"


WORKER_DATA_CONVERTER = DataConverter(payload_converter_class=WorkflowPayloadConverter)
"""The data converter of titus-flow's control workers (pydantic, see the module)."""


def with_codec(converter: DataConverter, codec: PayloadCodec | None) -> DataConverter:
    """``converter`` encoding its payloads with ``codec`` (unchanged when None).

    With a codec, failure messages and stack traces move into an encoded
    attribute too (Temporal leaves them in plain text otherwise), so a
    failure that quotes a job's input does not show it in the history.
    """
    if codec is None:
        return converter
    return dataclasses.replace(
        converter,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def client_data_converter(codec: PayloadCodec | None = None) -> DataConverter:
    """The data converter of titus-flow's clients and agents: pydantic, plus ``codec``."""
    return with_codec(pydantic_data_converter, codec)


def worker_data_converter(codec: PayloadCodec | None = None) -> DataConverter:
    """:data:`WORKER_DATA_CONVERTER`, plus ``codec``."""
    return with_codec(WORKER_DATA_CONVERTER, codec)
