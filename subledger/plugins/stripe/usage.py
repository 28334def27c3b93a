"""The usage stream: Stripe meter event summaries, one usage event per meter, customer and day.

Stripe offers no way to list raw meter events, only summaries per customer. The stream
reads daily summaries (``value_grouping_window=day``) of closed UTC days and yields each
non-empty one as a :class:`~subledger.core.connector.UsageEventIn` with the id
``<meter id>:<customer>:<YYYY-MM-DD>`` at the day's start.

Stripe accepts events up to 35 days late, so each read re-checks the last
``usage_lookback_days`` closed days. A day that changed after it was read is not
rewritten (usage events are immutable): for ``sum`` and ``count`` meters the difference
is added as a correcting event (``...:<day>+<new total>``); for a ``last`` meter the
change is reported as a rejected record for review. The state holds, per meter, the
first day not yet read, plus the totals sent for the days still inside the lookback.

Coverage: after reading one meter's days ``[start, end)`` for every customer, the stream
yields ``UsageCoverage(start, end, meter=<event_name>)`` right before the checkpoint that
records the meter's progress, so the window commits with the events it vouches for. The
next read starts ``usage_lookback_days`` before the previous end, so consecutive windows
overlap (or touch, with no lookback) and merge into one. A meter with no closed day to
read this time yields no window.

Where a meter's first read starts: ``usage_start`` when configured, else the start of the
account's contract history (the earliest ``start_date`` of any subscription, any
status), else, in an account without subscriptions, 35 days back.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from subledger.core.connector import Checkpoint, Rejected, UsageCoverage, UsageEventIn
from subledger.core.db_types import decimal_text
from subledger.core.model import payload_hash

if TYPE_CHECKING:
    from subledger.plugins.stripe.connector import StripeConnector

FIRST_READ_DAYS = 35  # Stripe's own backdating window: the first read of an account without subscriptions


def today_utc() -> date:
    return datetime.now(UTC).date()


def _midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def _epoch(d: date) -> int:
    return int(_midnight(d).timestamp())


def contract_history_start(connector: StripeConnector) -> date | None:
    """The UTC day the account's earliest subscription (any status) started; None without any.

    Stripe lists subscriptions newest first and a backdated one can start before older
    ones, so every page is read (one list call per 100 subscriptions).
    """
    api = connector.api
    starts = [
        int(sub.get("start_date") or sub["created"])
        for sub in api.list_all("list subscriptions (contract history start)",
                                lambda q: api.v1.subscriptions.list(params=q), {"status": "all"})
    ]
    return datetime.fromtimestamp(min(starts), UTC).date() if starts else None


def first_usage_day(connector: StripeConnector, today: date) -> date:
    """Where a meter's first read starts: ``usage_start``, else the contract history, else 35 days back."""
    if connector.config.usage_start is not None:
        return connector.config.usage_start
    history = contract_history_start(connector)
    return min(history, today) if history is not None else today - timedelta(days=FIRST_READ_DAYS)


def _quantity(value: Any) -> Decimal:
    """Stripe sends aggregated values as JSON numbers; read them via their shortest text."""
    if isinstance(value, Decimal):
        return value
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def _meter_problem(meter: dict[str, Any]) -> str | None:
    """The field a meter lacks for its usage to be read (None: it has them all)."""
    if not meter.get("id"):
        return "id"
    if not meter.get("event_name"):
        return "event_name"
    if not (meter.get("default_aggregation") or {}).get("formula"):
        return "default_aggregation.formula"
    return None


