"""The conformance suite: the checks every subledger connector must pass.

Adopt it with one line in a test module::

    TestConformance = subledger.testing.conformance_suite(MyHarness)

(or subclass :class:`ConformanceSuite` and set ``harness_class``). Checks that do not
apply to a connector (no usage stream, no write capability, no network I/O) skip with
the reason "not applicable: ...", which pytest prints in its summary.
"""

from __future__ import annotations

import email.utils
import itertools
import json
import logging
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from subledger.core.connector import (
    Capabilities,
    Checkpoint,
    CheckResult,
    Connector,
    Rejected,
    StreamSpec,
    UsageCoverage,
    WriteAction,
    WriteConflict,
)
from subledger.core.errors import ConfigError, FailureKind, SubledgerError
from subledger.core.http import use_retry_policy
from subledger.core.plugins import PluginStatus, plugin_report, register_plugin, unregister_plugin
from subledger.core.secrets import (
    SECRET_KEY_ENV,
    config_for_storage,
    load_config,
    log_redaction_suspended,
    secret_fields,
)
from subledger.testing.clock import FakeClock
from subledger.testing.faults import Fault
from subledger.testing.harness import ConnectorHarness
from subledger.testing.records import (
    CANONICAL_TYPES,
    fingerprint,
    flatten,
    is_primary,
    record_key,
    record_problems,
)

NOT_APPLICABLE = pytest.StashKey[list[str]]()
"""Where the suite notes checks a harness declared not applicable (for the terminal summary)."""

_SECRET_NAME = re.compile(r"(key|secret|token|password|passwd|credential|private)", re.IGNORECASE)
_STREAM_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_plugin_counter = itertools.count(1)
_MAX_PROBLEMS = 15


def _fail(title: str, problems: list[str]) -> None:
    if problems:
        shown = problems[:_MAX_PROBLEMS]
        more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        pytest.fail(f"{title}:\n  " + "\n  ".join(shown) + more, pytrace=False)


def _not_applicable(request: pytest.FixtureRequest, reason: str) -> None:
    request.config.stash.setdefault(NOT_APPLICABLE, []).append(f"{request.node.nodeid}: {reason}")
    pytest.skip(f"not applicable: {reason}")


def _json_state(state: dict[str, Any]) -> dict[str, Any]:
    """The state as the engine will hand it back: through JSON."""
    try:
        return json.loads(json.dumps(state, allow_nan=False))
    except (TypeError, ValueError) as exc:
        pytest.fail(f"checkpoint state {state!r} is not JSON-safe ({exc}); the engine stores it as JSON",
                    pytrace=False)


def _primary(items: list[Any], spec: StreamSpec) -> list[Any]:
    return [i for i in items if not isinstance(i, Checkpoint | Rejected | UsageCoverage)
            and is_primary(i, spec.record_type)]


def _records(items: list[Any]) -> list[Any]:
    return [i for i in items if not isinstance(i, Checkpoint | Rejected | UsageCoverage)]


def _coverage_problems(where: str, window: UsageCoverage) -> list[str]:
    """What is wrong with one coverage window: instants that are not aware datetimes, an empty window."""
    problems = []
    for name in ("start", "end"):
        value = getattr(window, name)
        if not isinstance(value, datetime):
            problems.append(f"{where}: {name} must be a datetime, not {type(value).__name__} ({value!r})")
        elif value.tzinfo is None or value.utcoffset() is None:
            problems.append(f"{where}: {name} is a naive datetime ({value.isoformat()}); attach a timezone (UTC)")
    if not problems and not window.start < window.end:
        problems.append(f"{where}: start {window.start.isoformat()} is not before end {window.end.isoformat()}; "
                        "a window covers [start, end)")
    if window.meter is not None and (not isinstance(window.meter, str) or not window.meter):
        problems.append(f"{where}: meter must be a meter key (the one usage events carry) or None for every "
                        f"meter, not {window.meter!r}")
    return problems


def _last_state(items: list[Any]) -> dict[str, Any] | None:
    states = [i.state for i in items if isinstance(i, Checkpoint)]
    return _json_state(states[-1]) if states else None


