"""PII fingerprints (logs, drift reports, dead letters) and erasure workflow ids are keyed
(HMAC-SHA256 under a key derived from the payload codec's encrypting key): without the key,
hashing every phone number or a list of emails does not find whose they are."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ct_insider.codec_keys import (
    FINGERPRINT_KEY_INFO,
    fingerprint_key,
    generate_key_entry,
    parse_key_ring,
)
from ct_insider.erasure.plan import ErasureRequest, erasure_workflow_id
from ct_insider.logging import (
    configure_logging,
    configure_pii_fingerprints,
    fingerprints_keyed,
    mask_pii,
    pii_fingerprint,
    use_fingerprint_key,
)
from starters.cli import main

PHONE = "+4915112345678"
EMAIL = "jane.doe@example.com"
RING = ",".join([generate_key_entry("2026-11"), generate_key_entry("2026-12")])

# What another process with the same configuration computes.
PROBE = f"""
import json
from ct_insider.erasure.plan import ErasureRequest, erasure_workflow_id
from ct_insider.logging import configure_pii_fingerprints, pii_fingerprint
keyed = configure_pii_fingerprints()
print(json.dumps({{
    "keyed": keyed,
    "phone": pii_fingerprint({PHONE!r}),
    "erasure_id": erasure_workflow_id(ErasureRequest(email={EMAIL!r})),
}}))
"""


def _unkeyed(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@pytest.fixture(autouse=True)
def _restore_the_sessions_key() -> Iterator[None]:
    # Autouse, so torn down after monkeypatch restored the environment.
    yield
    configure_pii_fingerprints()


def _configure(monkeypatch: pytest.MonkeyPatch, key_id: str | None = None) -> bool:
    monkeypatch.setenv("TEMPORAL_CODEC_KEYS", RING)
    if key_id is None:
        monkeypatch.delenv("TEMPORAL_CODEC_KEY_ID", raising=False)
    else:
        monkeypatch.setenv("TEMPORAL_CODEC_KEY_ID", key_id)
    monkeypatch.delenv("TEMPORAL_CODEC_DISABLED", raising=False)
    return configure_pii_fingerprints()


def _other_process(key_id: str | None = None) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_CODEC_")}
    env["TEMPORAL_CODEC_KEYS"] = RING
    if key_id is not None:
        env["TEMPORAL_CODEC_KEY_ID"] = key_id
    result = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    probed: dict[str, object] = json.loads(result.stdout)
    return probed


def test_the_fingerprint_key_is_hkdf_sha256_of_the_encrypting_key() -> None:
    ring = parse_key_ring(RING)
    expected = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=FINGERPRINT_KEY_INFO
    ).derive(ring.keys["2026-11"])
    assert fingerprint_key(ring) == expected
    assert fingerprint_key(ring) != ring.keys["2026-11"]
    # The key that encrypts decides it: TEMPORAL_CODEC_KEY_ID selects another
    assert fingerprint_key(parse_key_ring(RING, "2026-12")) != expected


def test_keyed_fingerprints_are_hmacs_not_plain_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the codec's keys configured
    assert _configure(monkeypatch) is True
    assert fingerprints_keyed()
    # When a phone number is fingerprinted, alone or inside a refusal's text
    fingerprint = pii_fingerprint(PHONE)
    # Then it is the HMAC under the derived key, not a hash anyone can recompute
    key = fingerprint_key(parse_key_ring(RING))
    assert fingerprint == "pii:" + hmac.new(key, PHONE.encode(), "sha256").hexdigest()[:12]
    assert fingerprint != "pii:" + _unkeyed(PHONE)[:12]
    assert mask_pii(f"invalid phone number: {PHONE}") == f"invalid phone number: {fingerprint}"


def test_fingerprints_and_erasure_ids_agree_across_processes_with_the_same_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given this process and another one configured with the same key ring
    _configure(monkeypatch)
    here = {
        "keyed": True,
        "phone": pii_fingerprint(PHONE),
        "erasure_id": erasure_workflow_id(ErasureRequest(email=EMAIL)),
    }
    # When both fingerprint the same values, Then they agree
    assert _other_process() == here
    # And after a rotation (the other key encrypts) they differ
    rotated = _other_process(key_id="2026-12")
    assert rotated["phone"] != here["phone"]
    assert rotated["erasure_id"] != here["erasure_id"]


def test_the_erasure_workflow_id_holds_no_plain_hash_of_the_email(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _configure(monkeypatch)
    workflow_id = erasure_workflow_id(ErasureRequest(email=f" {EMAIL.upper()}"))
    assert workflow_id.startswith("erase-email-")
    assert _unkeyed(EMAIL)[:16] not in workflow_id  # what a dictionary attack would match
    # Still one id per person within a key period (a repeated request finds the running one)
    assert workflow_id == erasure_workflow_id(ErasureRequest(email=EMAIL))


def test_without_keys_fingerprints_fall_back_to_unkeyed_hashes_and_say_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", json=True)
    # Given encryption disabled (local development)
    monkeypatch.delenv("TEMPORAL_CODEC_KEYS", raising=False)
    monkeypatch.setenv("TEMPORAL_CODEC_DISABLED", "true")
    # When the process starts
    assert configure_pii_fingerprints() is False
    # Then fingerprints are plain SHA-256, and a warning says they are
    assert pii_fingerprint(PHONE) == "pii:" + _unkeyed(PHONE)[:12]
    [warning] = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert warning["level"] == "warning"
    assert "unkeyed" in warning["event"]


def test_every_ct_insider_command_keys_fingerprints_at_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TEMPORAL_CODEC_KEYS", RING)
    use_fingerprint_key(None)
    assert main(["codec-server", "--generate-key", "2027-01"]) == 0
    assert fingerprints_keyed()
    assert pii_fingerprint(PHONE) != "pii:" + _unkeyed(PHONE)[:12]
