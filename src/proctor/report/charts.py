"""Inline SVG charts for report.html: bars with 95% error bars, and differences with their intervals.

Plain SVG, no script and no external file; every label goes through html.escape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Sequence

MAX_CHART_ROWS = 80
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")
VERDICT_COLORS = {"B better": "#1a7f37", "A better": "#b3261e"}


def _text(value: object) -> str:
    return escape(str(value), quote=True)


def _num(value: float) -> str:
    return f"{value:.2f}"


@dataclass(frozen=True)
class Band:
    """One label of a bar chart: a value per model and, where known, the half-width of its 95% interval."""

    label: str
    values: tuple[float | None, ...]
    errors: tuple[float | None, ...] = ()

    def error(self, j: int) -> float | None:
        return self.errors[j] if j < len(self.errors) else None


def legend(models: Sequence[str]) -> str:
    # HTML rather than SVG text, so long model names wrap instead of running off the chart.
    items = "".join(
        f'<span class="key"><i style="background:{PALETTE[j % len(PALETTE)]}"></i>{_text(m)}</span>'
        for j, m in enumerate(models)
    )
    return f'<div class="legend">{items}</div>'


def nice_ceiling(value: float) -> float:
    """The smallest round number (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 times a power of ten) >= value: axis ends."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0):
        if step * power >= value - 1e-9:
            return step * power
    return 10.0 * power


def _short(label: str, limit: int = 38) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def bar_chart(title: str, bands: Sequence[Band], models: Sequence[str]) -> str:
    """Horizontal bars, one band per label, one bar per model, 0..100 (or the largest value),
    with a whisker over the 95% interval where a band has one."""
    shown = list(bands[:MAX_CHART_ROWS])
    values = [v for band in shown for v in band.values if v is not None]
    # Scores are percentages: the axis ends at 100 unless a value is larger; whiskers are clipped to it.
    scale = max(100.0, nice_ceiling(max(values, default=0.0)))
    bar_h, gap, label_w, plot_w, top = 12, 8, 250, 420, 6
    band_h = bar_h * max(len(models), 1) + gap
    bottom = top + band_h * len(shown)
    width, height = label_w + plot_w + 90, bottom + 20
    parts = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'role="img" aria-label="{_text(title)}">']
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        tx = label_w + tick * plot_w
        parts.append(
            f'<line x1="{tx:.1f}" y1="{top}" x2="{tx:.1f}" y2="{bottom}" stroke="#e5e5e5"/>'
            f'<text x="{tx:.1f}" y="{bottom + 14}" text-anchor="middle">{tick * scale:g}</text>'
        )

    def x(value: float) -> float:
        return label_w + min(max(value, 0.0), scale) / scale * plot_w

    for i, band in enumerate(shown):
        y0 = top + i * band_h
        parts.append(
            f'<text x="{label_w - 6}" y="{y0 + band_h / 2 + 1:.1f}" text-anchor="end">'
            f"<title>{_text(band.label)}</title>{_text(_short(band.label))}</text>"
        )
        for j, value in enumerate(band.values):
            y = y0 + j * bar_h
            if value is None:
                parts.append(f'<text x="{label_w + 2}" y="{y + bar_h - 2}">-</text>')
                continue
            err = band.error(j)
            color = PALETTE[j % len(PALETTE)]
            tip = f"{models[j] if j < len(models) else '?'}: {_num(value)}"
            if err is not None:
                tip += f" ± {_num(err)} (95% interval {_num(value - err)} to {_num(value + err)})"
            parts.append(
                f'<rect class="bar" x="{label_w}" y="{y}" width="{x(value) - label_w:.1f}" height="{bar_h - 2}" '
                f'fill="{color}"><title>{_text(tip)}</title></rect>'
            )
            end = x(value)
            if err is not None and err > 0:
                lo, hi, mid = x(value - err), x(value + err), y + (bar_h - 2) / 2
                parts.append(
                    f'<path class="errbar" d="M{lo:.1f} {mid:.1f}H{hi:.1f}M{lo:.1f} {mid - 3:.1f}V{mid + 3:.1f}'
                    f'M{hi:.1f} {mid - 3:.1f}V{mid + 3:.1f}" stroke="#222" stroke-width="1" fill="none"/>'
                )
                end = max(end, hi)
            parts.append(f'<text x="{end + 4:.1f}" y="{y + bar_h - 2}">{_num(value)}</text>')
    parts.append("</svg>")
    note = ""
    if len(bands) > len(shown):
        note = f'<p class="note">First {len(shown)} of {len(bands)} rows shown.</p>'
    return f'<h3>{_text(title)}</h3>{legend(models)}{"".join(parts)}{note}'


