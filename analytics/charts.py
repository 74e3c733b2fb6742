"""The pages' charts: server-rendered SVG, and the same data for the charting library.

`line_chart` and `column_chart` return SVG markup (marked safe; every label is
escaped) sized by a viewBox, so the chart scales with its card: what a page
shows with JavaScript off. `figure` pairs that SVG with a `spec`, the same
series as JSON (rendered with json_script), which analytics/static/analytics/
charts.js draws with uPlot (npm, installed by `make`, never a CDN): a hover
crosshair with the values, a click that opens the explorer filtered to the
bucket (and series), a drag that zooms the page to that time range.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

PALETTE = ["#4f46e5", "#0ea5e9", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6"]
WIDTH, HEIGHT = 640, 200
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 12, 26


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 x 10^n at or above value (a readable axis top)."""
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        candidate = step * 10**exponent
        if candidate >= value * 0.999999:
            return candidate
    return 10 ** (exponent + 1)


def number(value: float | None) -> str:
    if value is None:
        return "–"
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if abs(value) >= 10_000:
        return f"{value / 1000:.0f}k"
    if abs(value) >= 1000:
        return f"{value / 1000:.1f}k"
    if value == int(value):
        return str(int(value))
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3g}"


def usd(value: float | None) -> str:
    """Dollars and cents from $0.01 up; below a cent two significant digits ($0.0042), so a
    sub-cent cost never reads as $0.00."""
    if value is None:
        return "–"
    value = float(value)
    if value == 0:
        return "$0"
    if abs(value) < 0.01:
        decimals = 1 - math.floor(math.log10(abs(value)))
        digits = f"{abs(value):.{decimals}f}".rstrip("0")
        return f"{'-' if value < 0 else ''}${digits}"
    return f"${value:,.2f}"


def ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value / 1000:.2f}s" if value >= 1000 else f"{value:.0f}ms"


def _time_label(moment: datetime, span_seconds: float) -> str:
    if span_seconds <= 2 * 86400:
        return moment.strftime("%H:%M")
    return moment.strftime("%b %d")


def _frame(top: float, fmt: Callable[[float], str], times: Sequence[datetime], x_of) -> list[str]:
    parts = []
    plot_h = HEIGHT - TOP - BOTTOM
    for i in range(5):
        value = top * i / 4
        y = TOP + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{escape(fmt(value))}</text>')
    if times:
        span = (times[-1] - times[0]).total_seconds() if len(times) > 1 else 0
        count = len(times)
        for index in sorted({round(k * (count - 1) / 4) for k in range(5)}):
            parts.append(f'<text x="{x_of(index):.1f}" y="{HEIGHT - 6}" class="tick" text-anchor="middle">'
                         f"{escape(_time_label(times[index], span))}</text>")
    return parts


def _svg(parts: list[str], label: str) -> SafeString:
    body = "".join(parts)
    return mark_safe(f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(label)}">'
                     f"{body}</svg>")


def line_chart(times: Sequence[datetime], series: Sequence[tuple[str, Sequence[float | None]]],
               fmt: Callable[[float], str] = number, *, area: bool = False, label: str = "") -> SafeString:
    """Lines (or one filled area) over time; None values leave gaps."""
    values = [v for _, points in series for v in points if v is not None]
    top = nice_ceiling(max(values, default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    count = max(len(times), 1)

    def x_of(i: int) -> float:
        return LEFT + (plot_w * i / (count - 1) if count > 1 else plot_w / 2)

    def y_of(v: float) -> float:
        return TOP + plot_h - plot_h * v / top

    parts = _frame(top, fmt, times, x_of)
    for n, (name, points) in enumerate(series):
        color = PALETTE[n % len(PALETTE)]
        segments, current = [], []
        for i, v in enumerate(points):
            if v is None:
                if current:
                    segments.append(current)
                current = []
            else:
                current.append((x_of(i), y_of(v)))
        if current:
            segments.append(current)
        for segment in segments:
            if len(segment) == 1:  # one bucket (a new org's first hour): a dot, not an invisible line
                parts.append(f'<circle cx="{segment[0][0]:.1f}" cy="{segment[0][1]:.1f}" r="3.5" fill="{color}"/>')
                continue
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in segment)
            if area:
                base = TOP + plot_h
                parts.append(f'<polygon points="{segment[0][0]:.1f},{base} {path} {segment[-1][0]:.1f},{base}" '
                             f'fill="{color}" fill-opacity="0.12"/>')
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2" '
                         f'stroke-linejoin="round"/>')
        for i, v in enumerate(points):
            if v is not None:
                parts.append(f'<circle cx="{x_of(i):.1f}" cy="{y_of(v):.1f}" r="6" class="hit">'
                             f"<title>{escape(name)} {escape(_time_label(times[i], 0))}: {escape(fmt(v))}</title>"
                             "</circle>")
    return _svg(parts, label)


