"""Charts drawn on the server as inline SVG (no script, no CDN): horizontal bars
with their values, and a step waterfall for a task's trace."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

from markupsafe import Markup

_BAR_H = 22
_LABEL_W = 220
_VALUE_W = 110
_W = 760


def bar_chart(rows: Sequence[tuple[str, float]], *, unit: str = "", title: str = "") -> Markup:
    """Horizontal bars, one per ``(label, value)``, scaled to the largest value.

    Args:
        rows: labels and non-negative values, in the order to draw them.
        unit: printed after each value (``"USD"``, ``"tokens"``).
        title: the chart's accessible name.
    """
    if not rows:
        return Markup("")
    top = max(v for _, v in rows) or 1.0
    bar_w = _W - _LABEL_W - _VALUE_W
    h = _BAR_H * len(rows) + 8
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" width="{_W}" '
        f'height="{h}" viewBox="0 0 {_W} {h}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, (label, value) in enumerate(rows):
        y = 4 + i * _BAR_H
        w = max(1.0, bar_w * value / top) if value > 0 else 0.0
        shown = f"{value:,.6f}".rstrip("0").rstrip(".") if value < 1 else f"{value:,.2f}"
        parts.append(
            f'<text x="{_LABEL_W - 6}" y="{y + 15}" text-anchor="end">{escape(label[:32])}</text>'
            f'<rect x="{_LABEL_W}" y="{y + 3}" width="{w:.1f}" height="{_BAR_H - 6}" rx="2"/>'
            f'<text x="{_LABEL_W + w + 6:.1f}" y="{y + 15}">{escape(shown)} {escape(unit)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text and attribute above is escaped


def waterfall(
    steps: Sequence[tuple[str, datetime | None, datetime, str]], start: datetime | None
) -> Markup:
    """A trace waterfall: one row per ``(label, started_at, ended_at, where)``, placed
    on a shared time axis from ``start`` (ms)."""
    if not steps:
        return Markup("")
    t0 = start or min((s or e) for _, s, e, _ in steps)
    t_end = max(e for _, _, e, _ in steps)
    span_ms = max(1.0, (t_end - t0).total_seconds() * 1000.0)
    axis_w = _W - _LABEL_W - 80
    h = _BAR_H * len(steps) + 24
    parts = [
        f'<svg class="chart waterfall" role="img" aria-label="step timeline" width="{_W}" '
        f'height="{h}" viewBox="0 0 {_W} {h}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, (label, s, e, where) in enumerate(steps):
        y = 4 + i * _BAR_H
        x0 = ((s or e) - t0).total_seconds() * 1000.0
        dur = (e - s).total_seconds() * 1000.0 if s is not None else 0.0
        x = _LABEL_W + axis_w * x0 / span_ms
        w = max(2.0, axis_w * dur / span_ms)
        parts.append(
            f'<text x="{_LABEL_W - 6}" y="{y + 15}" text-anchor="end">{escape(label[:32])}</text>'
            f'<rect class="zone-{escape(where)}" x="{x:.1f}" y="{y + 3}" width="{w:.1f}" '
            f'height="{_BAR_H - 6}" rx="2"><title>{escape(label)}: {dur:.1f} ms</title></rect>'
            f'<text x="{min(x + w + 4, _W - 70):.1f}" y="{y + 15}">{dur:.1f} ms</text>'
        )
    parts.append(
        f'<text x="{_LABEL_W}" y="{h - 4}">0 ms</text>'
        f'<text x="{_LABEL_W + axis_w}" y="{h - 4}" text-anchor="end">{span_ms:.0f} ms</text>'
        "</svg>"
    )
    return Markup("".join(parts))  # noqa: S704 - every text and attribute above is escaped
