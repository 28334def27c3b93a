"""Secrets in connector configs: given as values or environment references, stored
encrypted, and masked wherever text leaves the process.

A secret is a ``pydantic.SecretStr`` field of a :class:`~subledger.core.connector.ConnectorConfig`
(also inside nested models). In a raw config it may be:

* the value itself: ``"sk_live_..."``;
* a reference to an environment variable: ``"env:STRIPE_API_KEY"`` or ``{"env": "STRIPE_API_KEY"}``;
* an encrypted value as :func:`config_for_storage` wrote it: ``{"encrypted": "gAAAA..."}``.

Stored configs never hold a secret in plain text: a secret that came from the environment
is stored as its reference, any other as a Fernet token. The key is ``$SUBLEDGER_SECRET_KEY``
(several comma-separated keys rotate: the first encrypts, all decrypt) or a key file
(mode 0600) created in the data directory on first use. Lose the key and the stored
secrets are lost with it; environment references survive.

Every secret value a config holds is remembered (for the life of the process), so
:func:`redact` can mask it in any text, and :func:`install_log_redaction` masks it in
every log record.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import threading
import traceback
import types
import urllib.parse
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, Union, get_args, get_origin

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import BaseModel, SecretStr, ValidationError

from subledger.core.errors import ConfigError

if TYPE_CHECKING:
    from subledger.core.connector import ConnectorConfig

SECRET_KEY_ENV = "SUBLEDGER_SECRET_KEY"
KEY_FILE_NAME = "secret.key"
ENV_PREFIX = "env:"
MASK = "**********"
# Masking one- to three-character "secrets" would shred ordinary text; no real credential is that short.
MIN_SECRET_LENGTH = 4

C = TypeVar("C", bound="ConnectorConfig")

_KEY_HELP = (
    "generate one with: python -c \"from cryptography.fernet import Fernet; "
    "print(Fernet.generate_key().decode())\""
)


# -- which fields are secret ----------------------------------------------------------------


def _unwrap(annotation: Any) -> list[Any]:
    """The concrete types of an annotation: ``SecretStr | None`` -> [SecretStr, NoneType]."""
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return [t for arg in get_args(annotation) for t in _unwrap(arg)]
    return [annotation]


def _is_secret_annotation(annotation: Any) -> bool:
    return any(t is SecretStr for t in _unwrap(annotation))


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    for t in _unwrap(annotation):
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
    return None


def secret_fields(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Dotted paths of every ``SecretStr`` field of ``model``, nested models included."""
    paths = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        if _is_secret_annotation(info.annotation):
            paths.append(f"{prefix}{key}")
        elif (nested := _nested_model(info.annotation)) is not None:
            paths.extend(secret_fields(nested, f"{prefix}{key}."))
    return paths


def _secret_values(obj: BaseModel, prefix: str = "") -> Iterator[tuple[str, SecretStr]]:
    for name, info in type(obj).model_fields.items():
        value = getattr(obj, name, None)
        key = info.alias or name
        if isinstance(value, SecretStr):
            yield f"{prefix}{key}", value
        elif isinstance(value, BaseModel):
            yield from _secret_values(value, f"{prefix}{key}.")


# -- the process-wide set of known secret values ---------------------------------------------

_known: set[str] = set()
_known_lock = threading.Lock()
_pattern: re.Pattern[str] | None = None


def register_secret(value: str | SecretStr | None) -> None:
    """Remember a secret value so :func:`redact` masks it (e.g. an OAuth token fetched at run time)."""
    global _pattern
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not value or len(value) < MIN_SECRET_LENGTH:
        return
    forms = {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)}
    with _known_lock:
        if forms <= _known:
            return
        _known.update(forms)
        _pattern = None


def remember_secrets(config: BaseModel) -> None:
    """Register every secret value ``config`` holds (called for each new ConnectorConfig)."""
    for _, secret in _secret_values(config):
        register_secret(secret)


def forget_secrets() -> None:
    """Forget every registered secret (for tests)."""
    global _pattern
    with _known_lock:
        _known.clear()
        _pattern = None


def redact(text: str) -> str:
    """``text`` with every secret loaded in this process replaced by ``**********``."""
    global _pattern
    if not _known or not text:
        return text
    pattern = _pattern
    if pattern is None:
        with _known_lock:
            # Longest first, so a secret that contains another is masked whole.
            ordered = sorted(_known, key=len, reverse=True)
            pattern = _pattern = re.compile("|".join(re.escape(s) for s in ordered))
    return pattern.sub(MASK, text)


# -- loading configs ----------------------------------------------------------------------

