"""The conformance kit fails connectors that break the contract.

Each case takes the in-memory connector, breaks one thing on purpose, runs the whole kit
against it in an inner pytest session (``pytester``, in-process), and states exactly
which checks fail, and why. Every other check must still pass, so each check is shown
to catch its defect and only its defect.
"""

from __future__ import annotations

import textwrap

import hypothesis  # noqa: F401  (imported here so inner sessions do not re-import it each time)
import pytest

PREAMBLE = """
import logging
import uuid
from decimal import Decimal

from pydantic import SecretStr

from subledger.core.connector import (
    CheckResult, Checkpoint, ConnectorConfig, UsageCoverage, UsageEventIn, WriteResult,
)
from subledger.core.errors import ConfigError, SystemFailure, TransientError
from subledger.core.http import error_for_status
from subledger.testing import conformance_suite
from subledger.testing.memory import MemoryConnector, MemoryHarness, MemoryHTTPError


class Harness(MemoryHarness):
    connector_name = "broken"
"""

EVERY_CHECK = {
    "test_connector_is_registered_through_the_plugin_host",
    "test_config_schema_is_valid_and_marks_secrets",
    "test_secrets_stay_out_of_reprs_and_stored_config",
    "test_secrets_never_appear_in_logs_or_output",
    "test_check_accepts_the_good_config",
    "test_check_refuses_each_bad_config",
    "test_stream_declarations",
    "test_full_read_yields_valid_canonical_records",
    "test_usage_stream_reports_its_coverage",
    "test_incremental_read_resumes_from_a_checkpoint",
    "test_far_future_cursor_yields_nothing",
    "test_write_returns_an_external_id_and_replay_creates_no_duplicate",
    "test_write_conflict_is_reported_not_overwritten",
    "test_retry_429_honours_retry_after[seconds]",
    "test_retry_429_honours_retry_after[http-date]",
    "test_retry_5xx_with_capped_backoff[500]",
    "test_retry_5xx_with_capped_backoff[503]",
    "test_4xx_is_not_retried[401]",
    "test_4xx_is_not_retried[404]",
}


def run_kit(pytester: pytest.Pytester, broken: str) -> tuple[dict[str, str], dict[str, str]]:
    """Run the kit on ``broken`` (source defining ``Broken`` and maybe a Harness change).

    Returns each check's outcome and the failure text of the failed ones.
    """
    source = PREAMBLE + textwrap.dedent(broken) + "\n\nHarness.connector_type = Broken\n" \
        "TestKit = conformance_suite(Harness)\n"
    pytester.makepyfile(test_kit=source)
    recorder = pytester.inline_run("-p", "no:cacheprovider")
    outcomes: dict[str, str] = {}
    texts: dict[str, str] = {}
    for report in recorder.getreports("pytest_runtest_logreport"):
        name = report.nodeid.split("::")[-1]
        if report.when == "call" or report.outcome != "passed":
            outcomes[name] = "failed" if report.outcome == "failed" else outcomes.get(name, report.outcome)
            if report.failed:
                texts[name] = texts.get(name, "") + report.longreprtext
    return outcomes, texts


def assert_only_these_fail(outcomes: dict[str, str], failing: set[str]) -> None:
    assert set(outcomes) == EVERY_CHECK
    assert {name for name, outcome in outcomes.items() if outcome == "failed"} == failing
    assert all(outcome == "passed" for name, outcome in outcomes.items() if name not in failing)


def test_the_unbroken_connector_passes_every_check(pytester: pytest.Pytester) -> None:
    outcomes, _ = run_kit(pytester, "class Broken(MemoryConnector):\n    name = 'broken'\n")
    assert_only_these_fail(outcomes, set())


def test_duplicate_keys_fail_the_full_read(pytester: pytest.Pytester) -> None:
    outcomes, texts = run_kit(pytester, """
        class Broken(MemoryConnector):
            name = "broken"

            def read(self, stream, state):
                for item in super().read(stream, state):
                    yield item
                    if stream == "usage_events" and not isinstance(item, Checkpoint):
                        yield item  # the same event twice
    """)
    assert_only_these_fail(outcomes, {"test_full_read_yields_valid_canonical_records"})
    assert "usage_events[1]: duplicate key ('evt_1',) (first at [0])" in texts[
        "test_full_read_yields_valid_canonical_records"]


