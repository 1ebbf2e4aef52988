"""The payload encryption codec: round trip, pass-through, rotation, tampering, key rings."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer

from ct_insider.codec import (
    ENCODING,
    KEY_ID_METADATA,
    CodecError,
    EncryptionCodec,
    UnknownKeyError,
    decode_in_place,
    payloads_in,
)
from ct_insider.codec_keys import KEY_BYTES, KeyRing, generate_key_entry, parse_key_ring
from ct_insider.config import PayloadCodecSettings
from ct_insider.temporal import data_converter
from emulators.wiring import EmulatorWiring
from workflows.delta import DeltaSyncWorkflow

KEY_A = b"A" * KEY_BYTES
KEY_B = b"B" * KEY_BYTES
EMAIL = b"jane.doe@example.com"
DELTA_HISTORY = (
    Path(__file__).parent.parent / "fixtures" / "delta_histories" / "watermark-given.json"
)


def _payload(data: bytes = b'{"email":"jane.doe@example.com","first_name":"Jane"}') -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=data)


def _codec(*keys: tuple[str, bytes]) -> EncryptionCodec:
    return EncryptionCodec(KeyRing(dict(keys), keys[0][0]))


async def test_a_payload_round_trips_and_is_unreadable_in_between() -> None:
    codec = _codec(("a", KEY_A))
    original = _payload()
    [sealed] = await codec.encode([original])
    assert sealed.metadata["encoding"] == ENCODING
    assert sealed.metadata[KEY_ID_METADATA] == b"a"
    assert EMAIL not in sealed.SerializeToString()
    assert b"json/plain" not in sealed.SerializeToString()  # the inner metadata is sealed too
    [opened] = await codec.decode([sealed])
    assert opened == original


async def test_each_encryption_uses_a_fresh_nonce() -> None:
    codec = _codec(("a", KEY_A))
    first, second = await codec.encode([_payload(), _payload()])
    assert first.data[:12] != second.data[:12]
    assert first.data != second.data


async def test_payloads_without_our_encoding_pass_through_unchanged() -> None:
    # Histories recorded before encryption, and workflows started without it, still decode.
    codec = _codec(("a", KEY_A))
    plain = [_payload(), Payload(metadata={"encoding": b"binary/null"}), Payload()]
    assert await codec.decode(plain) == plain


async def test_an_unknown_key_id_is_an_error_naming_it() -> None:
    [sealed] = await _codec(("retired-2025", KEY_A)).encode([_payload()])
    with pytest.raises(UnknownKeyError, match="'retired-2025'") as raised:
        await _codec(("current", KEY_B)).decode([sealed])
    assert raised.value.key_id == "retired-2025"


@pytest.mark.parametrize("position", [0, 12, -1])  # nonce, ciphertext, tag
async def test_a_tampered_payload_fails_authentication(position: int) -> None:
    codec = _codec(("a", KEY_A))
    [sealed] = await codec.encode([_payload()])
    data = bytearray(sealed.data)
    data[position] ^= 0x01
    tampered = Payload(metadata=dict(sealed.metadata), data=bytes(data))
    with pytest.raises(CodecError, match="failed authentication"):
        await codec.decode([tampered])


@pytest.mark.parametrize("length", [0, 5, 12, 27])  # none, part of a nonce, no full tag
async def test_a_truncated_payload_is_a_codec_error(length: int) -> None:
    # AES-GCM itself raises a bare ValueError for a short nonce (the codec server's 500)
    codec = _codec(("a", KEY_A))
    [sealed] = await codec.encode([_payload()])
    truncated = Payload(metadata=dict(sealed.metadata), data=sealed.data[:length])
    with pytest.raises(CodecError, match="'a' is truncated"):
        await codec.decode([truncated])


async def test_a_payload_relabelled_with_another_key_id_fails() -> None:
    # The key id is authenticated data: pointing a payload at another key is detected.
    [sealed] = await _codec(("a", KEY_A)).encode([_payload()])
    relabelled = Payload(metadata={**sealed.metadata, KEY_ID_METADATA: b"b"}, data=sealed.data)
    with pytest.raises(CodecError, match="failed authentication"):
        await _codec(("a", KEY_A), ("b", KEY_A)).decode([relabelled])


async def test_rotation_old_payloads_decode_after_the_ring_becomes_new_then_old() -> None:
    # Given payloads encrypted while key A was the only key
    ring_a = parse_key_ring(f"a:{base64.b64encode(KEY_A).decode()}")
    [old] = await EncryptionCodec(ring_a).encode([_payload()])
    # When the ring becomes [B, A] with B current
    both = f"b:{base64.b64encode(KEY_B).decode()},a:{base64.b64encode(KEY_A).decode()}"
    rotated = EncryptionCodec(parse_key_ring(both))
    # Then the old payloads decode, and new ones are encrypted with B
    assert await rotated.decode([old]) == [_payload()]
    [new] = await rotated.encode([_payload()])
    assert new.metadata[KEY_ID_METADATA] == b"b"
    with pytest.raises(UnknownKeyError):
        await EncryptionCodec(ring_a).decode([new])


def test_key_rings_parse_in_both_spellings_and_pick_the_current_key() -> None:
    a, b = base64.b64encode(KEY_A).decode(), base64.b64encode(KEY_B).decode()
    assert parse_key_ring(f"k1:{a}, k2:{b}") == KeyRing({"k1": KEY_A, "k2": KEY_B}, "k1")
    assert parse_key_ring(json.dumps({"k1": a, "k2": b}), "k2").current == "k2"
    generated = parse_key_ring(generate_key_entry("fresh"))
    assert generated.current == "fresh"
    assert len(generated.keys["fresh"]) == KEY_BYTES


@pytest.mark.parametrize(
    ("text", "current", "message"),
    [
        ("k1:" + base64.b64encode(b"short").decode(), None, "'k1' must be 32 bytes"),
        ("k1:not base64!", None, "'k1' is not base64"),
        ("k1", None, "entry 1 is not `key-id:base64key`"),
        ("", None, "holds no key"),
        ("k1:" + base64.b64encode(KEY_A).decode(), "k9", "'k9' is not among the keys"),
        ("bad id:" + base64.b64encode(KEY_A).decode(), None, "key id 'bad id'"),
        ('{"k1": 5}', None, "must map key ids"),
    ],
)
def test_a_bad_key_ring_is_a_clear_error_without_key_material(
    text: str, current: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as raised:
        parse_key_ring(text, current)
    assert base64.b64encode(KEY_A).decode() not in str(raised.value)


def test_settings_require_keys_unless_encryption_is_explicitly_disabled() -> None:
    with pytest.raises(ValidationError, match="TEMPORAL_CODEC_KEYS is required"):
        PayloadCodecSettings(_env_file=None, keys=None)
    assert PayloadCodecSettings(_env_file=None, keys=None, disabled=True).key_ring() is None
    entry = generate_key_entry("k1")
    with pytest.raises(ValidationError, match="not both"):
        PayloadCodecSettings(_env_file=None, keys=SecretStr(entry), disabled=True)
    with pytest.raises(ValidationError, match="TEMPORAL_CODEC_KEYS key 'k1' must be 32 bytes"):
        PayloadCodecSettings(
            _env_file=None, keys=SecretStr("k1:" + base64.b64encode(b"x").decode())
        )
    assert "k1:" not in repr(PayloadCodecSettings(_env_file=None, keys=SecretStr(entry)))


async def test_failure_messages_and_stack_traces_are_encrypted() -> None:
    converter = data_converter(PayloadCodecSettings(keys=SecretStr(generate_key_entry("k1"))))
    failure = Failure()
    try:
        raise ApplicationError("jane.doe@example.com was rejected")
    except ApplicationError as error:
        await converter.encode_failure(error, failure)
    assert EMAIL not in failure.SerializeToString()
    assert failure.encoded_attributes.metadata["encoding"] == ENCODING
    decoded = await converter.decode_failure(failure)
    assert "jane.doe@example.com was rejected" in str(decoded)


async def test_a_history_recorded_without_encryption_replays_with_the_codec_on() -> None:
    converter = data_converter(PayloadCodecSettings(keys=SecretStr(generate_key_entry("k1"))))
    history = WorkflowHistory.from_json(DELTA_HISTORY.stem, DELTA_HISTORY.read_text())
    replayer = Replayer(workflows=[DeltaSyncWorkflow], data_converter=converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None


def test_the_worker_refuses_to_start_without_keys(tmp_path: Path) -> None:
    # Given every setting of the worker but the codec's
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("CTP_", "INSIDER_", "TEMPORAL_"))
    }
    wiring = EmulatorWiring("http://127.0.0.1:9", "http://127.0.0.1:9", "p", "partner")
    env.update(wiring.environment("127.0.0.1:9", "queue"))
    # When the worker starts, Then it stops with exit 2 naming the variable, before connecting
    result = subprocess.run(
        [sys.executable, "-m", "starters.cli", "worker"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "TEMPORAL_CODEC_KEYS is required" in result.stderr
    assert "Traceback" not in result.stderr


async def test_decode_in_place_clears_every_payload_of_a_history_event() -> None:
    codec = _codec(("a", KEY_A))
    [sealed_input, sealed_details] = await codec.encode([_payload(), _payload(b'"details"')])
    signaled, failed = HistoryEvent(), HistoryEvent()
    signaled.workflow_execution_signaled_event_attributes.input.payloads.append(sealed_input)
    failure = failed.activity_task_failed_event_attributes.failure
    failure.cause.encoded_attributes.CopyFrom(sealed_details)
    assert EMAIL not in signaled.SerializeToString()
    for event in (signaled, failed):
        await decode_in_place(event, codec)
    assert [p for _, p in payloads_in(signaled)] == [_payload()]
    assert [p for _, p in payloads_in(failed)] == [_payload(b'"details"')]


def test_the_doctor_reports_missing_keys_as_a_failed_temporal_check(tmp_path: Path) -> None:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("CTP_", "INSIDER_", "TEMPORAL_"))
    }
    env["TEMPORAL_ADDRESS"] = "127.0.0.1:9"
    result = subprocess.run(
        [sys.executable, "-m", "starters.cli", "doctor", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    verdicts = json.loads(result.stdout)["verdicts"]
    [temporal] = [v for v in verdicts if v["system"] == "Temporal" and v["check"] == "connect"]
    assert temporal["status"] == "FAIL"
    assert "TEMPORAL_CODEC_KEYS is required" in temporal["detail"]
    assert result.returncode == 2
