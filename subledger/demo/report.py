"""The demo's HTML report: one self-contained file (inline CSS and SVG, no external assets).

:func:`render_report` is a pure function from :class:`ReportData` to an HTML string, so
anything that can gather the same figures (the CLI, the service) can reuse it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Any

from subledger.core.money import to_major

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
color:#1d2330;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2.2rem;border-bottom:1px solid #dde;
padding-bottom:.3rem}.sub{color:#667}.cards{display:flex;gap:1rem;flex-wrap:wrap;margin:1rem 0}
.card{background:#f5f7fb;border-radius:8px;padding:.8rem 1.1rem;min-width:160px}.card b{display:block;font-size:1.3rem}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{text-align:left;padding:.3rem .5rem;
border-bottom:1px solid #eef}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.ev{color:#556;font-size:12px}.ok{color:#17803d}.bad{color:#b42318}svg text{font:11px system-ui,sans-serif}
"""


@dataclass
class ReportData:
    """Every figure the report shows; amounts in minor units of ``currency``."""

    title: str
    as_of: str
    currency: str
    cards: list[tuple[str, str]]  # (label, value)
    leakage_by_month: dict[str, int]  # YYYY-MM -> unbilled minor units
    leakage_by_rule: dict[str, int]  # rule -> amount at stake
    deferred_by_month: dict[str, int]  # YYYY-MM -> closing deferred revenue (contract liability)
    unbilled_receivable_by_month: dict[str, int]  # YYYY-MM -> closing unbilled receivable (contract asset)
    findings: list[dict[str, Any]]  # rule, customer, period, amount_minor, summary, evidence, status
    waterfall_svg: str = ""  # from subledger.core.revrec.chart.waterfall_svg
    notes: list[str] = field(default_factory=list)


def _money(minor: int, currency: str) -> str:
    return f"{to_major(minor, currency):,}"


def bar_chart_svg(values: dict[str, int], currency: str, *, width: int = 960, height: int = 260,
                  color: str = "#d9480f") -> str:
    """Vertical bars, one per key, labelled with the major-unit amount."""
    if not values:
        return "<p class='sub'>nothing to show</p>"
    top = max(max(values.values()), 1)
    left, bottom, pad = 10, 40, 6
    slot = (width - left * 2) / len(values)
    bars = []
    for i, (label, v) in enumerate(values.items()):
        h = (height - bottom - 20) * max(v, 0) / top
        x = left + i * slot + pad / 2
        y = height - bottom - h
        bars.append(
            f"<rect x='{x:.1f}' y='{y:.1f}' width='{slot - pad:.1f}' height='{h:.1f}' fill='{color}' rx='2'>"
            f"<title>{escape(label)}: {_money(v, currency)} {currency}</title></rect>"
            f"<text x='{x + (slot - pad) / 2:.1f}' y='{height - bottom + 14}' text-anchor='middle'>"
            f"{escape(label)}</text>"
            + (f"<text x='{x + (slot - pad) / 2:.1f}' y='{y - 4:.1f}' text-anchor='middle'>"
               f"{_money(v, currency)}</text>" if v else ""))
    return (f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} {height}' width='100%' role='img'>"
            + "".join(bars) + "</svg>")


def line_chart_svg(values: dict[str, int], currency: str, *, width: int = 960, height: int = 260) -> str:
    """A line through the month-end values, with a dot and label at each month."""
    if not values:
        return "<p class='sub'>nothing to show</p>"
    top = max(max(values.values()), 1)
    left, bottom = 40, 40
    step = (width - left * 2) / max(len(values) - 1, 1)
    pts = [(left + i * step, height - bottom - (height - bottom - 30) * max(v, 0) / top)
           for i, v in enumerate(values.values())]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
    marks = "".join(
        f"<circle cx='{x:.1f}' cy='{y:.1f}' r='3.5' fill='#1c7ed6'><title>{escape(k)}: {_money(v, currency)}</title>"
        f"</circle><text x='{x:.1f}' y='{height - bottom + 14}' text-anchor='middle'>{escape(k)}</text>"
        f"<text x='{x:.1f}' y='{y - 7:.1f}' text-anchor='middle'>{_money(v, currency)}</text>"
        for (x, y), (k, v) in zip(pts, values.items(), strict=True))
    return (f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} {height}' width='100%' role='img'>"
            f"<polyline points='{path}' fill='none' stroke='#1c7ed6' stroke-width='2'/>{marks}</svg>")


def _evidence(refs: list[dict[str, Any]]) -> str:
    shown = [f"{r.get('system')}:{r.get('object')}:{r.get('id')}" for r in refs[:4]]
    more = f" (+{len(refs) - 4} more)" if len(refs) > 4 else ""
    return escape(", ".join(shown) + more)


def render_report(data: ReportData) -> str:
    """The report as one HTML document."""
    cur = data.currency
    cards = "".join(f"<div class='card'>{escape(k)}<b>{escape(v)}</b></div>" for k, v in data.cards)
    by_rule = "".join(f"<tr><td>{escape(rule)}</td><td class='n'>{_money(v, cur)}</td></tr>"
                      for rule, v in sorted(data.leakage_by_rule.items(), key=lambda kv: (-kv[1], kv[0])))
    rows = "".join(
        f"<tr><td>{escape(f['rule'])}</td><td>{escape(str(f.get('customer') or '-'))}</td>"
        f"<td>{escape(str(f.get('period') or '-'))}</td><td class='n'>{_money(f['amount_minor'], cur)}</td>"
        f"<td class='{'ok' if f.get('status') == 'resolved' else 'bad'}'>{escape(str(f.get('status', 'open')))}</td>"
        f"<td>{escape(f.get('summary', ''))}<div class='ev'>{_evidence(f.get('evidence') or [])}</div></td></tr>"
        for f in data.findings)
    notes = "".join(f"<li>{escape(n)}</li>" for n in data.notes)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(data.title)}</title><style>{CSS}</style></head>
<body><h1>{escape(data.title)}</h1><div class="sub">as of {escape(data.as_of)} · amounts in {escape(cur)}</div>
<div class="cards">{cards}</div>
<h2>Leakage by month (unbilled, as first found)</h2>{bar_chart_svg(data.leakage_by_month, cur)}
<h2>Leakage by rule (amount at stake)</h2><table><tr><th>rule</th><th class="n">{escape(cur)}</th></tr>{by_rule}</table>
<h2>Revenue waterfall</h2>{data.waterfall_svg or "<p class='sub'>no revenue recognized</p>"}
<h2>Deferred revenue over time (month-end balance)</h2>{line_chart_svg(data.deferred_by_month, cur)}
<h2>Unbilled receivable over time (revenue earned, not yet invoiced)</h2>
{line_chart_svg(data.unbilled_receivable_by_month, cur)}
<h2>Findings, with evidence</h2>
<table><tr><th>rule</th><th>customer</th><th>period</th><th class="n">amount</th><th>status</th><th>what and where</th>
</tr>{rows}</table>
{f"<h2>Notes</h2><ul>{notes}</ul>" if notes else ""}
</body></html>
"""
