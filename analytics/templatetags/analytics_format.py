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