def column_chart(times: Sequence[datetime], stacks: Sequence[tuple[str, Sequence[float]]],
                 fmt: Callable[[float], str] = number, *, label: str = "",
                 colors: Sequence[str] | None = None) -> SafeString:
    """Stacked columns per time bucket (e.g. successful and failed requests)."""
    colors = list(colors or PALETTE)
    totals = [sum(stack[1][i] for stack in stacks) for i in range(len(times))]
    top = nice_ceiling(max(totals, default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    count = max(len(times), 1)
    slot = plot_w / count
    bar = max(slot * 0.72, 1.0)

    def x_of(i: int) -> float:
        return LEFT + slot * i + slot / 2

    parts = _frame(top, fmt, times, x_of)
    for i in range(len(times)):
        base = TOP + plot_h
        tip = ", ".join(f"{name} {fmt(values[i])}" for name, values in stacks)
        group = [f"<title>{escape(_time_label(times[i], 0))}: {escape(tip)}</title>"]
        for n, (_, values) in enumerate(stacks):
            h = plot_h * values[i] / top
            if h > 0:
                base -= h
                group.append(f'<rect x="{x_of(i) - bar / 2:.1f}" y="{base:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                             f'rx="1.5" fill="{colors[n % len(colors)]}"/>')
        group.append(f'<rect x="{x_of(i) - slot / 2:.1f}" y="{TOP}" width="{slot:.1f}" height="{plot_h}" '
                     'fill="transparent"/>')
        parts.append("<g>" + "".join(group) + "</g>")
    return _svg(parts, label)


def bars(items: Sequence[tuple[str, float]], fmt: Callable[[float], str] = number,
         links: Sequence[str] | None = None) -> list[dict]:
    """Rows for a horizontal bar list (rendered in HTML: long labels wrap, values align); `links`, one
    per row ("" for none), make each row a link (the explorer filtered to it)."""
    top = max((value for _, value in items), default=0) or 1
    links = list(links or [])
    return [{"label": label, "value": value, "text": fmt(value), "percent": max(100 * value / top, 0.5),
             "href": links[n] if n < len(links) else ""}
            for n, (label, value) in enumerate(items)]


def percent(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.0f}%" if value >= 1 or value == 0 else f"{value:.1f}%"


# The formats charts.js knows (the same as the functions above, in the browser).
FORMATS: dict[Callable[[float | None], str], str] = {number: "number", usd: "usd", ms: "ms", percent: "percent"}


def figure(kind: str, times: Sequence[datetime], series: Sequence[tuple[str, Sequence[float | None]]],
           fmt: Callable[[float | None], str] = number, *, step: timedelta, label: str = "",
           colors: Sequence[str] | None = None, area: bool = False, explore: str = "",
           explore_params: Sequence[dict[str, str]] | None = None, zoom: bool = False) -> dict[str, Any]:
    """A chart as SVG (`svg`, JavaScript off) and as data for charts.js (`spec`).

    kind: "columns" (stacked per bucket) or "lines". `explore` is the explorer's URL a click opens
    (with the bucket's from/to, the page's other range parameters dropped, and the clicked series'
    `explore_params`, e.g. {"status": "error"}); empty means clicks do nothing. `zoom`: a drag
    reloads the page with that range as from/to."""
    colors = list(colors or PALETTE)
    if kind == "columns":
        svg = column_chart(times, [(name, [v or 0 for v in values]) for name, values in series], fmt,
                           label=label, colors=colors)
    else:
        svg = line_chart(times, series, fmt, area=area, label=label)
    params = list(explore_params or [{} for _ in series])
    spec = {
        "kind": kind,
        "label": label,
        "format": FORMATS.get(fmt, "number"),
        "step": int(step.total_seconds()),
        "times": [int(moment.timestamp()) for moment in times],
        "series": [{"label": name, "color": colors[n % len(colors)],
                    "values": [None if v is None else float(v) for v in values],
                    "params": params[n] if n < len(params) else {}}
                   for n, (name, values) in enumerate(series)],
        "area": area,
        "explore": explore,
        "zoom": zoom,
    }
    return {"svg": svg, "spec": spec}
