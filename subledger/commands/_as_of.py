"""``--as-of``: the instant a command judges the store at (replays and historical exports)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import typer

from subledger.core.db_types import utcnow
from subledger.core.errors import ConfigError

HELP = ("Judge the store as of this instant: a date (the end of that day, UTC) or an ISO timestamp with an "
        "offset. Usage, invoices and credit notes after it are not seen. Default: now.")


def as_of_option() -> str | None:
    """The shared ``--as-of`` option; the command parses it with :func:`parse_as_of`."""
    return typer.Option(None, "--as-of", help=HELP, metavar="DATE|TIMESTAMP")  # type: ignore[no-any-return]


def parse_as_of(text: str | None) -> datetime:
    """``2026-03-31`` -> 2026-04-01T00:00Z (the end of the day); a timestamp as written; None -> now."""
    if text is None or text == "":
        return utcnow()
    value = text.strip()
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value) + timedelta(days=1), time(0), tzinfo=UTC)
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"--as-of {text!r} is not a date or timestamp",
            fix="write a date (2026-03-31) or a timestamp with an offset (2026-03-31T18:00:00Z)",
        ) from None
    if at.tzinfo is None:
        raise ConfigError(f"--as-of {text!r} has no UTC offset",
                          fix="add the offset, e.g. 2026-03-31T18:00:00Z or 2026-03-31T13:00:00-05:00")
    return at.astimezone(UTC)
