"""A waterfall chart as a standalone SVG (no plotting dependency).

Stacked bars per month, one colour per group (the largest groups, the rest as
"other"); months up to ``recognized_through`` are solid (recognized), later months are
lighter (scheduled, still deferred). One chart per currency: amounts of different
currencies are never added.
"""

from __future__ import annotations

from decimal import Decimal
from xml.sax.saxutils import escape

from subledger.core.revrec.reports import Report

PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f"]


def waterfall_svg(report: Report, *, currency: str | None = None, width: int = 960, height: int = 480) -> str:
    """Render a waterfall :class:`Report` (from ``reports.waterfall``) as SVG text."""
    months: list[str] = report.meta.get("months", [])
    actual = report.meta.get("recognized_through")
    currencies = sorted({r[1] for r in report.rows})
    currency = currency or (currencies[0] if currencies else "USD")
    rows = [r for r in report.rows if r[1] == currency]
    series = sorted(((r[0], [Decimal(v) for v in r[2:2 + len(months)]]) for r in rows),
                    key=lambda s: -sum(s[1]))
    if len(series) > len(PALETTE):
        head, tail = series[: len(PALETTE) - 1], series[len(PALETTE) - 1:]
        other = [sum((s[1][i] for s in tail), Decimal(0)) for i in range(len(months))]
        series = [*head, ("other", other)]
    left, right, top, bottom = 80, 180, 40, 60
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum((max(s[1][i], Decimal(0)) for s in series), Decimal(0)) for i in range(len(months))]
    peak = max(totals, default=Decimal(0)) or Decimal(1)
    bar_w = plot_w / max(len(months), 1)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<title>Revenue waterfall ({escape(currency)})</title>',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{left}" y="24" font-size="15" font-weight="bold">Revenue waterfall — {escape(currency)}'
        f'{" (solid: recognized through " + escape(actual) + ")" if actual else ""}</text>',
    ]
    for k in range(5):
        value = peak * k / 4
        y = top + plot_h - float(value / peak) * plot_h
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{value.quantize(Decimal(1)):,}</text>')
    for i, month in enumerate(months):
        x = left + i * bar_w + bar_w * 0.15
        y = top + plot_h
        scheduled = actual is not None and month > actual
        for j, (_name, values) in enumerate(series):
            v = max(values[i], Decimal(0))
            if v == 0:
                continue
            h = float(v / peak) * plot_h
            y -= h
            opacity = "0.45" if scheduled else "1"
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w * 0.7:.1f}" height="{h:.1f}" '
                       f'fill="{PALETTE[j % len(PALETTE)]}" fill-opacity="{opacity}"><title>{escape(month)} '
                       f'{escape(series[j][0])}: {v} {escape(currency)}</title></rect>')
        if len(months) <= 24 or i % max(len(months) // 24, 1) == 0:
            out.append(f'<text x="{x + bar_w * 0.35:.1f}" y="{top + plot_h + 16}" text-anchor="middle" '
                       f'transform="rotate(45 {x + bar_w * 0.35:.1f} {top + plot_h + 16})">{escape(month)}</text>')
    for j, (name, _values) in enumerate(series):
        y = top + 10 + j * 18
        out.append(f'<rect x="{left + plot_w + 16}" y="{y - 9}" width="12" height="12" '
                   f'fill="{PALETTE[j % len(PALETTE)]}"/>')
        out.append(f'<text x="{left + plot_w + 34}" y="{y + 1}">{escape(name[:22])}</text>')
    out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#333"/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
