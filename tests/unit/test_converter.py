"""The control worker's converter: a workflow payload that does not decode fails the
workflow (naming the fields), an activity result that does not decode does not."""

from __future__ import annotations

import pytest
from temporalio.converter import ActivitySerializationContext, WorkflowSerializationContext
from temporalio.exceptions import ApplicationError

from titus_flow.converter import INVALID_PAYLOAD, WORKER_DATA_CONVERTER
from titus_flow.spec import DisruptionBudget, ServiceJob


def decode(context: object, data: bytes, hint: type) -> object:
    converter = WORKER_DATA_CONVERTER.with_context(context).payload_converter  # type: ignore[arg-type]
    payloads = WORKER_DATA_CONVERTER.payload_converter.to_payloads([{}])
    payloads[0].data = data
    return converter.from_payloads(payloads, [hint])[0]


def test_undecodable_payload_in_a_workflow_fails_it_naming_the_field() -> None:
    context = WorkflowSerializationContext(namespace="default", workflow_id="svc-1")
    with pytest.raises(ApplicationError) as caught:
        decode(context, b'{"max_unavailable": -1}', DisruptionBudget)
    assert caught.value.type == INVALID_PAYLOAD and caught.value.non_retryable
    assert caught.value.message.startswith(
        "workflow svc-1: a payload does not decode as DisruptionBudget: max_unavailable:"
    ), caught.value.message
    assert decode(context, b'{"max_unavailable": 0}', DisruptionBudget) == DisruptionBudget(
        max_unavailable=0
    )


def test_undecodable_activity_result_keeps_failing_the_task_only() -> None:
    context = ActivitySerializationContext(
        namespace="default",
        activity_id="1",
        activity_type="launch",
        activity_task_queue="q",
        workflow_id="svc-1",
        workflow_type="ServiceJob",
        is_local=False,
    )
    with pytest.raises(Exception) as caught:
        decode(context, b"{}", ServiceJob)
    assert not isinstance(caught.value, ApplicationError)


async def test_a_codec_encrypts_payloads_and_failure_messages_of_both_converters() -> None:
    from temporalio.api.failure.v1 import Failure

    from titus_flow.codec import EncryptionCodec, new_key_line, parse_key_ring
    from titus_flow.converter import client_data_converter, worker_data_converter

    codec = EncryptionCodec(parse_key_ring(new_key_line("k1"), "test"))
    client, worker = client_data_converter(codec), worker_data_converter(codec)
    assert client_data_converter() is not client and worker.payload_codec is codec
    budget = DisruptionBudget(max_unavailable=7)
    sealed = await client.encode([budget, "marker-77"])
    assert all(b"marker-77" not in p.SerializeToString() for p in sealed)
    assert await worker.decode(sealed, [DisruptionBudget, str]) == [budget, "marker-77"]

    failure = Failure()
    await client.encode_failure(ApplicationError("env held marker-77"), failure)
    assert b"marker-77" not in failure.SerializeToString()
    decoded = await worker.decode_failure(failure)
    assert "marker-77" in str(decoded)
