"""Encrypted payloads: an AES-GCM payload codec with named keys for rotation.

With a key ring configured (``codec_key_file`` or ``codec_keys`` in the
settings), every titus-flow client, control worker and agent encrypts each
payload it sends to Temporal (job inputs with their environment, results,
heartbeats, failure messages) and decrypts what it reads back: the server's
history, on disk or in ``temporal workflow show``, holds ciphertext only.

Key ring format: one key a line (or comma-separated in the environment
variable), ``<key id>:<base64 of 32 random bytes>``; blank lines and lines
starting with ``#`` are skipped. The **last** key encrypts; every key listed
decrypts. To rotate, append a new key, roll it out to every process, and drop
an old key only once no open workflow's history still uses it.

An encrypted payload keeps only the encoding ``binary/encrypted`` and the key
id in its metadata; its data is a 12-byte nonce and the AES-256-GCM
ciphertext of the whole original payload (metadata included), authenticated
together with the key id. Payloads that were never encrypted (histories from
before the codec was configured) decode unchanged.

Example::

    $ titus-flow codec-key >> ~/.titus-flow/codec-keys   # then chmod 600 it
    $ export TITUS_FLOW_CODEC_KEY_FILE=~/.titus-flow/codec-keys
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from titus_flow.config import Settings
from titus_flow.errors import UserError

ENCODING = b"binary/encrypted"
"""Metadata encoding of an encrypted payload."""
KEY_ID_METADATA = "encryption-key-id"
"""Metadata key naming the key that encrypted a payload."""
KEY_BYTES = 32
_NONCE_BYTES = 12
_AAD_PREFIX = b"titus-flow/payload/v1:"
_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

log = logging.getLogger(__name__)


class CodecError(Exception):
    """A payload could not be decrypted; the message says why and what to do."""


class UnknownKeyError(CodecError):
    """The payload was encrypted with a key this process does not hold."""


class TamperedPayloadError(CodecError):
    """The payload failed authentication: changed after encryption, or wrong key material."""


@dataclass(frozen=True)
class KeyRing:
    """Named AES-256 keys, oldest first; the last one encrypts."""

    keys: tuple[tuple[str, bytes], ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("a key ring needs at least one key")

    @property
    def current(self) -> str:
        """Id of the key new payloads are encrypted with."""
        return self.keys[-1][0]

    def key(self, key_id: str) -> bytes | None:
        """The key called ``key_id``, if held."""
        return dict(self.keys).get(key_id)

    @property
    def ids(self) -> list[str]:
        """Every key id held, oldest first."""
        return [key_id for key_id, _ in self.keys]


def parse_key_ring(text: str, source: str) -> KeyRing:
    """Parse ``id:base64key`` entries (lines or commas); raises UserError naming ``source``."""
    entries = [e.strip() for line in text.splitlines() for e in line.split(",")]
    keys: list[tuple[str, bytes]] = []
    problems: list[str] = []
    for number, entry in enumerate(entries, 1):
        if not entry or entry.startswith("#"):
            continue
        key_id, sep, encoded = entry.partition(":")
        if not sep or not _KEY_ID.match(key_id):
            problems.append(
                f"{source}: entry {number}: expected <key id>:<base64 key> with an id of"
                " letters, digits, '.', '_' or '-' (make one with `titus-flow codec-key`)"
            )
            continue
        try:
            material = base64.b64decode(encoded.strip(), validate=True)
        except binascii.Error:
            material = b""
        if len(material) != KEY_BYTES:
            problems.append(f"{source}: key {key_id!r} is not base64 of {KEY_BYTES} bytes")
        elif key_id in dict(keys):
            problems.append(f"{source}: key {key_id!r} is listed twice")
        else:
            keys.append((key_id, material))
    if problems:
        raise UserError(problems)
    if not keys:
        raise UserError(f"{source}: no keys (make one with `titus-flow codec-key`)")
    return KeyRing(tuple(keys))


def key_ring(settings: Settings) -> KeyRing | None:
    """The key ring the settings configure, or None when payloads are not encrypted."""
    if settings.codec_key_file is not None and settings.codec_keys is not None:
        raise UserError(
            "both codec_key_file and codec_keys are set: keep one"
            " (TITUS_FLOW_CODEC_KEY_FILE or TITUS_FLOW_CODEC_KEYS)"
        )
    if settings.codec_keys is not None:
        return parse_key_ring(settings.codec_keys.get_secret_value(), "codec_keys")
    if settings.codec_key_file is not None:
        path = settings.codec_key_file.expanduser()
        try:
            text = path.read_text()
            if path.stat().st_mode & 0o077:
                log.warning("codec key file %s is readable by others: chmod 600 it", path)
        except OSError as err:
            raise UserError(f"codec_key_file {path}: cannot read it: {err.strerror}") from err
        return parse_key_ring(text, str(path))
    return None


def new_key_line(key_id: str | None = None) -> str:
    """A fresh ``id:base64key`` entry (id from today's date unless given)."""
    key_id = key_id or f"k{time.strftime('%Y%m%d')}-{secrets.token_hex(2)}"
    if not _KEY_ID.match(key_id):
        raise UserError(f"key id {key_id!r}: use letters, digits, '.', '_' or '-' (max 64)")
    return f"{key_id}:{base64.b64encode(os.urandom(KEY_BYTES)).decode()}"


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM payload codec over a :class:`KeyRing` (see the module)."""

    def __init__(self, ring: KeyRing) -> None:
        """Encrypt with ``ring.current``; decrypt with any key of ``ring``."""
        self.ring = ring
        self._ciphers = {key_id: AESGCM(key) for key_id, key in ring.keys}

    def encrypt(self, payloads: Iterable[Payload]) -> list[Payload]:
        """Encrypt each payload with the current key."""
        key_id = self.ring.current
        cipher = self._ciphers[key_id]
        aad = _AAD_PREFIX + key_id.encode()
        sealed = []
        for payload in payloads:
            nonce = os.urandom(_NONCE_BYTES)
            data = nonce + cipher.encrypt(nonce, payload.SerializeToString(), aad)
            sealed.append(
                Payload(
                    metadata={"encoding": ENCODING, KEY_ID_METADATA: key_id.encode()}, data=data
                )
            )
        return sealed

    def decrypt(self, payloads: Iterable[Payload]) -> list[Payload]:
        """Decrypt each encrypted payload; others pass unchanged.

        Raises :class:`UnknownKeyError` or :class:`TamperedPayloadError`.
        """
        return [self._open(p) if p.metadata.get("encoding") == ENCODING else p for p in payloads]

    def _open(self, payload: Payload) -> Payload:
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise UnknownKeyError(
                f"payload encrypted with key {key_id!r}, which this process does not hold"
                f" (it holds {', '.join(self.ring.ids)}): add that key to its key ring"
                " (codec_key_file / TITUS_FLOW_CODEC_KEYS)"
            )
        nonce, sealed = payload.data[:_NONCE_BYTES], payload.data[_NONCE_BYTES:]
        try:
            plain = cipher.decrypt(nonce, sealed, _AAD_PREFIX + key_id.encode())
        except InvalidTag as err:
            raise TamperedPayloadError(
                f"payload encrypted with key {key_id!r} failed authentication: it was"
                f" changed after encryption, or key {key_id!r} here is not the key that"
                " encrypted it"
            ) from err
        return Payload.FromString(plain)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Encrypt (see :meth:`encrypt`)."""
        return self.encrypt(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Decrypt (see :meth:`decrypt`)."""
        return self.decrypt(payloads)


def codec_for(settings: Settings) -> EncryptionCodec | None:
    """The payload codec the settings configure, or None."""
    ring = key_ring(settings)
    return None if ring is None else EncryptionCodec(ring)