def test_a_usage_stream_that_reports_no_coverage_fails_the_coverage_check(pytester: pytest.Pytester) -> None:
    outcomes, texts = run_kit(pytester, """
        class Broken(MemoryConnector):
            name = "broken"

            def read(self, stream, state):
                # Reads every event but never says which window they complete.
                yield from (i for i in super().read(stream, state) if not isinstance(i, UsageCoverage))
    """)
    assert_only_these_fail(outcomes, {"test_usage_stream_reports_its_coverage"})
    assert "usage_events: a full read yielded no UsageCoverage" in texts["test_usage_stream_reports_its_coverage"]


def test_coverage_after_the_last_checkpoint_or_backwards_fails_the_coverage_check(pytester: pytest.Pytester) -> None:
    outcomes, texts = run_kit(pytester, """
        from datetime import datetime, timezone

        class Broken(MemoryConnector):
            name = "broken"

            def read(self, stream, state):
                yield from (i for i in super().read(stream, state) if not isinstance(i, UsageCoverage))
                if stream == "usage_events":  # committed with no checkpoint, and ending before it starts
                    yield UsageCoverage(datetime(2024, 2, 1, tzinfo=timezone.utc), datetime(2024, 1, 1))
    """)
    assert_only_these_fail(outcomes, {
        "test_usage_stream_reports_its_coverage",
        "test_full_read_yields_valid_canonical_records",  # the stream no longer ends on its checkpoint
    })
    text = texts["test_usage_stream_reports_its_coverage"]
    # 5 events in pages of 2: e1 e2 checkpoint e3 e4 checkpoint e5 checkpoint, then [8] the window.
    assert "usage_events[8]: end is a naive datetime (2024-01-01T00:00:00); attach a timezone (UTC)" in text
    assert "usage_events[8]: UsageCoverage after the stream's last checkpoint" in text
    assert "usage_events: an incremental read must end with a Checkpoint" in texts[
        "test_full_read_yields_valid_canonical_records"]


def test_a_connector_without_a_usage_stream_is_not_judged_on_coverage(pytester: pytest.Pytester) -> None:
    outcomes, _ = run_kit(pytester, """
        class Broken(MemoryConnector):
            name = "broken"

            def streams(self):
                return [s for s in super().streams() if s.record_type != "usage_event"]
    """)
    assert outcomes.pop("test_usage_stream_reports_its_coverage") == "skipped"
    assert set(outcomes) == EVERY_CHECK - {"test_usage_stream_reports_its_coverage"}
    assert set(outcomes.values()) == {"passed"}


def test_a_secret_in_a_log_message_fails_the_log_check(pytester: pytest.Pytester) -> None:
    outcomes, texts = run_kit(pytester, """
        class Broken(MemoryConnector):
            name = "broken"

            def check(self):
                logging.getLogger("broken").debug("checking with key %s", self.api_key())
                return super().check()
    """)
    assert_only_these_fail(outcomes, {"test_secrets_never_appear_in_logs_or_output"})
    assert "checking with key <SECRET>" in texts["test_secrets_never_appear_in_logs_or_output"]


def test_a_secret_printed_to_stdout_fails_the_log_check(pytester: pytest.Pytester) -> None:
    outcomes, _ = run_kit(pytester, """
        class Broken(MemoryConnector):
            name = "broken"

            def read(self, stream, state):
                print("reading as", self.api_key())
                yield from super().read(stream, state)
    """)
    assert_only_these_fail(outcomes, {"test_secrets_never_appear_in_logs_or_output"})


def test_a_secret_typed_as_plain_str_fails_the_config_checks(pytester: pytest.Pytester) -> None:
    outcomes, texts = run_kit(pytester, """
        class PlainConfig(ConnectorConfig):
            api_key: str
            store: str = "default"
            page_size: int = 2


        class Broken(MemoryConnector):
            name = "broken"
            config_model = PlainConfig

            def api_key(self):
                return self.config.api_key
    """)
    assert_only_these_fail(outcomes, {
        "test_config_schema_is_valid_and_marks_secrets",
        "test_secrets_stay_out_of_reprs_and_stored_config",
    })
    assert "field 'api_key' looks like a secret but is not a SecretStr" in texts[
        "test_config_schema_is_valid_and_marks_secrets"]
    # With no secret field, the log check has nothing to look for; the schema check has failed already.


