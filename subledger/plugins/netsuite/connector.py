"""The NetSuite connector: the general ledger side (role ``erp``).

Reads customers, invoices (with lines and service dates), credit memos and customer
payments (with their applications) incrementally: SuiteQL lists what changed since the
cursor (``lastModifiedDate``, minus a lookback window), the record service returns each
record whole. Journal entries, accounts, subsidiaries and accounting periods have no
canonical table: :meth:`NetSuiteConnector.journal_entries`, :meth:`accounts`,
:meth:`subsidiaries` and :meth:`accounting_periods` read them for comparison and
configuration checks.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, ClassVar

from subledger.core.connector import (
    Capabilities,
    Checkpoint,
    CheckResult,
    Connector,
    Rejected,
    StreamSpec,
    WriteAction,
    WriteResult,
)
from subledger.core.errors import SubledgerError
from subledger.core.secrets import redact
from subledger.plugins.netsuite import mapping
from subledger.plugins.netsuite.accounts import AccountMapping, load_mapping
from subledger.plugins.netsuite.client import NetSuiteClient
from subledger.plugins.netsuite.config import NetSuiteConfig
from subledger.plugins.netsuite.writes import Writer

STAMP = "%Y-%m-%d %H:%M:%S"
EPOCH = "1970-01-01 00:00:00"


class _Source:
    def __init__(self, table: str, type_code: str | None, record_type: str, mapper: Any) -> None:
        self.table, self.type_code, self.record_type, self.mapper = table, type_code, record_type, mapper


SOURCES = {
    "customers": _Source("customer", None, "customer", mapping.customer),
    "invoices": _Source("transaction", "CustInvc", "invoice", mapping.invoice),
    "credit_notes": _Source("transaction", "CustCred", "creditMemo", mapping.credit_memo),
    "payments": _Source("transaction", "CustPymt", "customerPayment", mapping.customer_payment),
}


def changed_since_query(source: _Source, since: str) -> str:
    """The SuiteQL that lists records modified at or after ``since`` (``YYYY-MM-DD HH:MM:SS``)."""
    where = f"type = '{source.type_code}' AND " if source.type_code else ""
    return (f"SELECT id, TO_CHAR(lastmodifieddate, 'YYYY-MM-DD HH24:MI:SS') AS modified FROM {source.table} "
            f"WHERE {where}lastmodifieddate >= TO_TIMESTAMP('{since}', 'YYYY-MM-DD HH24:MI:SS') "
            "ORDER BY lastmodifieddate, id")


class NetSuiteConnector(Connector):
    """NetSuite over SuiteTalk REST web services and SuiteQL."""

    name: ClassVar[str] = "netsuite"
    title: ClassVar[str] = "NetSuite"
    config_model: ClassVar[type[NetSuiteConfig]] = NetSuiteConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        read=True, incremental=True,
        write=frozenset(
            {"create_customer", "create_invoice", "create_credit_note", "create_payment", "create_journal_entry"}
        ),
    )

    config: NetSuiteConfig

    def __init__(self, config: NetSuiteConfig, *, connection: str | None = None, transport: Any = None) -> None:
        super().__init__(config, connection=connection)
        self._transport = transport

    @cached_property
    def client(self) -> NetSuiteClient:
        return NetSuiteClient(self.config, transport=self._transport)

    @cached_property
    def account_mapping(self) -> AccountMapping | None:
        return load_mapping(self.config.account_mapping) if self.config.account_mapping else None

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()

    def streams(self) -> list[StreamSpec]:
        types = {"customers": "customer", "invoices": "invoice", "credit_notes": "credit_note", "payments": "payment"}
        return [StreamSpec(name, rtype, ("external_id",), "lastModifiedDate") for name, rtype in types.items()]

    def check(self) -> CheckResult:
        try:
            rows = next(self.client.suiteql("SELECT id, name FROM subsidiary ORDER BY id", page_size=1))[0]
        except SubledgerError as err:
            return CheckResult(False, redact(f"{err} — {err.fix}" if err.fix else str(err)), {"kind": str(err.kind)})
        except Exception as err:  # check() never raises
            return CheckResult(False, redact(f"NetSuite check failed: {type(err).__name__}: {err}"))
        return CheckResult(True, f"connected to NetSuite account {self.config.account_id}",
                           {"subsidiaries": len(rows)})

    # -- reading -------------------------------------------------------------------------------

    def read(self, stream: str, state: dict[str, Any] | None) -> Iterator[Any]:
        source = SOURCES[self.stream(stream).name]
        since = _parse(str((state or {}).get("since") or self._start())).strftime(STAMP)
        seen: dict[str, str] = dict((state or {}).get("seen") or {})
        scan_from = (_parse(since) - timedelta(seconds=self.config.lookback_seconds)).strftime(STAMP)
        high = since
        for rows, _, _ in self.client.suiteql(changed_since_query(source, max(scan_from, EPOCH))):
            wanted = [r for r in rows if seen.get(str(r["id"])) != r["modified"]]
            for row, item in zip(wanted, self._fetch(source.record_type, [str(r["id"]) for r in wanted]),
                                 strict=True):
                if item is not None:
                    try:
                        yield source.mapper(self.config, self.connection, item)
                    except (mapping.MappingError, KeyError, TypeError, ValueError, ArithmeticError) as err:
                        # One record the mapping cannot read never stops the stream: it is rejected.
                        field = err.args[0] if isinstance(err, KeyError) and err.args else None
                        why = f"it has no {field!r}" if field else str(err) or type(err).__name__
                        yield Rejected(stream, f"{source.record_type} {row['id']}: {why}",
                                       fix="correct the record in NetSuite or the connection's currencies map",
                                       location=f"netsuite:{source.record_type}/{row['id']}",
                                       field=str(field) if field else getattr(err, "field", None))
                seen[str(row["id"])] = row["modified"]
            for r in rows:
                high = max(high, r["modified"])
            yield Checkpoint(self._state(high, seen))
        yield Checkpoint(self._state(high, seen))

    def _start(self) -> str:
        return f"{self.config.start_date} 00:00:00" if self.config.start_date else EPOCH

    def _state(self, high: str, seen: dict[str, str]) -> dict[str, Any]:
        floor = (_parse(high) - timedelta(seconds=self.config.lookback_seconds)).strftime(STAMP)
        return {"since": high, "seen": {k: v for k, v in sorted(seen.items()) if v >= floor}}

    def _fetch(self, record_type: str, ids: list[str]) -> list[dict[str, Any] | None]:
        """Records by internal id, in parallel up to the concurrency pool."""
        if len(ids) <= 1 or self.config.max_concurrency == 1:
            return [self.client.get(record_type, i) for i in ids]
        with ThreadPoolExecutor(max_workers=self.config.max_concurrency) as pool:
            # Each task runs in a copy of this context, so the retry policy in force here applies there too.
            futures = [pool.submit(contextvars.copy_context().run, self.client.get, record_type, i) for i in ids]
            return [f.result() for f in futures]

    def _rows(self, query: str) -> list[dict[str, Any]]:
        return [row for rows, _, _ in self.client.suiteql(query) for row in rows]

    def journal_entries(self, since: str = EPOCH) -> list[dict[str, Any]]:
        """Journal entries modified since ``since`` (``YYYY-MM-DD HH:MM:SS``), whole, for comparison."""
        source = _Source("transaction", "Journal", "journalEntry", None)
        ids = [str(r["id"]) for r in self._rows(changed_since_query(source, since))]
        return [r for r in self._fetch("journalEntry", ids) if r is not None]

    def accounts(self) -> list[dict[str, Any]]:
        """The chart of accounts: id, number, name, type, inactive."""
        return self._rows("SELECT id, acctnumber, acctname, accttype, isinactive FROM account ORDER BY id")

    def subsidiaries(self) -> list[dict[str, Any]]:
        return self._rows("SELECT id, name, currency FROM subsidiary ORDER BY id")

    def accounting_periods(self) -> list[dict[str, Any]]:
        """Base (monthly) periods with their lock flags."""
        return self._rows(
            "SELECT id, periodname, TO_CHAR(startdate, 'YYYY-MM-DD') AS startdate, "
            "TO_CHAR(enddate, 'YYYY-MM-DD') AS enddate, closed, arlocked, alllocked FROM accountingperiod "
            "WHERE isquarter = 'F' AND isyear = 'F' ORDER BY startdate")

    def closed_period(self, period: str, period_id: str | None) -> str | None:
        """The name of the period if ``period`` (YYYY-MM) is closed or GL-locked, else None."""
        for p in self.accounting_periods():
            if (period_id and p["id"] == period_id) or (not period_id and p["startdate"][:7] == period):
                if p["closed"] == "T" or p["alllocked"] == "T":
                    return str(p["periodname"])
                return None
        return None

    # -- writing ---------------------------------------------------------------------------------

    @cached_property
    def _writer(self) -> Writer:
        return Writer(self.client, self.config, self.account_mapping, self.closed_period)

    def write(self, action: WriteAction) -> WriteResult:
        return self._writer.write(action)

    def find(self, action: WriteAction) -> WriteResult | None:
        return self._writer.find(action)


def _parse(stamp: str) -> datetime:
    return datetime.strptime(stamp[:19].replace("T", " "), STAMP).replace(tzinfo=UTC)
