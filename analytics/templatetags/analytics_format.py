"""Formatting and small facts the analytics templates share."""

from __future__ import annotations

from django import template

from .. import alerts, charts

register = template.Library()


@register.filter
def usd(value) -> str:
    """A cost tile's figure: `$1,234.50`, `$0.0042` below a cent (never `$0.00` for a real cost),
    `$0.00` for nothing spent and `–` for no figure."""
    if value is None or value == "":
        return "–"
    if float(value) == 0:
        return "$0.00"
    return charts.usd(value)


@register.simple_tag
def open_alert_count(org) -> int:
    """The org's open (unresolved) alerts, for the badge in the org navigation."""
    return alerts.open_count(org.pk)


@register.filter
def duration(value) -> str:
    """A span of time for people: `350 ms`, `3.2 s`, `45 s`, `4 min 5 s`, `1 h 4 min`, `2 d 3 h`;
    `–` for none. Takes seconds or a timedelta."""
    return humane_duration(value)


def humane_duration(value) -> str:
    if value is None or value == "":
        return "–"
    seconds = value.total_seconds() if hasattr(value, "total_seconds") else float(value)
    if seconds < 0:
        return "–"
    if seconds < 1:
        return f"{round(seconds * 1000)} ms" if seconds else "0 s"
    if seconds < 9.95:  # 9.96 reads as "10 s", not "10.0 s"
        return f"{seconds:.1f} s"
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole} s"
    for unit, size, smaller, smaller_size in (("d", 86400, "h", 3600), ("h", 3600, "min", 60), ("min", 60, "s", 1)):
        if whole >= size:
            big, rest = divmod(whole, size)
            small = rest // smaller_size
            return f"{big} {unit} {small} {smaller}" if small else f"{big} {unit}"
    return f"{whole} s"