# id(config) -> {secret path: environment variable}; entries leave with their config.
_env_sources: dict[int, dict[str, str]] = {}


def _env_name(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        return value[len(ENV_PREFIX):].strip()
    if isinstance(value, Mapping) and set(value) == {"env"}:
        return str(value["env"]).strip()
    return None


def _resolve_secret(
    path: str, value: Any, environ: Mapping[str, str], env_used: dict[str, str], what: str
) -> Any:
    env = _env_name(value)
    if env is not None:
        if not env:
            raise ConfigError(
                f"{what}: secret field {path!r} refers to an environment variable without a name",
                fix=f"write it as 'env:NAME' or {{\"env\": \"NAME\"}}, e.g. 'env:{path.upper().replace('.', '_')}'",
            )
        resolved = environ.get(env)
        if resolved is None or resolved == "":
            state = "is empty" if resolved == "" else "is not set"
            raise ConfigError(
                f"{what}: secret field {path!r} reads environment variable {env}, which {state}",
                fix=f"export {env}=<the secret> in the environment that runs subledger, "
                f"or give {path!r} another value",
            )
        env_used[path] = env
        return resolved
    if isinstance(value, Mapping) and set(value) == {"encrypted"}:
        return decrypt_secret(str(value["encrypted"]), field=path, what=what)
    if isinstance(value, Mapping):
        raise ConfigError(
            f"{what}: secret field {path!r} must be a value, 'env:NAME', {{\"env\": NAME}} "
            f"or {{\"encrypted\": TOKEN}}, not an object with keys {sorted(value)}",
            fix=f"give {path!r} as a string or as an environment reference",
        )
    return value


def _resolve(
    model: type[BaseModel],
    raw: Mapping[str, Any],
    environ: Mapping[str, str],
    env_used: dict[str, str],
    what: str,
    prefix: str = "",
) -> dict[str, Any]:
    data = dict(raw)
    for name, info in model.model_fields.items():
        key = info.alias or name
        if key not in data or data[key] is None:
            continue
        if _is_secret_annotation(info.annotation):
            data[key] = _resolve_secret(f"{prefix}{key}", data[key], environ, env_used, what)
        elif (nested := _nested_model(info.annotation)) is not None and isinstance(data[key], Mapping):
            data[key] = _resolve(nested, data[key], environ, env_used, what, f"{prefix}{key}.")
    return data


def _field_list(model: type[BaseModel]) -> str:
    parts = []
    for name, info in model.model_fields.items():
        parts.append(f"{info.alias or name}{'' if info.is_required() else '?'}")
    return ", ".join(parts)


def load_config(
    model: type[C], raw: Mapping[str, Any], *, environ: Mapping[str, str] | None = None, what: str = ""
) -> C:
    """Build a connector config from its raw (user-given or stored) form.

    Environment references are resolved and stored secrets decrypted. Errors never echo
    an input value (it may be a secret).

    Args:
        model: the connector's ``config_model``.
        raw: the config as a dict.
        environ: where ``env:`` references are looked up (default ``os.environ``).
        what: how to name the config in errors, e.g. ``connection 'stripe-prod'``.

    Raises:
        ConfigError: a missing environment variable, an undecryptable secret, or an
            invalid field; the message names the field and the fix.
    """
    what = what or f"{model.__name__} config"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{what} must be an object of fields, not {type(raw).__name__}",
                          fix=f"give the fields: {_field_list(model)}")
    env_used: dict[str, str] = {}
    data = _resolve(model, raw, os.environ if environ is None else environ, env_used, what)
    try:
        config = model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(config)'}: {err['msg']}" for err in exc.errors()
        )
        # "from None": pydantic's own text quotes the input values, which may be secrets.
        raise ConfigError(
            f"{what} is invalid: {problems}",
            fix=f"correct the named field(s); {model.__name__} takes: {_field_list(model)} "
            "(? = optional)",
        ) from None
    if env_used:
        _env_sources[id(config)] = env_used
        weakref.finalize(config, _env_sources.pop, id(config), None)
    remember_secrets(config)
    return config


def secret_sources(config: BaseModel) -> dict[str, str]:
    """Which secret fields of ``config`` came from which environment variable."""
    return dict(_env_sources.get(id(config), {}))


def config_for_storage(config: BaseModel) -> dict[str, Any]:
    """A JSON-safe dict of ``config`` with no secret in plain text.

    Secrets read from the environment are stored as ``{"env": NAME}``; the others as
    ``{"encrypted": TOKEN}``. :func:`load_config` reads the result back.
    """
    data = config.model_dump(mode="json", by_alias=True)
    sources = _env_sources.get(id(config), {})
    for path, secret in _secret_values(config):
        node = data
        *parents, leaf = path.split(".")
        for part in parents:
            node = node[part]
        if path in sources:
            node[leaf] = {"env": sources[path]}
        else:
            node[leaf] = {"encrypted": encrypt_secret(secret.get_secret_value())}
    return data