def test_a_check_that_accepts_bad_credentials_fails(pytester: pytest.Pytester) -> None:
    outcomes, texts = run_kit(pytester, """
        class Broken(MemoryConnector):
            name = "broken"

            def check(self):
                return CheckResult(ok=True, message="looks fine")
    """)
    assert_only_these_fail(outcomes, {"test_check_refuses_each_bad_config"})
    assert "wrong api key: check() said ok" in texts["test_check_refuses_each_bad_config"]


def test_a_check_that_refuses_good_credentials_fails(pytester: pytest.Pytester) -> None:
    outcomes, texts = run_kit(pytester, """
        class Broken(MemoryConnector):
            name = "broken"

            def check(self):
                return CheckResult(ok=False, message="always unhappy")
    """)
    assert_only_these_fail(outcomes, {"test_check_accepts_the_good_config"})
    assert "check() refused the good config: always unhappy" in texts["test_check_accepts_the_good_config"]


def test_a_stream_declared_twice_fails_the_declaration_check(pytester: pytest.Pytester) -> None:
    outcomes, texts = run_kit(pytester, """
        from subledger.core.connector import StreamSpec

        class Broken(MemoryConnector):
            name = "broken"

            def streams(self):
                return [*super().streams(), StreamSpec("customers", "customer", cursor_field="updated_at")]
    """)
    assert_only_these_fail(outcomes, {"test_stream_declarations"})
    assert "stream 'customers' is declared more than once" in texts["test_stream_declarations"]


def test_a_checkpoint_yielded_before_its_records_fails_the_resume_check(pytester: pytest.Pytester) -> None:
    outcomes, texts = run_kit(pytester, """
        class Broken(MemoryConnector):
            name = "broken"

            def read(self, stream, state):
                page = []
                for item in super().read(stream, state):
                    if isinstance(item, Checkpoint):
                        yield item  # committed before the records it covers: a crash loses them
                        yield from page
                        page = []
                    else:
                        page.append(item)
    """)
    assert_only_these_fail(outcomes, {
        "test_incremental_read_resumes_from_a_checkpoint",
        "test_full_read_yields_valid_canonical_records",  # the last records now follow the last checkpoint
        "test_usage_stream_reports_its_coverage",  # and so does the usage window
    })
    assert "customers: an incremental read must end with a Checkpoint" in texts[
        "test_full_read_yields_valid_canonical_records"]
    assert "resuming from checkpoint {'updated_at': '2024-01-01T00:00:02+00:00'} loses [('cus_acme',), " \
        "('cus_globex',)]" in texts["test_incremental_read_resumes_from_a_checkpoint"]


def test_a_check_that_raises_instead_of_refusing_fails(pytester: pytest.Pytester) -> None:
    outcomes, texts = run_kit(pytester, """
        class Broken(MemoryConnector):
            name = "broken"

            def check(self):
                result = super().check()
                if not result.ok:
                    raise ConfigError(result.message)
                return result
    """)
    assert_only_these_fail(outcomes, {"test_check_refuses_each_bad_config"})
    assert "check() raised ConfigError" in texts["test_check_refuses_each_bad_config"]


def test_float_quantities_and_naive_times_fail_the_full_read(pytester: pytest.Pytester) -> None:
    outcomes, texts = run_kit(pytester, """
        class Broken(MemoryConnector):
            name = "broken"

            def _records(self, stream, data):
                for record in super()._records(stream, data):
                    if isinstance(record, UsageEventIn):
                        record = UsageEventIn(
                            record.event_id, record.customer_external_id, record.meter,
                            float(record.quantity), record.occurred_at.replace(tzinfo=None),
                            record.properties, record.payload_hash,
                        )
                    yield record
    """)
    assert_only_these_fail(outcomes, {"test_full_read_yields_valid_canonical_records"})
    text = texts["test_full_read_yields_valid_canonical_records"]
    assert "quantity must be a Decimal, not float (10.0)" in text
    assert "occurred_at is a naive datetime (2024-01-01T12:00:00); attach a timezone (UTC)" in text


def test_random_record_ids_fail_the_full_read(pytester: pytest.Pytester) -> None:
    outcomes, texts = run_kit(pytester, """
        class Broken(MemoryConnector):
            name = "broken"

            def _records(self, stream, data):
                for record in super()._records(stream, data):
                    if stream == "contracts":
                        record.id = "con_" + uuid.uuid4().hex
                    yield record
    """)
    assert_only_these_fail(outcomes, {"test_full_read_yields_valid_canonical_records"})
    assert "is not deterministic" in texts["test_full_read_yields_valid_canonical_records"]


