"""Late usage: what to add when a period that was already invoiced is rated again.

Re-rating a period with the usage that arrived late gives the lines the invoice should
have had. :func:`delta_lines` compares them, by line key, with what was invoiced and
returns only the difference: a line whose amount grew gives a line for the extra amount,
a new line comes through whole, a line that disappeared is reversed. Deltas are
differences of rounded amounts, so invoiced + deltas equals the re-rated total exactly,
and nothing is ever charged twice. Re-running with the same inputs gives the same delta
keys, so posting them is idempotent.

Re-rating uses the period's original opening state; credit draws of later periods are
not recomputed (the delta's credit movements adjust the same grants).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from subledger.core.db_types import decimal_text
from subledger.core.rating.credits import CreditMovement
from subledger.core.rating.lines import RatedLine

Invoiced = Sequence[RatedLine] | Mapping[str, RatedLine] | Mapping[str, int]


def _index(invoiced: Invoiced) -> dict[str, RatedLine | int]:
    if isinstance(invoiced, Mapping):
        return dict(invoiced)
    return {line.key: line for line in invoiced}


def _delta_key(key: str, old: int, new: int) -> str:
    return f"{key}:delta:{old}:{new}"


def delta_lines(rerated: Sequence[RatedLine], invoiced: Invoiced) -> list[RatedLine]:
    """The lines to bill so that ``invoiced`` plus them equals ``rerated``.

    Args:
        rerated: the period's lines rated again with all usage known now.
        invoiced: what was already billed: the lines rated then, or a mapping from line
            key to the line or to its amount in minor units.
    """
    before = _index(invoiced)
    out: list[RatedLine] = []
    for line in rerated:
        old = before.pop(line.key, None)
        if old is None:
            out.append(line)
            continue
        old_amount = old if isinstance(old, int) else old.amount
        if old_amount == line.amount:
            continue
        detail = (*line.detail, ("delta_of", line.key), ("invoiced_minor", str(old_amount)),
                  ("rerated_minor", str(line.amount)))
        if isinstance(old, RatedLine):
            out.append(line._replace(
                key=_delta_key(line.key, old_amount, line.amount),
                quantity=line.quantity - old.quantity,
                usage=None if line.usage is None or old.usage is None else line.usage - old.usage,
                exact_amount=line.exact_amount - old.exact_amount,
                amount=line.amount - old_amount,
                tiers=(),
                detail=(*detail, ("invoiced_quantity", decimal_text(old.quantity))),
            ))
        else:
            out.append(line._replace(
                key=_delta_key(line.key, old_amount, line.amount),
                exact_amount=line.exact_amount,
                amount=line.amount - old_amount,
                tiers=(),
                detail=detail,
            ))
    for key, old in before.items():  # lines the re-rating no longer has: reverse them
        if isinstance(old, RatedLine) and old.amount:
            out.append(old._replace(
                key=_delta_key(key, old.amount, 0),
                quantity=-old.quantity,
                exact_amount=-old.exact_amount,
                amount=-old.amount,
                tiers=(),
                detail=(*old.detail, ("delta_of", key), ("invoiced_minor", str(old.amount)), ("rerated_minor", "0")),
            ))
        elif isinstance(old, int) and old:
            raise ValueError(
                f"invoiced line {key!r} ({old} minor units) has no re-rated counterpart; "
                "pass the invoiced RatedLine so it can be reversed"
            )
    return out


def delta_movements(
    rerated: Sequence[CreditMovement], posted: Sequence[CreditMovement]
) -> list[CreditMovement]:
    """The credit movements to post so that ``posted`` plus them equals ``rerated``."""
    before = {m.entry_key: m for m in posted}
    out: list[CreditMovement] = []
    for move in rerated:
        old = before.pop(move.entry_key, None)
        if old is None:
            out.append(move)
            continue
        if old.amount == move.amount:
            continue
        key = _delta_key(move.entry_key, old.amount, move.amount)  # type: ignore[arg-type]
        if move.amount_minor is not None:
            assert old.amount_minor is not None
            out.append(move._replace(entry_key=key, amount_minor=move.amount_minor - old.amount_minor))
        else:
            assert move.units is not None and old.units is not None
            out.append(move._replace(entry_key=key, units=move.units - old.units))
    for key, old in before.items():
        if old.amount:
            reversed_key = f"{key}:delta:reversed"
            if old.amount_minor is not None:
                out.append(old._replace(entry_key=reversed_key, amount_minor=-old.amount_minor))
            else:
                assert old.units is not None
                out.append(old._replace(entry_key=reversed_key, units=-old.units))
    return out