def _secret_values(config: Any, public: frozenset[str] = frozenset()) -> list[str]:
    """Values of the SecretStr fields, and of plain fields named like secrets (mis-typed secrets)."""
    found = []
    for path in secret_fields(type(config)):
        node: Any = config
        for part in path.split("."):
            node = getattr(node, part, None)
        if isinstance(node, SecretStr) and node.get_secret_value():
            found.append(node.get_secret_value())
    for name, info in type(config).model_fields.items():
        value = getattr(config, name, None)
        if isinstance(value, str) and value and _SECRET_NAME.search(info.alias or name) and name not in public:
            found.append(value)
    return found


def _leaks(texts: list[str], secrets: list[str]) -> list[str]:
    return [
        f"{label!s}: …{text[max(0, text.find(s) - 40):text.find(s)]}<SECRET>…"
        for label, text in enumerate(texts)
        for s in secrets
        if s and s in text
    ]


class ConformanceSuite:
    """Every conformance check, as pytest tests. Set ``harness_class`` in a subclass."""

    harness_class: ClassVar[type[ConnectorHarness]]

    # -- fixtures --------------------------------------------------------------------------

    @pytest.fixture
    def harness(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConnectorHarness]:
        """A set-up harness, with its plugins registered and a throwaway secret key."""
        monkeypatch.setenv(SECRET_KEY_ENV, Fernet.generate_key().decode())
        harness = self.harness_class()
        registered = []
        try:
            for plugin in harness.plugins():
                name = f"conformance-{self.harness_class.__name__}-{next(_plugin_counter)}"
                info = register_plugin(plugin, name=name)
                registered.append(name)
                if info.status is not PluginStatus.LOADED:
                    pytest.fail(f"harness plugin {name} did not load: {info.error}", pytrace=False)
            harness.setup(tmp_path)
            yield harness
        finally:
            harness.teardown()
            for name in registered:
                unregister_plugin(name)

    def _connect(self, harness: ConnectorHarness, raw: dict[str, Any] | None = None) -> Connector:
        try:
            return harness.connect(raw)
        except ConfigError as err:
            problem = str(err)
        pytest.fail(f"cannot build the connector: {problem}", pytrace=False)

    def _read(self, connector: Connector, stream: str, state: dict[str, Any] | None) -> list[Any]:
        # Parents and children come out as a RecordGroup or one after another; check both alike.
        return list(flatten(connector.read(stream, state)))

    def _cursor_streams(self, request: pytest.FixtureRequest, connector: Connector) -> list[StreamSpec]:
        if not connector.capabilities.incremental:
            _not_applicable(request, f"connector {connector.name!r} does not declare incremental reads")
        return [s for s in connector.streams() if s.cursor_field]

    # -- packaging and registration ----------------------------------------------------------

    def test_connector_is_registered_through_the_plugin_host(self, harness: ConnectorHarness) -> None:
        """The plugin host finds the connector by name, from one loaded, error-free plugin."""
        try:
            cls = harness.connector_class()
        except ConfigError as err:
            cls, problem = None, str(err)
        if cls is None:
            pytest.fail(f"the plugin host does not find {harness.connector_name!r}: {problem}", pytrace=False)
        assert cls.name == harness.connector_name
        owners = [i for i in plugin_report() if harness.connector_name in i.connectors]
        assert len(owners) == 1, f"{harness.connector_name!r} registered by {[o.name for o in owners]}"
        owner = owners[0]
        assert owner.status is PluginStatus.LOADED and not owner.error, (
            f"plugin {owner.name!r} is {owner.status}: {owner.error}"
        )
        if not harness.plugins():
            assert owner.distribution, (
                f"{harness.connector_name!r} comes from plugin {owner.name!r}, which no installed "
                "distribution declares; add it under [project.entry-points.subledger] in pyproject.toml"
            )
        assert isinstance(cls.capabilities, Capabilities), "capabilities must be a Capabilities instance"

    # -- config and secrets -------------------------------------------------------------------

    def test_config_schema_is_valid_and_marks_secrets(self, harness: ConnectorHarness) -> None:
        """The config model has a JSON schema, forbids unknown fields, and types secrets SecretStr."""
        model = harness.connector_class().config_model
        schema = model.model_json_schema()
        problems = []
        if model.model_config.get("extra") != "forbid":
            problems.append("the config must forbid unknown fields (extra='forbid'), so typos are errors")
        secrets = set(secret_fields(model))
        public = harness.public_fields
        for name, info in model.model_fields.items():
            key = info.alias or name
            if _SECRET_NAME.search(key) and key not in secrets and key not in public:
                problems.append(
                    f"field {key!r} looks like a secret but is not a SecretStr; type it pydantic.SecretStr "
                    "(or list it in the harness's public_fields)"
                )
            if key in secrets:
                prop = schema.get("properties", {}).get(key, {})
                if not prop.get("writeOnly") and not any(p.get("writeOnly") for p in prop.get("anyOf", [])):
                    problems.append(f"secret field {key!r} is not marked writeOnly in the JSON schema")
        _fail(f"config model {model.__name__}", problems)

    def test_secrets_stay_out_of_reprs_and_stored_config(
        self, harness: ConnectorHarness, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """repr/str/JSON of config and connector hide secrets; stored config round-trips without them."""
        cls = harness.connector_class()
        config = load_config(cls.config_model, harness.good_config())
        secrets = _secret_values(config, harness.public_fields)
        connector = cls(config, connection=harness.connection)
        stored = config_for_storage(config)
        texts = [repr(config), str(config), repr(connector), str(connector), config.model_dump_json(),
                 json.dumps(stored)]
        _fail("a secret appears in plain text (0 repr, 1 str, 2 connector repr, 3 connector str, "
              "4 config JSON, 5 stored config)", _leaks(texts, secrets))
        assert load_config(cls.config_model, stored) == config, "the stored config does not load back equal"
        for n, path in enumerate(secret_fields(cls.config_model)):
            if "." in path or path not in harness.good_config():
                continue
            env = f"SUBLEDGER_CONFORMANCE_SECRET_{n}"
            monkeypatch.setenv(env, getattr(config, path).get_secret_value())
            from_env = load_config(cls.config_model, {**harness.good_config(), path: f"env:{env}"})
            assert from_env == config, f"secret {path!r} given as env:{env} loads differently"
            assert config_for_storage(from_env)[path] == {"env": env}

    def test_secrets_never_appear_in_logs_or_output(
        self,
        harness: ConnectorHarness,
        caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str],
        request: pytest.FixtureRequest,
    ) -> None:
        """No secret in log records (any level), stdout, stderr or check messages, during check and read."""
        cls = harness.connector_class()
        configs = [harness.good_config(), *harness.bad_configs().values()]
        secrets = []
        for raw in configs:
            try:
                secrets.extend(_secret_values(load_config(cls.config_model, raw), harness.public_fields))
            except ConfigError:
                continue
        if not secrets:
            _not_applicable(request, f"{cls.config_model.__name__} has no secret fields")
        texts: list[str] = []
        with log_redaction_suspended(), caplog.at_level(logging.DEBUG):
            connector = self._connect(harness)
            texts.append(connector.check().message)
            for spec in connector.streams():
                self._read(connector, spec.name, None)
            for raw in harness.bad_configs().values():
                try:
                    texts.append(harness.connect(raw).check().message)
                except SubledgerError as err:
                    texts.append(str(err))
        out = capsys.readouterr()
        texts += [caplog.text, out.out, out.err]
        texts += [r.getMessage() + (r.exc_text or "") for r in caplog.records]
        _fail("a secret leaked into logs or output", _leaks(texts, secrets))

    # -- check --------------------------------------------------------------------------------

    def test_check_accepts_the_good_config(self, harness: ConnectorHarness) -> None:
        """``check`` says ok for working credentials."""
        result = self._connect(harness).check()
        assert isinstance(result, CheckResult), f"check() returned {type(result).__name__}, not CheckResult"
        assert result.ok, f"check() refused the good config: {result.message}"

    def test_check_refuses_each_bad_config(self, harness: ConnectorHarness) -> None:
        """``check`` returns ok=False with a message (never raises) for each bad config."""
        self._connect(harness)  # a refusal only counts if the connector itself can be built
        bad = harness.bad_configs()
        assert bad, "bad_configs() must give at least one config that check() refuses"
        problems = []
        for label, raw in bad.items():
            try:
                connector = harness.connect(raw)
            except ConfigError as err:
                if not str(err):
                    problems.append(f"{label}: the config error has no message")
                continue
            try:
                result = connector.check()
            except Exception as exc:
                problems.append(f"{label}: check() raised {type(exc).__name__}: {exc}; it must return ok=False")
                continue
            if result.ok:
                problems.append(f"{label}: check() said ok")
            elif not result.message:
                problems.append(f"{label}: check() refused without a message naming the fix")
        _fail("check() and bad configs", problems)

    # -- streams ------------------------------------------------------------------------------

    def test_stream_declarations(self, harness: ConnectorHarness) -> None:
        """Streams have unique names, canonical record types, real key fields, consistent cursors."""
        connector = self._connect(harness)
        specs = connector.streams()
        problems = []
        if connector.capabilities.read and not specs:
            problems.append("the connector can read but declares no stream")
        names = [s.name for s in specs]
        twice = sorted({n for n in names if names.count(n) > 1})
        problems += [f"stream {n!r} is declared more than once" for n in twice]
        for spec in specs:
            if not _STREAM_NAME.match(spec.name):
                problems.append(f"stream name {spec.name!r} must be a lowercase identifier")
            model = CANONICAL_TYPES.get(spec.record_type)
            if model is None:
                problems.append(
                    f"{spec.name}: record type {spec.record_type!r} is not one of {sorted(CANONICAL_TYPES)}"
                )
                continue
            fields = set(getattr(model, "model_fields", None) or getattr(model, "__dataclass_fields__", {}))
            if not spec.primary_key:
                problems.append(f"{spec.name}: empty primary key")
            problems += [f"{spec.name}: key field {k!r} is not a field of {model.__name__}"
                         for k in spec.primary_key if k not in fields]
            if spec.cursor_field and not connector.capabilities.incremental:
                problems.append(f"{spec.name}: has cursor {spec.cursor_field!r} but capabilities.incremental is False")
            if connector.stream(spec.name) != spec:
                problems.append(f"connector.stream({spec.name!r}) does not return its declaration")
        if connector.capabilities.incremental and not any(s.cursor_field for s in specs):
            problems.append("capabilities.incremental is True but no stream declares a cursor_field")
        problems += [f"empty_streams names unknown stream {n!r}" for n in sorted(harness.empty_streams - set(names))]
        try:
            connector.stream("no_such_stream_conformance")
        except ConfigError:
            pass
        else:
            problems.append("connector.stream() of an unknown name must raise ConfigError")
        _fail("stream declarations", problems)

    def test_full_read_yields_valid_canonical_records(self, harness: ConnectorHarness) -> None:
        """Every record is a valid canonical record, keys are unique and non-null, reads end on a checkpoint."""
        connector = self._connect(harness)
        problems = []
        for spec in connector.streams():
            items = self._read(connector, spec.name, None)
            seen: dict[tuple[Any, ...], int] = {}
            for n, item in enumerate(items):
                if isinstance(item, Checkpoint):
                    _json_state(item.state)
                    continue
                if isinstance(item, UsageCoverage):
                    continue  # test_usage_stream_reports_its_coverage checks these
                if isinstance(item, Rejected):
                    if not (item.reason and item.fix):
                        problems.append(f"{spec.name}[{n}]: a Rejected item needs a reason and a fix")
                    continue
                problems += [f"{spec.name}[{n}] {type(item).__name__}: {p}"
                             for p in record_problems(item, record_type=spec.record_type,
                                                      connection=connector.connection)]
                if not is_primary(item, spec.record_type):
                    continue
                try:
                    key = record_key(item, spec.primary_key)
                except AttributeError as exc:
                    problems.append(f"{spec.name}[{n}]: {exc}")
                    continue
                if any(v is None or v == "" for v in key):
                    problems.append(f"{spec.name}[{n}]: null or empty key {key!r}")
                elif key in seen:
                    problems.append(f"{spec.name}[{n}]: duplicate key {key!r} (first at [{seen[key]}])")
                else:
                    seen[key] = n
            if not seen and spec.name not in harness.empty_streams:
                problems.append(f"{spec.name}: yielded no records; seed the fixture or list it in empty_streams")
            if spec.cursor_field and (not items or not isinstance(items[-1], Checkpoint)):
                problems.append(f"{spec.name}: an incremental read must end with a Checkpoint")
        _fail("full read", problems)

    def test_usage_stream_reports_its_coverage(
        self, harness: ConnectorHarness, request: pytest.FixtureRequest
    ) -> None:
        """A usage stream says what it has read whole: a full read yields a UsageCoverage with aware
        datetimes and start < end, before the stream's last checkpoint (so it commits with its events)."""
        connector = self._connect(harness)
        specs = [s for s in connector.streams() if s.record_type == "usage_event"]
        if not specs:
            _not_applicable(request, f"connector {connector.name!r} declares no usage stream (record type "
                            "'usage_event')")
        problems = []
        for spec in specs:
            items = self._read(connector, spec.name, None)
            windows = [(n, i) for n, i in enumerate(items) if isinstance(i, UsageCoverage)]
            if not windows:
                problems.append(
                    f"{spec.name}: a full read yielded no UsageCoverage; yield UsageCoverage(start, end, meter) "
                    "for each window whose usage was read whole, or reconciliation never judges its periods "
                    "(see docs/connector-api.md)"
                )
                continue
            last_checkpoint = max((n for n, i in enumerate(items) if isinstance(i, Checkpoint)), default=-1)
            for n, window in windows:
                where = f"{spec.name}[{n}]"
                problems += _coverage_problems(where, window)
                if n > last_checkpoint:
                    problems.append(
                        f"{where}: UsageCoverage after the stream's last checkpoint; yield it before the "
                        "checkpoint that records the progress it vouches for, so window and state commit together"
                    )
        _fail("usage coverage", problems)

    def test_incremental_read_resumes_from_a_checkpoint(
        self, harness: ConnectorHarness, request: pytest.FixtureRequest
    ) -> None:
        """Resuming loses nothing and re-sends nothing unchanged; new records are picked up."""
        connector = self._connect(harness)
        problems = []
        for spec in self._cursor_streams(request, connector):
            items = self._read(connector, spec.name, None)
            seen = {record_key(r, spec.primary_key): fingerprint(r) for r in _primary(items, spec)}

            def unchanged(records: list[Any], seen: dict[tuple[Any, ...], str] = seen,
                          key: tuple[str, ...] = spec.primary_key) -> list[tuple[Any, ...]]:
                return [record_key(r, key) for r in records if seen.get(record_key(r, key)) == fingerprint(r)]

            state = _last_state(items)
            if state is None:
                problems.append(f"{spec.name}: the first read yielded no checkpoint")
                continue
            problems += self._crash_resume_problems(connector, spec, items, seen)
            second = self._read(connector, spec.name, state)
            if again := unchanged(_primary(second, spec)):
                problems.append(f"{spec.name}: a read from the final checkpoint re-sends unchanged {again[:5]}")
            harness.add_records(spec.name)
            third = _primary(self._read(connector, spec.name, _last_state(second) or state), spec)
            if len(unchanged(third)) == len(third):
                problems.append(f"{spec.name}: a record added after the checkpoint was not picked up")
            if again := unchanged(third):
                problems.append(f"{spec.name}: the read after new records re-sends unchanged {again[:5]}")
        _fail("incremental read", problems)

    def _crash_resume_problems(self, connector: Connector, spec: StreamSpec, items: list[Any],
                               seen: dict[tuple[Any, ...], str]) -> list[str]:
        """Crash right after the first checkpoint that has records after it, and resume there."""
        for n, item in enumerate(items):
            if not (isinstance(item, Checkpoint) and _primary(items[n + 1:], spec)):
                continue
            committed = {record_key(r, spec.primary_key) for r in _primary(items[:n], spec)}
            resumed = _primary(self._read(connector, spec.name, _json_state(item.state)), spec)
            resumed_keys = {record_key(r, spec.primary_key) for r in resumed}
            lost = sorted(set(seen) - committed - resumed_keys, key=repr)
            again = [record_key(r, spec.primary_key) for r in resumed
                     if record_key(r, spec.primary_key) in committed
                     and fingerprint(r) == seen[record_key(r, spec.primary_key)]]
            where = f"{spec.name}: resuming from checkpoint {item.state!r}"
            problems = []
            if lost:
                problems.append(f"{where} loses {lost[:5]}")
            if again:
                problems.append(f"{where} re-sends unchanged {again[:5]}")
            return problems
        return []

    def test_far_future_cursor_yields_nothing(
        self, harness: ConnectorHarness, request: pytest.FixtureRequest
    ) -> None:
        """A checkpoint past every record reads nothing."""
        connector = self._connect(harness)
        problems = []
        for spec in self._cursor_streams(request, connector):
            state = _last_state(self._read(connector, spec.name, None))
            if state is None:
                problems.append(f"{spec.name}: the read yielded no checkpoint")
                continue
            future = harness.far_future_state(spec.name, state)
            records = _records(self._read(connector, spec.name, _json_state(future)))
            if records:
                problems.append(f"{spec.name}: {len(records)} record(s) after far-future state {future!r}")
        _fail("far-future cursor", problems)

    # -- write-back ------------------------------------------------------------------------

    def _write_actions(self, harness: ConnectorHarness, connector: Connector,
                       request: pytest.FixtureRequest) -> list[WriteAction]:
        kinds = connector.capabilities.write
        if not kinds:
            _not_applicable(request, f"connector {connector.name!r} declares no write capability")
        actions = harness.write_actions()
        missing = sorted(kinds - {a.kind for a in actions})
        assert not missing, f"write_actions() gives no sample for {missing}; give one action per write kind"
        unknown = sorted({a.kind for a in actions} - kinds)
        assert not unknown, f"write_actions() has kinds the connector does not declare: {unknown}"
        return actions

    def _count(self, connector: Connector, stream: str) -> int:
        spec = connector.stream(stream)
        return len(_primary(self._read(connector, stream, None), spec))

    def _snapshot(self, connector: Connector, stream: str, external_id: str) -> str | None:
        spec = connector.stream(stream)
        for record in _primary(self._read(connector, stream, None), spec):
            if getattr(record, "external_id", None) == external_id:
                return fingerprint(record)
        return None

    def test_write_returns_an_external_id_and_replay_creates_no_duplicate(
        self, harness: ConnectorHarness, request: pytest.FixtureRequest
    ) -> None:
        """A write returns an external id; the same idempotency key, replayed from a fresh
        connector (as after a crash), finds it and creates nothing new."""
        connector = self._connect(harness)
        for action in self._write_actions(harness, connector, request):
            stream = action.kind.removeprefix("create_")
            before = self._count_written(harness, connector, action.kind)
            result = connector.write(action)
            what = f"{action.kind} (key {action.idempotency_key!r})"
            assert isinstance(result.external_id, str) and result.external_id, f"{what} returned no external id"
            assert result.created, f"{what}: the first write reports created=False"
            if action.target_external_id is None:
                after = self._count_written(harness, connector, action.kind)
                assert after == before + 1, f"{what} did not add one {stream} record"
            else:
                assert result.external_id == action.target_external_id, f"{what} returned another record's id"
            restarted = self._connect(harness)
            found = restarted.find(action)
            if action.kind in type(connector).capabilities.resend_safe:
                assert found is None, f"{what} is declared resend_safe, but find() claims to have found it"
            else:
                assert found is not None, f"{what}: find() after the write returns None (find-before-create fails)"
                assert found.external_id == result.external_id, f"{what}: find() returns another external id"
            count = self._count_written(harness, connector, action.kind)
            replay = restarted.write(action)
            assert replay.external_id == result.external_id, (
                f"{what}: replaying the idempotency key wrote {replay.external_id!r}, not {result.external_id!r}"
            )
            assert not replay.created, f"{what}: the replay reports created=True"
            recount = self._count_written(harness, connector, action.kind)
            assert recount == count, f"{what}: the replay created a duplicate {stream} record"

    def _count_written(self, harness: ConnectorHarness, connector: Connector, kind: str) -> int:
        counted = harness.count_written(kind, connector)
        if counted is not None:
            return counted
        return self._count(connector, harness.stream_for_kind(kind, connector))

    def test_write_conflict_is_reported_not_overwritten(
        self, harness: ConnectorHarness, request: pytest.FixtureRequest
    ) -> None:
        """An update whose base version is stale raises WriteConflict and changes nothing."""
        connector = self._connect(harness)
        actions = self._write_actions(harness, connector, request)
        if all(a.target_external_id is None for a in actions):
            _not_applicable(request, f"connector {connector.name!r} only creates; it updates nothing")
        stale = harness.stale_update()
        assert stale is not None, "the connector updates records; stale_update() must give a conflicting update"
        assert stale.target_external_id, "stale_update() must target an existing record"
        stream = harness.stream_for_kind(stale.kind, connector)
        before = self._snapshot(connector, stream, stale.target_external_id)
        assert before is not None, f"stale_update() targets {stale.target_external_id!r}, not in stream {stream!r}"
        with pytest.raises(WriteConflict) as raised:
            connector.write(stale)
        assert str(raised.value), "WriteConflict needs a message naming what changed"
        after = self._snapshot(connector, stream, stale.target_external_id)
        assert after == before, "the conflicting update changed the record anyway"
        assert connector.find(stale) is None, "find() reports the refused update as done"

    # -- retries -------------------------------------------------------------------------------

    def _retry_probe(self, harness: ConnectorHarness, request: pytest.FixtureRequest, fault: Fault,
                     clock: FakeClock | None = None) -> tuple[Any, FakeClock, Any]:
        if harness.retries_not_applicable:
            _not_applicable(request, harness.retries_not_applicable)
        clock = clock or FakeClock()
        with use_retry_policy(clock.policy()):
            baseline = harness.fault_probe(self._connect(harness))
            assert clock.sleeps == [], f"the probe waited {clock.sleeps} with no fault injected"
            harness.inject_fault(fault)
            result = harness.fault_probe(self._connect(harness))
        return baseline, clock, result

    @pytest.mark.parametrize("retry_after", ["seconds", "http-date"])
    def test_retry_429_honours_retry_after(
        self, harness: ConnectorHarness, request: pytest.FixtureRequest, retry_after: str
    ) -> None:
        """A 429 is retried after exactly the Retry-After the vendor asked for (fake clock)."""
        if harness.retries_not_applicable:
            _not_applicable(request, harness.retries_not_applicable)
        expected = 7.0 if retry_after == "seconds" else 5.0
        header = "7"
        # The date is read on the probe's own clock: a second clock could tick past a
        # second boundary in between on a slow machine and shorten the wait.
        clock = FakeClock()
        if retry_after == "http-date":
            header = email.utils.format_datetime(clock.now() + timedelta(seconds=5), usegmt=True)
        fault = Fault(status=429, times=1, retry_after=header)
        baseline, clock, result = self._retry_probe(harness, request, fault, clock)
        assert fault.served == 1, f"the 429 was served {fault.served} times; inject_fault() must arm it"
        assert len(clock.sleeps) == 1, f"expected one wait, got {clock.sleeps}: waits must use the retry policy"
        assert expected - 1.0 <= clock.sleeps[0] <= expected, (
            f"waited {clock.sleeps[0]}s; Retry-After: {header} asked for {expected}s"
        )
        assert result == baseline, "the result after the retry differs from a clean run"

    @pytest.mark.parametrize("status", [500, 503])
    def test_retry_5xx_with_capped_backoff(
        self, harness: ConnectorHarness, request: pytest.FixtureRequest, status: int
    ) -> None:
        """Server errors are retried with growing, capped waits, then succeed."""
        fault = Fault(status=status, times=2)
        baseline, clock, result = self._retry_probe(harness, request, fault)
        cap = clock.policy().backoff_max
        assert fault.served == 2, f"HTTP {status} was served {fault.served} times, expected 2 (one per attempt)"
        assert len(clock.sleeps) == 2, f"expected two waits, got {clock.sleeps}"
        assert all(0 < s <= cap for s in clock.sleeps), f"waits {clock.sleeps} outside (0, {cap}]"
        assert result == baseline, "the result after the retries differs from a clean run"

    @pytest.mark.parametrize("status", [401, 404])
    def test_4xx_is_not_retried(
        self, harness: ConnectorHarness, request: pytest.FixtureRequest, status: int
    ) -> None:
        """A client error fails at once as a config error that names the status, secrets masked."""
        fault = Fault(status=status, times=1)
        with pytest.raises(SubledgerError) as raised:
            self._retry_probe(harness, request, fault)
        err = raised.value
        assert fault.served == 1, f"HTTP {status} was served {fault.served} times; a 4xx must not be retried"
        assert err.kind is FailureKind.CONFIG, f"HTTP {status} surfaced as a {err.kind} failure, not config"
        assert str(status) in str(err), f"the error does not name HTTP {status}: {err}"
        config = load_config(harness.connector_class().config_model, harness.good_config())
        secrets = _secret_values(config, harness.public_fields)
        _fail("a secret leaked into the error", _leaks([str(err)], secrets))


def conformance_suite(harness: type[ConnectorHarness]) -> type[ConformanceSuite]:
    """The conformance test class for ``harness``; assign it to a ``Test...`` name.

    Example::

        TestConformance = conformance_suite(MyHarness)
    """
    if not (isinstance(harness, type) and issubclass(harness, ConnectorHarness)):
        raise TypeError(f"conformance_suite() needs a ConnectorHarness subclass, not {harness!r}")
    name = f"TestConformance{harness.__name__}"
    return type(name, (ConformanceSuite,), {"harness_class": harness, "__qualname__": name})
