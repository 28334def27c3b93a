"""Secrets: given as values or environment references, stored encrypted or as references,
and masked in reprs, logs and error text."""

from __future__ import annotations

import io
import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr

from subledger.core import secrets
from subledger.core.connector import ConnectorConfig
from subledger.core.errors import ConfigError
from subledger.core.secrets import (
    config_for_storage,
    install_log_redaction,
    load_config,
    redact,
    uninstall_log_redaction,
)
from subledger.testing.memory import MemoryConnector

API_KEY = "sk_live_51HxQ2eLkTjR9"
CLIENT_SECRET = "cs_0f9e8d7c6b5a"


class OAuth(BaseModel):
    client_id: str
    client_secret: SecretStr


class ExampleConfig(ConnectorConfig):
    account: str
    api_key: SecretStr
    page_size: int = 100
    webhook_secret: SecretStr | None = None
    oauth: OAuth | None = None


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    secrets.forget_secrets()
    yield
    uninstall_log_redaction()
    secrets.forget_secrets()


# -- loading ----------------------------------------------------------------------------------


def test_a_secret_given_as_a_value_loads_as_a_secretstr() -> None:
    config = load_config(ExampleConfig, {"account": "acme", "api_key": API_KEY})

    assert config.api_key.get_secret_value() == API_KEY
    assert API_KEY not in repr(config) and API_KEY not in str(config)
    assert repr(config) == "ExampleConfig(account='acme', api_key=SecretStr('**********'), page_size=100, " \
        "webhook_secret=None, oauth=None)"


