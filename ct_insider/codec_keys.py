"""The payload codec's key ring, parsed from configuration (no Temporal, no cryptography here,
so ct_insider/config.py can validate `TEMPORAL_CODEC_KEYS` when settings load).

Two spellings, the first key being the one that encrypts unless `TEMPORAL_CODEC_KEY_ID`
names another:
- `id1:base64key,id2:base64key`
- `{"id1": "base64key", "id2": "base64key"}`

Error messages name key ids, never key material.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
from dataclasses import dataclass

KEY_BYTES = 32  # AES-256
KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# HKDF's `info`: the fingerprint key is for nothing else, and differs from the payload key.
FINGERPRINT_KEY_INFO = b"ct-insider pii-fingerprint v1"


@dataclass(frozen=True)
class KeyRing:
    keys: dict[str, bytes]
    current: str

    def __repr__(self) -> str:  # never print key material
        return f"KeyRing(ids={list(self.keys)}, current={self.current!r})"


def _entries(text: str) -> list[tuple[str, str]]:
    text = text.strip()
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            raise ValueError('is not valid JSON (expected {"key-id": "base64 key", ...})') from None
        if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
            raise ValueError('must map key ids to base64 strings: {"key-id": "base64 key"}')
        return list(parsed.items())
    entries = []
    for number, item in enumerate(filter(None, (part.strip() for part in text.split(","))), 1):
        key_id, colon, encoded = item.partition(":")
        if not colon:
            raise ValueError(f"entry {number} is not `key-id:base64key`")
        entries.append((key_id.strip(), encoded.strip()))
    return entries


def parse_key_ring(text: str, current: str | None = None) -> KeyRing:
    """The ring, or ValueError saying what is wrong with which key id."""
    keys: dict[str, bytes] = {}
    for key_id, encoded in _entries(text):
        if not KEY_ID_PATTERN.match(key_id):
            raise ValueError(f"key id {key_id!r} must be 1-64 of A-Z a-z 0-9 . _ -")
        if key_id in keys:
            raise ValueError(f"key id {key_id!r} appears twice")
        try:
            key = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise ValueError(f"key {key_id!r} is not base64") from None
        if len(key) != KEY_BYTES:
            raise ValueError(f"key {key_id!r} must be {KEY_BYTES} bytes (AES-256), is {len(key)}")
        keys[key_id] = key
    if not keys:
        raise ValueError("holds no key")
    chosen = current or next(iter(keys))
    if chosen not in keys:
        raise ValueError(f"TEMPORAL_CODEC_KEY_ID {chosen!r} is not among the keys {list(keys)}")
    return KeyRing(keys, chosen)


def generate_key_entry(key_id: str) -> str:
    """A fresh `key-id:base64key` entry (for `ct-insider codec-server --generate-key`, the
    dev stack and tests)."""
    if not KEY_ID_PATTERN.match(key_id):
        raise ValueError(f"key id {key_id!r} must be 1-64 of A-Z a-z 0-9 . _ -")
    return f"{key_id}:{base64.b64encode(os.urandom(KEY_BYTES)).decode()}"


def fingerprint_key(ring: KeyRing) -> bytes:
    """The key of PII fingerprints (ct_insider.logging.pii_fingerprint): HKDF-SHA256 (RFC
    5869, no salt) of the encrypting key, so every process with the same ring and key id
    derives the same one, and a fingerprint reveals nothing about the payload key. It
    changes when TEMPORAL_CODEC_KEY_ID does (a rotation): fingerprints from before do not
    match those after."""
    prk = hmac.new(bytes(hashlib.sha256().digest_size), ring.keys[ring.current], "sha256")
    return hmac.new(prk.digest(), FINGERPRINT_KEY_INFO + b"\x01", "sha256").digest()
