"""The AES-GCM payload codec: round trip, rotation, clear errors, tampering detected."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from titus_flow.codec import (
    ENCODING,
    KEY_ID_METADATA,
    EncryptionCodec,
    TamperedPayloadError,
    UnknownKeyError,
    codec_for,
    key_ring,
    new_key_line,
    parse_key_ring,
)
from titus_flow.codec_server import CodecServer
from titus_flow.config import load_settings
from titus_flow.errors import UserError

MARKER = "marker-4f1c9e"


def _payload(text: str = MARKER) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=f'"{text}"'.encode())


def _codec(*lines: str) -> EncryptionCodec:
    return EncryptionCodec(parse_key_ring("\n".join(lines), "test"))


async def test_round_trip_hides_the_data_and_the_original_metadata() -> None:
    codec = _codec(new_key_line("k1"))
    original = [_payload(), _payload("other")]
    sealed = await codec.encode(original)
    assert all(p.metadata["encoding"] == ENCODING for p in sealed)
    assert all(p.metadata[KEY_ID_METADATA] == b"k1" for p in sealed)
    assert all(MARKER.encode() not in p.SerializeToString() for p in sealed)
    assert b"json/plain" not in sealed[0].SerializeToString()
    assert sealed[0].data != (await codec.encode([original[0]]))[0].data  # a fresh nonce
    assert await codec.decode(sealed) == original


async def test_rotation_encrypts_with_the_newest_and_decrypts_with_any() -> None:
    old, new = new_key_line("old"), new_key_line("new")
    before = await _codec(old).encode([_payload()])
    rotated = _codec(old, new)
    after = await rotated.encode([_payload()])
    assert after[0].metadata[KEY_ID_METADATA] == b"new"
    assert await rotated.decode([*before, *after]) == [_payload(), _payload()]


async def test_a_key_not_held_is_a_clear_error() -> None:
    sealed = await _codec(new_key_line("gone")).encode([_payload()])
    with pytest.raises(UnknownKeyError, match=r"key 'gone', which this process does not hold"):
        await _codec(new_key_line("k2")).decode(sealed)


async def test_same_id_other_material_is_reported_as_failed_authentication() -> None:
    sealed = await _codec(new_key_line("k1")).encode([_payload()])
    with pytest.raises(TamperedPayloadError, match="failed authentication"):
        await _codec(new_key_line("k1")).decode(sealed)


async def test_tampering_is_detected() -> None:
    codec = _codec(new_key_line("a"), new_key_line("b"))
    sealed = (await codec.encode([_payload()]))[0]
    flipped = Payload()
    flipped.CopyFrom(sealed)
    flipped.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    relabelled = Payload()
    relabelled.CopyFrom(sealed)
    relabelled.metadata[KEY_ID_METADATA] = b"a"  # the key id is authenticated too
    for bad in (flipped, relabelled):
        with pytest.raises(TamperedPayloadError):
            await codec.decode([bad])


async def test_plain_payloads_from_before_the_codec_pass_through() -> None:
    assert await _codec(new_key_line("k")).decode([_payload()]) == [_payload()]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "no keys"),
        ("k1", "expected <key id>:<base64 key>"),
        ("bad id:" + base64.b64encode(b"x" * 32).decode(), "expected <key id>"),
        ("k1:" + base64.b64encode(b"short").decode(), "not base64 of 32 bytes"),
        ("k1:not*base64", "not base64 of 32 bytes"),
    ],
)
def test_malformed_key_rings_are_refused(text: str, problem: str) -> None:
    with pytest.raises(UserError, match=problem):
        parse_key_ring(text, "test")


def test_a_key_listed_twice_is_refused() -> None:
    line = new_key_line("k1")
    with pytest.raises(UserError, match="listed twice"):
        parse_key_ring(f"{line}\n{line}", "test")


def test_keys_from_a_file_or_the_environment(tmp_path: Path) -> None:
    first, second = new_key_line("k1"), new_key_line("k2")
    path = tmp_path / "keys"
    path.write_text(f"# rotated 2025-01\n{first}\n\n{second}\n")
    path.chmod(0o600)
    env = {"TITUS_FLOW_HOME": str(tmp_path)}
    from_file = key_ring(load_settings(environ={**env, "TITUS_FLOW_CODEC_KEY_FILE": str(path)}))
    inline = {**env, "TITUS_FLOW_CODEC_KEYS": f"{first},{second}"}
    from_env = key_ring(load_settings(environ=inline))
    assert from_file == from_env and from_file is not None
    assert from_file.current == "k2" and from_file.ids == ["k1", "k2"]
    assert codec_for(load_settings(environ=env)) is None
    # The key material never shows in the settings' repr.
    assert second.split(":")[1] not in repr(
        load_settings(environ={**env, "TITUS_FLOW_CODEC_KEYS": second})
    )
    both = {**env, "TITUS_FLOW_CODEC_KEYS": first, "TITUS_FLOW_CODEC_KEY_FILE": str(path)}
    with pytest.raises(UserError, match="keep one"):
        key_ring(load_settings(environ=both))
    with pytest.raises(UserError, match="cannot read it"):
        key_ring(load_settings(environ={**env, "TITUS_FLOW_CODEC_KEY_FILE": str(tmp_path / "x")}))


@pytest.fixture
def server() -> Iterator[CodecServer]:
    codec = _codec(new_key_line("k1"))
    served = CodecServer(codec, origins=["http://127.0.0.1:8233"], token="s3cret")
    served.start_in_thread()
    yield served
    served.shutdown()
    served.server_close()


def _post(url: str, body: bytes, **headers: str) -> tuple[int, dict[str, Any], Message]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read()), reply.headers
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), err.headers


def test_codec_server_round_trip_behind_a_bearer_token(server: CodecServer) -> None:
    payload = json_format.MessageToJson(Payloads(payloads=[_payload()])).encode()
    auth = {"Authorization": "Bearer s3cret", "Origin": "http://127.0.0.1:8233"}
    status, sealed, headers = _post(f"{server.url}/default/encode", payload, **auth)
    assert status == 200 and MARKER not in json.dumps(sealed)
    assert headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:8233"
    status, opened, _ = _post(f"{server.url}/decode", json.dumps(sealed).encode(), **auth)
    assert status == 200
    assert json_format.ParseDict(opened, Payloads()).payloads == [_payload()]
    assert _post(f"{server.url}/decode", payload)[0] == 401
    assert _post(f"{server.url}/decode", payload, Authorization="Bearer nope")[0] == 401
    assert _post(f"{server.url}/decode", b"{not json", **auth)[0] == 400
    assert _post(f"{server.url}/other", payload, **auth)[0] == 404


def test_codec_server_reports_a_key_it_lacks(server: CodecServer) -> None:
    foreign = EncryptionCodec(parse_key_ring(new_key_line("elsewhere"), "test"))
    body = json_format.MessageToJson(Payloads(payloads=foreign.encrypt([_payload()]))).encode()
    status, reply, _ = _post(f"{server.url}/decode", body, Authorization="Bearer s3cret")
    assert status == 400 and "'elsewhere', which this process does not hold" in reply["error"]


@pytest.mark.parametrize(
    ("origin", "allowed"), [("http://127.0.0.1:8233", True), ("http://evil.test", False)]
)
def test_codec_server_preflight_allows_the_ui_origin_only(
    server: CodecServer, origin: str, allowed: bool
) -> None:
    request = urllib.request.Request(
        f"{server.url}/decode", method="OPTIONS", headers={"Origin": origin}
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.status == 204
        assert (reply.headers.get("Access-Control-Allow-Origin") == origin) is allowed
        assert ("Authorization" in reply.headers.get("Access-Control-Allow-Headers", "")) is allowed