@pytest.mark.parametrize("reference", ["env:ACME_API_KEY", {"env": "ACME_API_KEY"}])
def test_a_secret_may_name_an_environment_variable(reference, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_API_KEY", API_KEY)

    config = load_config(ExampleConfig, {"account": "acme", "api_key": reference})

    assert config.api_key.get_secret_value() == API_KEY
    assert secrets.secret_sources(config) == {"api_key": "ACME_API_KEY"}


def test_nested_secrets_resolve_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_CLIENT_SECRET", CLIENT_SECRET)

    config = load_config(ExampleConfig, {
        "account": "acme", "api_key": API_KEY,
        "oauth": {"client_id": "cid", "client_secret": "env:ACME_CLIENT_SECRET"},
    })

    assert config.oauth is not None and config.oauth.client_secret.get_secret_value() == CLIENT_SECRET
    assert secrets.secret_fields(ExampleConfig) == ["api_key", "webhook_secret", "oauth.client_secret"]


def test_a_missing_environment_variable_is_a_config_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACME_API_KEY", raising=False)

    with pytest.raises(ConfigError) as raised:
        load_config(ExampleConfig, {"account": "acme", "api_key": "env:ACME_API_KEY"}, what="connection 'acme'")

    assert raised.value.message == (
        "connection 'acme': secret field 'api_key' reads environment variable ACME_API_KEY, which is not set"
    )
    assert raised.value.fix == (
        "export ACME_API_KEY=<the secret> in the environment that runs subledger, or give 'api_key' another value"
    )


def test_an_empty_environment_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_API_KEY", "")
    with pytest.raises(ConfigError, match="ACME_API_KEY, which is empty"):
        load_config(ExampleConfig, {"account": "acme", "api_key": "env:ACME_API_KEY"})


def test_an_invalid_config_names_the_fields_and_never_echoes_the_input() -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(ExampleConfig, {"account": "acme", "api_key": 12345678, "page_size": API_KEY})

    text = str(raised.value)
    assert "api_key: Input should be a valid string" in text
    assert "page_size: Input should be a valid integer" in text
    assert API_KEY not in text and "12345678" not in text
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert "ExampleConfig takes: account, api_key, page_size?, webhook_secret?, oauth?" in raised.value.fix


def test_an_unknown_field_is_refused() -> None:
    with pytest.raises(ConfigError, match="api_kye: Extra inputs are not permitted"):
        load_config(ExampleConfig, {"account": "acme", "api_key": API_KEY, "api_kye": API_KEY})


# -- storage ------------------------------------------------------------------------------------


def test_stored_config_holds_env_references_and_encrypted_tokens_never_plain_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ACME_API_KEY", API_KEY)
    config = load_config(ExampleConfig, {
        "account": "acme", "api_key": "env:ACME_API_KEY", "webhook_secret": "whsec_abcdef123",
        "oauth": {"client_id": "cid", "client_secret": CLIENT_SECRET},
    })

    stored = config_for_storage(config)

    assert stored["api_key"] == {"env": "ACME_API_KEY"}
    assert set(stored["webhook_secret"]) == {"encrypted"}
    assert set(stored["oauth"]["client_secret"]) == {"encrypted"}
    text = json.dumps(stored)
    assert API_KEY not in text and CLIENT_SECRET not in text and "whsec_abcdef123" not in text
    assert load_config(ExampleConfig, stored) == config


def test_an_encrypted_secret_needs_the_key_it_was_written_with(monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv("SUBLEDGER_SECRET_KEY", old)
    stored = config_for_storage(load_config(ExampleConfig, {"account": "a", "api_key": API_KEY}))

    monkeypatch.setenv("SUBLEDGER_SECRET_KEY", new)
    with pytest.raises(ConfigError, match="stored secret 'api_key' cannot be decrypted with the current key"):
        load_config(ExampleConfig, stored)

    monkeypatch.setenv("SUBLEDGER_SECRET_KEY", f"{new},{old}")  # rotation: new encrypts, both decrypt
    assert load_config(ExampleConfig, stored).api_key.get_secret_value() == API_KEY


def test_an_invalid_secret_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUBLEDGER_SECRET_KEY", "not-a-key")
    with pytest.raises(ConfigError, match="SUBLEDGER_SECRET_KEY is not a valid key") as raised:
        secrets.encrypt_secret("x")
    assert "Fernet.generate_key()" in (raised.value.fix or "")


def test_without_a_key_in_the_environment_a_0600_key_file_is_made_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUBLEDGER_HOME", str(tmp_path))
    monkeypatch.delenv("SUBLEDGER_SECRET_KEY")

    token = secrets.encrypt_secret(API_KEY)
    key_file = tmp_path / "secret.key"

    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert secrets.decrypt_secret(token) == API_KEY
    assert secrets.decrypt_secret(secrets.encrypt_secret("again")) == "again"


def test_a_key_file_others_can_read_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUBLEDGER_HOME", str(tmp_path))
    monkeypatch.delenv("SUBLEDGER_SECRET_KEY")
    key_file = tmp_path / "secret.key"
    key_file.write_bytes(Fernet.generate_key())
    os.chmod(key_file, 0o644)

    with pytest.raises(ConfigError) as raised:
        secrets.encrypt_secret(API_KEY)
    assert raised.value.message == f"secret key file {key_file} is readable by other users (mode 0644)"
    assert raised.value.fix == f"run: chmod 600 {key_file}"


# -- reprs and redaction ------------------------------------------------------------------------


def test_connectors_show_no_secret_in_repr_or_str() -> None:
    connector = MemoryConnector(MemoryConnector.config_model(api_key=API_KEY), connection="mem")
    assert API_KEY not in repr(connector) and API_KEY not in str(connector)


def test_redact_masks_every_loaded_secret_also_url_encoded() -> None:
    load_config(ExampleConfig, {"account": "a", "api_key": "abc/def+ghi=="})

    text = "GET /v1?key=abc%2Fdef%2Bghi%3D%3D failed: key abc/def+ghi== refused"

    assert redact(text) == "GET /v1?key=********** failed: key ********** refused"


def test_a_config_built_directly_registers_its_secrets_too() -> None:
    ExampleConfig(account="a", api_key=SecretStr(API_KEY))
    assert redact(f"error: {API_KEY}") == "error: **********"


def test_redact_masks_exception_text() -> None:
    load_config(ExampleConfig, {"account": "a", "api_key": API_KEY})
    try:
        raise ValueError(f"401 Unauthorized for key {API_KEY}")
    except ValueError as exc:
        assert redact(str(exc)) == "401 Unauthorized for key **********"


def test_strings_shorter_than_four_characters_are_never_treated_as_secrets() -> None:
    secrets.register_secret("abc")
    assert redact("abcabc") == "abcabc"


@given(
    secret=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=4, max_size=24),
    before=st.text(max_size=30),
    after=st.text(max_size=30),
)
def test_redacted_text_never_contains_a_registered_secret(secret: str, before: str, after: str) -> None:
    secrets.register_secret(secret)
    assert secret not in redact(f"{before}{secret}{after}{secret}")


# -- logs -----------------------------------------------------------------------------------------


def test_log_redaction_masks_messages_args_and_tracebacks_for_every_handler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    load_config(ExampleConfig, {"account": "a", "api_key": API_KEY})
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        install_log_redaction()
        log = logging.getLogger("subledger.plugins.acme.client")
        with caplog.at_level(logging.DEBUG):
            log.debug("calling with key %s", API_KEY)
            log.info(f"inline {API_KEY}")
            try:
                raise RuntimeError(f"denied for {API_KEY}")
            except RuntimeError:
                log.exception("request failed")
    finally:
        root.removeHandler(handler)

    for text in (stream.getvalue(), caplog.text):
        assert API_KEY not in text
        assert "calling with key **********" in text
        assert "inline **********" in text
        assert "RuntimeError: denied for **********" in text


def test_the_filter_masks_records_on_handlers_it_is_attached_to() -> None:
    load_config(ExampleConfig, {"account": "a", "api_key": API_KEY})
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(secrets.SecretRedactingFilter())
    secrets.install_log_redaction()  # the filter is active only while redaction is installed
    uninstall_log_redaction()
    logger = logging.getLogger("subledger.test.filter")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        install_log_redaction()
        logger.info("key=%s", API_KEY)
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue() == "key=**********\n"


def test_uninstalling_stops_redaction_and_suspending_lets_a_test_see_raw_records(
    caplog: pytest.LogCaptureFixture,
) -> None:
    load_config(ExampleConfig, {"account": "a", "api_key": API_KEY})
    install_log_redaction()
    install_log_redaction()  # idempotent
    with caplog.at_level(logging.INFO), secrets.log_redaction_suspended():
        logging.getLogger("x").info("raw %s", API_KEY)
    uninstall_log_redaction()
    with caplog.at_level(logging.INFO):
        logging.getLogger("x").info("after %s", API_KEY)

    assert caplog.messages == [f"raw {API_KEY}", f"after {API_KEY}"]
    assert logging.getLogRecordFactory() is not secrets._redacting_factory