@dataclass(frozen=True)
class DiffBand:
    """One row of a difference chart: B - A and its 95% interval, in points, and the verdict."""

    label: str
    diff: float | None
    low: float | None
    high: float | None
    verdict: str


def diff_chart(title: str, bands: Sequence[DiffBand]) -> str:
    """Dots for B - A with whiskers over the 95% interval, around a zero line; coloured by verdict."""
    shown = list(bands[:MAX_CHART_ROWS])
    reach = [abs(v) for b in shown for v in (b.diff, b.low, b.high) if v is not None and math.isfinite(v)]
    scale = nice_ceiling(max([1.0, *reach]))
    row_h, label_w, plot_w, top = 18, 250, 420, 6
    bottom = top + row_h * len(shown)
    width, height = label_w + plot_w + 240, bottom + 20
    zero = label_w + plot_w / 2

    def x(value: float) -> float:
        return zero + max(-scale, min(scale, value)) / scale * (plot_w / 2)

    parts = [f'<svg class="chart diff" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'role="img" aria-label="{_text(title)}">']
    for tick in (-1.0, -0.5, 0.0, 0.5, 1.0):
        tx = zero + tick * plot_w / 2
        stroke = "#999" if tick == 0 else "#e5e5e5"
        parts.append(
            f'<line x1="{tx:.1f}" y1="{top}" x2="{tx:.1f}" y2="{bottom}" stroke="{stroke}"/>'
            f'<text x="{tx:.1f}" y="{bottom + 14}" text-anchor="middle">{tick * scale:+g}</text>'
        )
    for i, band in enumerate(shown):
        mid = top + i * row_h + row_h / 2
        parts.append(
            f'<text x="{label_w - 6}" y="{mid + 4:.1f}" text-anchor="end">'
            f"<title>{_text(band.label)}</title>{_text(_short(band.label))}</text>"
        )
        if band.diff is None or not math.isfinite(band.diff):
            parts.append(f'<text x="{zero + 4:.1f}" y="{mid + 4:.1f}">no paired items</text>')
            continue
        color = VERDICT_COLORS.get(band.verdict, "#666")
        tip = f"B - A = {band.diff:+.2f}"
        if band.low is not None and band.high is not None:
            lo, hi = x(band.low), x(band.high)
            tip += f" (95% interval {band.low:+.2f} to {band.high:+.2f})"
            parts.append(
                f'<path class="errbar" d="M{lo:.1f} {mid:.1f}H{hi:.1f}M{lo:.1f} {mid - 4:.1f}V{mid + 4:.1f}'
                f'M{hi:.1f} {mid - 4:.1f}V{mid + 4:.1f}" stroke="{color}" stroke-width="1.5" fill="none"/>'
            )
        parts.append(
            f'<circle class="dot" cx="{x(band.diff):.1f}" cy="{mid:.1f}" r="4" fill="{color}">'
            f"<title>{_text(tip)}; {_text(band.verdict)}</title></circle>"
        )
        parts.append(
            f'<text x="{label_w + plot_w + 8}" y="{mid + 4:.1f}" style="fill:{color}">'
            f"{band.diff:+.2f} · {_text(band.verdict)}</text>"
        )
    parts.append("</svg>")
    note = ""
    if len(bands) > len(shown):
        note = f'<p class="note">First {len(shown)} of {len(bands)} rows shown.</p>'
    return f'<h3>{_text(title)}</h3>{"".join(parts)}{note}'