def read_usage(connector: StripeConnector, state: dict[str, Any] | None) -> Iterator[Any]:
    api = connector.api
    config = connector.config
    state = dict(state or {})
    next_days: dict[str, str] = dict(state.get("next") or {})
    sent: dict[str, str] = dict(state.get("sent") or {})
    end = today_utc()
    meters = []
    for meter in api.list_all("list billing meters", lambda q: api.v1.billing.meters.list(params=q), {}):
        problem = _meter_problem(meter)
        if problem is None:
            meters.append(meter)
            continue
        yield Rejected(
            stream="usage", reason=f"Stripe billing meter {str(meter.get('id') or '(no id)')[:64]} cannot be read: "
            f"it has no {problem}", fix="check the meter in Stripe; its usage is not read until it has one",
            location=f"stripe:billing.meter/{str(meter.get('id') or '')[:64]}", field=problem, raw=str(meter)[:10000])
    customers = [str(c["id"]) for c in api.list_all("list customers", lambda q: api.v1.customers.list(params=q), {})
                 if c.get("id")]
    first_day: date | None = None  # looked up once, and only when a meter is read for the first time
    for meter in sorted(meters, key=lambda m: m["id"]):
        mid = meter["id"]
        if mid in next_days:
            start = date.fromisoformat(next_days[mid]) - timedelta(days=config.usage_lookback_days)
        else:
            first_day = first_day or first_usage_day(connector, end)
            start = first_day
        if start < end:
            unreadable = False
            for customer in customers:
                for item in _customer_days(connector, meter, customer, start, end, sent):
                    unreadable = unreadable or (isinstance(item, Rejected) and str(item.field).startswith("summary."))
                    yield item
            # Every customer's days of this meter in [start, end) are read: say so, with its checkpoint
            # (not when a summary could not be read: those days stay "not covered").
            if not unreadable:
                yield UsageCoverage(_midnight(start), _midnight(end), meter=meter["event_name"])
        next_days[mid] = max(end, date.fromisoformat(next_days.get(mid, end.isoformat()))).isoformat()
        horizon = (end - timedelta(days=config.usage_lookback_days)).isoformat()
        sent = {k: v for k, v in sent.items() if k.rsplit("|", 1)[-1] >= horizon}
        yield Checkpoint({"next": dict(next_days), "sent": dict(sent)})
    if not meters:
        yield Checkpoint({"next": next_days, "sent": sent})


def _customer_days(
    connector: StripeConnector, meter: dict[str, Any], customer: str, start: date, end: date, sent: dict[str, str]
) -> Iterator[Any]:
    api = connector.api
    params = {
        "customer": customer,
        "start_time": _epoch(start),
        "end_time": _epoch(end),
        "value_grouping_window": "day",
    }
    summaries = api.list_all(
        f"list event summaries of {meter['id']}",
        lambda q: api.v1.billing.meters.event_summaries.list(meter["id"], params=q),
        params,
    )
    formula = meter["default_aggregation"]["formula"]
    readable = []
    for summary in summaries:
        missing = next((k for k in ("start_time", "aggregated_value") if summary.get(k) is None), None)
        if missing is None:
            readable.append(summary)
            continue
        yield Rejected(
            stream="usage", reason=f"a usage summary of meter {meter['event_name']!r} for {customer} has no {missing}",
            fix="check the meter's usage in Stripe; report the answer to subledger's maintainers if it recurs",
            location=f"stripe:billing.meter/{meter['id']}", field=f"summary.{missing}", raw=str(summary)[:10000])
    for summary in sorted(readable, key=lambda s: s["start_time"]):
        day = datetime.fromtimestamp(summary["start_time"], UTC).date()
        value = _quantity(summary["aggregated_value"])
        key = f"{meter['id']}|{customer}|{day.isoformat()}"
        previous = sent.get(key)
        if previous is not None and Decimal(previous) == value:
            continue
        base = f"{meter['id']}:{customer}:{day.isoformat()}"
        occurred = datetime(day.year, day.month, day.day, tzinfo=UTC)
        properties = {
            "stripe_meter": meter["id"],
            "window_start": summary["start_time"],
            "window_end": summary.get("end_time"),
            "aggregation": formula,
        }
        if previous is None:
            event_id, quantity = base, value
        elif formula in ("sum", "count"):
            event_id, quantity = f"{base}+{decimal_text(value)}", value - Decimal(previous)
            properties.update(correction_of=base, previous_total=previous, total=decimal_text(value))
        else:
            yield Rejected(
                stream="usage",
                reason=f"usage of last-value meter {meter['event_name']!r} for {customer} on {day} changed from "
                f"{previous} to {decimal_text(value)} after it was read",
                fix="review the day's usage in Stripe; a last-value day cannot be corrected by adding an event",
                location=f"stripe:billing.meter/{meter['id']}",
                field="aggregated_value",
                raw=key,
            )
            sent[key] = decimal_text(value)
            continue
        sent[key] = decimal_text(value)
        yield UsageEventIn(
            event_id=event_id,
            customer_external_id=customer,
            meter=meter["event_name"],
            quantity=quantity,
            occurred_at=occurred,
            properties=properties,
            payload_hash=payload_hash({"summary": summary, "event_id": event_id, "quantity": decimal_text(quantity)}),
        )
