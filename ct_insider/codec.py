"""AES-256-GCM encryption of every Temporal payload: workflow and activity inputs, results,
signals, queries, memos, and failures' messages and stack traces.

Anyone with only Temporal access (the UI, the CLI, a history export) sees ciphertext; the
workers, the bridge and the CLI hold the keys (TEMPORAL_CODEC_KEYS) and `ct-insider
codec-server` lets authorized operators read payloads in the Temporal UI.

An encrypted payload is `{encoding: binary/encrypted, encryption-key-id: <id>}` with data
`nonce (12 bytes) || ciphertext+tag` of the original payload serialized as protobuf. The key
id is also the AES-GCM associated data, so a payload relabelled with another key id fails
authentication. Decryption uses the key the payload names: keys rotate by putting the new
key first and keeping the old ones listed until no history needs them.

Payloads without our encoding pass through unchanged: histories recorded before encryption
(tests/fixtures/histories) and workflows started unencrypted keep working.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from ct_insider.codec_keys import KeyRing

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
NONCE_BYTES = 12
TAG_BYTES = 16  # AES-GCM's authentication tag, after the ciphertext


class CodecError(Exception):
    """A payload could not be decrypted (its key is missing, or it was altered)."""


class UnknownKeyError(CodecError):
    def __init__(self, key_id: str) -> None:
        super().__init__(
            f"payload encrypted with key id {key_id!r}, which TEMPORAL_CODEC_KEYS does not "
            "hold: add that key to the ring (keep retired keys while histories use them)"
        )
        self.key_id = key_id


class EncryptionCodec(PayloadCodec):
    def __init__(self, ring: KeyRing) -> None:
        self._ciphers = {key_id: AESGCM(key) for key_id, key in ring.keys.items()}
        self._current = ring.current
        self._current_id = ring.current.encode()

    @property
    def current_key_id(self) -> str:
        return self._current

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(payload) for payload in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self._current].encrypt(
            nonce, payload.SerializeToString(), self._current_id
        )
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID_METADATA: self._current_id},
            data=nonce + sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # not ours: recorded before encryption, or never encrypted
        raw_id = payload.metadata.get(KEY_ID_METADATA)
        if raw_id is None:
            raise CodecError(f"encrypted payload without {KEY_ID_METADATA} metadata")
        key_id = raw_id.decode("utf-8", "replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise UnknownKeyError(key_id)
        data = payload.data
        if len(data) < NONCE_BYTES + TAG_BYTES:  # AESGCM would raise a bare ValueError
            raise CodecError(
                f"payload encrypted with key id {key_id!r} is truncated: {len(data)} bytes, "
                f"less than a nonce and a tag ({NONCE_BYTES + TAG_BYTES})"
            )
        try:
            plain = cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], raw_id)
        except InvalidTag:
            raise CodecError(
                f"payload encrypted with key id {key_id!r} failed authentication "
                "(altered, or a different key under the same id)"
            ) from None
        return Payload.FromString(plain)


def payloads_in(message: Message, path: str = "") -> Iterator[tuple[str, Payload]]:
    """Every Payload inside a protobuf message (e.g. a history event), with the field path
    that leads to it (map keys in brackets)."""
    for field, value in message.ListFields():
        if field.type != FieldDescriptor.TYPE_MESSAGE or field.message_type is None:
            continue
        where = f"{path}.{field.name}"
        if field.message_type.GetOptions().map_entry:
            children = [(f"{where}[{k}]", v) for k, v in value.items() if isinstance(v, Message)]
        elif field.is_repeated:
            children = [(where, item) for item in value]
        else:
            children = [(where, value)]
        for child_path, child in children:
            if isinstance(child, Payload):
                yield child_path, child
            else:
                yield from payloads_in(child, child_path)


async def decode_in_place(message: Message, codec: PayloadCodec) -> None:
    """Decode every payload of `message` (e.g. to record a history in clear for replay tests,
    which then replays with or without the keys)."""
    for _, payload in list(payloads_in(message)):
        [decoded] = await codec.decode([payload])
        payload.CopyFrom(decoded)