# -- encryption -----------------------------------------------------------------------------


def key_file() -> Path:
    """Where the generated key lives when ``$SUBLEDGER_SECRET_KEY`` is not set."""
    from subledger.core.paths import data_dir

    return data_dir() / KEY_FILE_NAME


def _fernet() -> MultiFernet:
    env_keys = os.environ.get(SECRET_KEY_ENV, "").strip()
    if env_keys:
        try:
            return MultiFernet([Fernet(k.strip().encode()) for k in env_keys.split(",") if k.strip()])
        except ValueError:
            raise ConfigError(
                f"{SECRET_KEY_ENV} is not a valid key (32 url-safe base64-encoded bytes)",
                fix=_KEY_HELP,
            ) from None
    path = key_file()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "wb") as fh:
            fh.write(Fernet.generate_key())
    if os.name == "posix" and stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise ConfigError(
            f"secret key file {path} is readable by other users "
            f"(mode {stat.S_IMODE(path.stat().st_mode):04o})",
            fix=f"run: chmod 600 {path}",
        )
    try:
        return MultiFernet([Fernet(path.read_bytes().strip())])
    except ValueError:
        raise ConfigError(f"secret key file {path} does not hold a valid key",
                          fix=f"restore the file from a backup, or set {SECRET_KEY_ENV}") from None


def encrypt_secret(value: str) -> str:
    """A Fernet token of ``value`` under the current key."""
    return _fernet().encrypt(value.encode()).decode()


def decrypt_secret(token: str, *, field: str = "secret", what: str = "config") -> str:
    """The value of a token written by :func:`encrypt_secret`."""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except (InvalidToken, ValueError):
        raise ConfigError(
            f"{what}: stored secret {field!r} cannot be decrypted with the current key",
            fix=f"set {SECRET_KEY_ENV} to the key in use when it was saved (or restore {key_file()}), "
            "or add the connection again with the secret",
        ) from None


# -- logs ---------------------------------------------------------------------------------


def redact_record(record: logging.LogRecord) -> None:
    """Mask secrets in a log record's message, arguments, traceback and stack text (in place)."""
    if not _known or getattr(record, "_subledger_redacted", False):
        return
    try:
        message = record.getMessage()
    except Exception:  # a malformed record: leave it to logging's own error handling
        message = None
    if message is not None:
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
    if record.exc_info and not record.exc_text:
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        masked = redact(text)
        if masked != text:
            record.exc_text = masked
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    record._subledger_redacted = True


class SecretRedactingFilter(logging.Filter):
    """A logging filter that masks known secrets; it never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _redaction_active():
            redact_record(record)
        return True


_filter = SecretRedactingFilter()
_installed = False
_factory_wrapped = False
_previous_factory: Any = None
_suspended = 0


def _redaction_active() -> bool:
    return _installed and _suspended == 0


def _redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _previous_factory(*args, **kwargs)
    if _redaction_active():
        redact_record(record)
    return record


def install_log_redaction() -> None:
    """Mask secrets in every log record from now on (idempotent).

    Adds :class:`SecretRedactingFilter` to the root logger and its handlers. Filters on a
    logger only see records logged *to that logger*, and handlers added later have no
    filter, so the log-record factory masks each record as it is created as well.
    """
    global _installed, _previous_factory, _factory_wrapped
    root = logging.getLogger()
    for target in (root, *root.handlers):
        if _filter not in target.filters:
            target.addFilter(_filter)
    if not _factory_wrapped:
        _previous_factory = logging.getLogRecordFactory()
        logging.setLogRecordFactory(_redacting_factory)
        _factory_wrapped = True
    _installed = True


def uninstall_log_redaction() -> None:
    """Undo :func:`install_log_redaction` (for tests)."""
    global _installed, _factory_wrapped
    root = logging.getLogger()
    for target in (root, *root.handlers):
        target.removeFilter(_filter)
    # Someone may have wrapped our factory since; then ours stays in their chain, inactive.
    if _factory_wrapped and logging.getLogRecordFactory() is _redacting_factory:
        logging.setLogRecordFactory(_previous_factory)
        _factory_wrapped = False
    _installed = False


@contextmanager
def log_redaction_suspended() -> Iterator[None]:
    """Let records through unmasked for a while, so a test can prove code logs no secret at all."""
    global _suspended
    _suspended += 1
    try:
        yield
    finally:
        _suspended -= 1