def test_a_connector_that_ignores_its_checkpoint_fails_the_incremental_checks(pytester: pytest.Pytester) -> None:
    outcomes, texts = run_kit(pytester, """
        class Broken(MemoryConnector):
            name = "broken"

            def read(self, stream, state):
                yield from super().read(stream, None)
    """)
    assert_only_these_fail(outcomes, {
        "test_incremental_read_resumes_from_a_checkpoint",
        "test_far_future_cursor_yields_nothing",
    })
    assert "a read from the final checkpoint re-sends unchanged" in texts[
        "test_incremental_read_resumes_from_a_checkpoint"]


def test_a_replay_that_creates_a_duplicate_fails_the_write_check(pytester: pytest.Pytester) -> None:
    outcomes, texts = run_kit(pytester, """
        class Broken(MemoryConnector):
            name = "broken"

            def write(self, action):
                external_id, created, record = self._call(
                    "write", lambda store: store.apply(action, honour_idempotency=False))
                return WriteResult(external_id=external_id, created=created, record=record)
    """)
    assert_only_these_fail(outcomes, {"test_write_returns_an_external_id_and_replay_creates_no_duplicate"})
    assert "replaying the idempotency key wrote" in texts[
        "test_write_returns_an_external_id_and_replay_creates_no_duplicate"]


def test_an_update_that_overwrites_a_changed_record_fails_the_conflict_check(pytester: pytest.Pytester) -> None:
    outcomes, texts = run_kit(pytester, """
        class Broken(MemoryConnector):
            name = "broken"

            def write(self, action):
                if action.kind == "update_customer_fields":  # last writer wins: no base_version check
                    action = type(action)(action.kind, action.idempotency_key, action.payload,
                                          action.target_external_id, None)
                return super().write(action)
    """)
    assert_only_these_fail(outcomes, {"test_write_conflict_is_reported_not_overwritten"})
    assert "DID NOT RAISE" in texts["test_write_conflict_is_reported_not_overwritten"]


def test_retrying_a_4xx_fails_the_retry_check(pytester: pytest.Pytester) -> None:
    outcomes, texts = run_kit(pytester, """
        class Broken(MemoryConnector):
            name = "broken"

            def classify(self, exc):
                if isinstance(exc, MemoryHTTPError) and exc.status_code == 404:
                    return TransientError("not found, maybe later")
                return super().classify(exc)
    """)
    assert_only_these_fail(outcomes, {"test_4xx_is_not_retried[404]"})
    assert "DID NOT RAISE" in texts["test_4xx_is_not_retried[404]"]


def test_ignoring_retry_after_fails_the_429_check(pytester: pytest.Pytester) -> None:
    outcomes, texts = run_kit(pytester, """
        class Broken(MemoryConnector):
            name = "broken"

            def classify(self, exc):
                err = super().classify(exc)
                if isinstance(err, TransientError):
                    err.retry_after = None  # back off on its own schedule instead
                return err
    """)
    assert_only_these_fail(outcomes, {
        "test_retry_429_honours_retry_after[seconds]",
        "test_retry_429_honours_retry_after[http-date]",
    })
    assert "Retry-After: 7 asked for 7.0s" in texts["test_retry_429_honours_retry_after[seconds]"]


def test_giving_up_on_a_5xx_fails_the_retry_check(pytester: pytest.Pytester) -> None:
    outcomes, _ = run_kit(pytester, """
        class Broken(MemoryConnector):
            name = "broken"

            def classify(self, exc):
                if isinstance(exc, MemoryHTTPError) and exc.status_code >= 500:
                    return SystemFailure(f"server said {exc.status_code}")
                return super().classify(exc)
    """)
    assert_only_these_fail(outcomes, {
        "test_retry_5xx_with_capped_backoff[500]",
        "test_retry_5xx_with_capped_backoff[503]",
    })


def test_a_connector_no_plugin_registers_fails_every_check(pytester: pytest.Pytester) -> None:
    outcomes, texts = run_kit(pytester, """
        class Broken(MemoryConnector):
            name = "broken"


        Harness.plugins = lambda self: []
    """)
    assert_only_these_fail(outcomes, EVERY_CHECK)
    assert "the plugin host does not find 'broken': no connector named 'broken' is registered" in texts[
        "test_connector_is_registered_through_the_plugin_host"]
