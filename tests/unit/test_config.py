"""Settings: a missing or invalid variable stops a command with exit code 2 and its name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ct_insider.config import CommercetoolsSettings, ConfigurationError, InsiderSettings, load

CT_ENV = {
    "CTP_PROJECT_KEY": "shop",
    "CTP_CLIENT_ID": "id",
    "CTP_CLIENT_SECRET": "very-secret",
    "CTP_AUTH_URL": "https://auth.example",
    "CTP_API_URL": "https://api.example",
}


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith(("CTP_", "INSIDER_", "TEMPORAL_")):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_missing_variable_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in CT_ENV.items():
        if key != "CTP_CLIENT_SECRET":
            monkeypatch.setenv(key, value)
    with pytest.raises(ConfigurationError) as caught:
        load(CommercetoolsSettings)
    assert caught.value.code == 2
    assert "CTP_CLIENT_SECRET is required but not set" in capsys.readouterr().err


def test_secrets_never_appear_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in CT_ENV.items():
        monkeypatch.setenv(key, value)
    settings = load(CommercetoolsSettings)
    assert "very-secret" not in repr(settings)
    assert "very-secret" not in str(settings.model_dump())
    assert settings.effective_scopes.split()[0] == "view_customers:shop"


def test_partner_name_is_lowercased(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSIDER_PARTNER_NAME", "MyShop")
    monkeypatch.setenv("INSIDER_API_KEY", "k")
    monkeypatch.setenv("INSIDER_CATALOG_API_KEY", "c")
    assert load(InsiderSettings).partner_name == "myshop"


def test_worker_command_exits_2_naming_the_variable(tmp_path: Path) -> None:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("CTP_", "INSIDER_", "TEMPORAL_"))
    }
    result = subprocess.run(
        [sys.executable, "-m", "starters.cli", "worker"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 2
    assert "CTP_PROJECT_KEY is required but not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_temporal_tls_pair_is_explained(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ct_insider.config import TemporalSettings

    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", "/tmp/cert.pem")
    with pytest.raises(ConfigurationError):
        load(TemporalSettings)
    assert "must be set together" in capsys.readouterr().err


def test_bridge_token_must_be_set_and_long_enough(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ct_insider.config import BridgeSettings

    monkeypatch.delenv("BRIDGE_TOKEN", raising=False)
    with pytest.raises(ConfigurationError):
        load(BridgeSettings)
    assert "BRIDGE_TOKEN is required but not set" in capsys.readouterr().err
    monkeypatch.setenv("BRIDGE_TOKEN", "short")
    with pytest.raises(ConfigurationError):
        load(BridgeSettings)
    error = capsys.readouterr().err
    assert "BRIDGE_TOKEN" in error
    assert "at least 16 characters" in error
    assert "short" not in error  # the rejected secret itself is never printed


def test_journey_shards_and_tracing_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ct_insider.config import TemporalSettings

    assert (load(TemporalSettings).journey_shards, load(TemporalSettings).tracing) == (4, False)
    monkeypatch.setenv("TEMPORAL_JOURNEY_SHARDS", "16")
    monkeypatch.setenv("TEMPORAL_TRACING", "true")
    assert (load(TemporalSettings).journey_shards, load(TemporalSettings).tracing) == (16, True)
    monkeypatch.setenv("TEMPORAL_JOURNEY_SHARDS", "0")
    with pytest.raises(ConfigurationError):
        load(TemporalSettings)
    assert "TEMPORAL_JOURNEY_SHARDS" in capsys.readouterr().err
