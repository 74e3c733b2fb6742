"""The one way to select an org's request logs: the API and the pages share it.

Everything starts from `RequestLog.objects.filter(org=org)`, so a filter can
narrow an org's logs but never reach another org's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Avg, Case, Count, F, FloatField, Q, QuerySet, Sum, When
from django.utils import timezone

from .models import RequestLog
from .pricing import UNPRICED

# Exact-match filters offered everywhere (API parameters and explorer fields).
EXACT_FILTERS = ("user_id", "session_id", "model", "provider", "status", "cache_hit", "request_name",
                 "prompt_id", "prompt_version")

# Time ranges the pages offer; the metrics default to the first one listed as default.
RANGES = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
DEFAULT_RANGE = "24h"


# Status 0 means no answer reached the client; 4xx and 5xx are errors too.
ERROR_Q = Q(status__gte=400) | Q(status__lt=200)
# A shadow-mode semantic candidate's similarity (null for every other log).
SHADOW_SIMILARITY = Case(When(cache_match="shadow", then=F("similarity")), default=None, output_field=FloatField())


class FilterError(ValueError):
    """A filter that cannot be applied; the message names the parameter."""


class TooSlow(Exception):
    """The raw rows could not answer within the time budget (the rollups could not answer)."""

    def __init__(self, seconds: float):
        super().__init__(f"This combination of filters is not kept in the rollups, and reading the raw logs took "
                         f"longer than {seconds:g} s: narrow the time range or use one filter at a time.")


@dataclass
class Selection:
    """An org's logs in a time range, narrowed by exact filters, properties and body text: what
    the aggregates (analytics.metrics) answer from the rollups when they can, else from `qs`."""

    org: Any
    start: datetime | None = None
    end: datetime | None = None
    filters: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    search: str = ""

    def __post_init__(self) -> None:
        filters = {name: value for name, value in self.filters.items() if value is not None}
        self.start = filters.pop("created_after", None) or self.start
        self.end = filters.pop("created_before", None) or self.end
        self.filters = filters
        self.qs  # noqa: B018  a bad filter is refused now, as logs_for refuses it

    @property
    def qs(self) -> QuerySet[RequestLog]:
        bounds = {"created_after": self.start, "created_before": self.end}
        return logs_for(self.org, {**self.filters, **bounds}, self.properties, self.search)


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def check_property_name(name: str, param: str) -> str:
    if not name or "__" in name or len(name) > 200:
        raise FilterError(f"Invalid property filter {param!r}: name it as property.<Name>")
    return name


def logs_for(
    org,
    filters: dict[str, Any] | None = None,
    properties: dict[str, str] | None = None,
    search: str = "",
) -> QuerySet[RequestLog]:
    """The org's logs narrowed by exact filters, a created_at window, custom properties and body text."""
    qs = RequestLog.objects.filter(org=org)
    for name, value in (filters or {}).items():
        if value is None:
            continue
        if name == "created_after":
            qs = qs.filter(created_at__gte=value)
        elif name == "created_before":
            qs = qs.filter(created_at__lt=value)
        elif name in EXACT_FILTERS:
            qs = qs.filter(**{name: _no_nul(value, name)})
        else:
            raise FilterError(f"Unknown filter {name!r}")
    for name, value in (properties or {}).items():
        check_property_name(_no_nul(name, f"property.{name!r}"), f"property.{name}")
        value = _no_nul(value, f"property.{name}")
        if is_postgres():
            # Containment uses the GIN index on properties; `properties__Name=` would not.
            qs = qs.filter(properties__contains={name: value})
        else:
            qs = qs.filter(**{f"properties__{name}": value})
    if search:
        _no_nul(search, "search")
        # ILIKE over the bodies within the time window; on PostgreSQL operators can add
        # trigram indexes with `manage.py body_search_index --enable` for long ranges.
        qs = qs.filter(Q(request_body__icontains=search) | Q(response_body__icontains=search))
    return qs


def _no_nul(value: Any, param: str) -> Any:
    # PostgreSQL text cannot hold NUL: a filter with one would be a database error (500).
    if isinstance(value, str) and "\x00" in value:
        raise FilterError(f"Invalid {param}: contains a NUL character")
    return value


def window(range_key: str | None, now: datetime | None = None) -> tuple[str, datetime, datetime]:
    """(key, start, end) for one of RANGES; unknown keys fall back to the default."""
    key = range_key if range_key in RANGES else DEFAULT_RANGE
    end = now or timezone.now()
    return key, end - RANGES[key], end


# The longest custom range (from/to). The presets stop at 30 days, but the rollups keep days and
# weeks for as long as the logs are kept, so a year and a bit (a year-on-year view) stays cheap.
MAX_CUSTOM_RANGE = timedelta(days=400)
_EPOCH = re.compile(r"-?\d+(\.\d+)?")
# "+02:00" typed into a URL arrives as " 02:00" (a "+" in a query string is a space).
_SPACED_OFFSET = re.compile(r"(\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}(?::?\d{2})?)$")


class RangeError(ValueError):
    """A custom time range that cannot be read; the message names the parameter (from or to)."""


@dataclass(frozen=True)
class TimeRange:
    """The time range a page shows: a preset (`range`), or custom bounds (`from`, `to`) as given."""

    key: str  # a key of RANGES, or "custom"
    start: datetime
    end: datetime
    given_from: str = ""
    given_to: str = ""

    @property
    def custom(self) -> bool:
        return self.key == "custom"

    @property
    def query(self) -> dict[str, str]:
        """The URL parameters that select this range again (what links carry)."""
        if not self.custom:
            return {"range": self.key}
        return {name: value for name, value in (("from", self.given_from), ("to", self.given_to)) if value}


def parse_instant(value: str, param: str) -> datetime:
    """An ISO 8601 time (no zone: UTC) or epoch seconds, or milliseconds for numbers above 1e11."""
    text = value.strip()
    try:
        if _EPOCH.fullmatch(text):
            number = float(text)
            return datetime.fromtimestamp(number / 1000 if abs(number) > 1e11 else number, tz=UTC)
        parsed = datetime.fromisoformat(_SPACED_OFFSET.sub(r"\1+\2", text))
        parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        parsed - RANGES[DEFAULT_RANGE]  # noqa: B018  a time too close to year 1 to subtract a range from
    except (ValueError, OverflowError, OSError):
        raise RangeError(f"Invalid {param!r}: {value[:40]!r} is neither an ISO 8601 time (2026-12-06T14:00Z, "
                         f"no zone is UTC) nor epoch seconds or milliseconds") from None
    return parsed


def time_range(params: Mapping[str, str], now: datetime | None = None) -> TimeRange:
    """The range a page's URL asks for: `from`/`to` win over the preset `range`. `to` missing is now;
    `from` missing is the default range's length before `to`. Empty values count as missing (a
    form's empty inputs)."""
    given_from, given_to = (params.get("from") or "").strip(), (params.get("to") or "").strip()
    if not given_from and not given_to:
        key, start, end = window(params.get("range"), now)
        return TimeRange(key, start, end)
    end = parse_instant(given_to, "to") if given_to else (now or timezone.now())
    start = parse_instant(given_from, "from") if given_from else end - RANGES[DEFAULT_RANGE]
    if start >= end:
        raise RangeError(f"Invalid 'from': it must be before 'to' ({utc_label(start)} is not before {utc_label(end)})")
    if end - start > MAX_CUSTOM_RANGE:
        raise RangeError(f"Invalid 'from'/'to': a custom range is at most {MAX_CUSTOM_RANGE.days} days "
                         f"(this one is {(end - start).days} days)")
    return TimeRange("custom", start, end, given_from, given_to)


def utc_label(moment: datetime) -> str:
    """The one format the pages show a range's bounds in: 2026-12-06 14:00 UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


class PromptUsage:
    """The prompt pages' usage figures (prompts.usage), from the logs' (org, prompt_id) index."""

    @staticmethod
    def prompt_request_counts(org, slugs: list[str]) -> dict[str, int]:
        return dict(
            RequestLog.objects.filter(org=org, prompt_id__in=slugs)
            .values_list("prompt_id").annotate(n=Count("id")).values_list("prompt_id", "n")
        )

    @staticmethod
    def prompt_version_stats(org, slug: str) -> dict[int | None, dict[str, Any]]:
        rows = (
            RequestLog.objects.filter(org=org, prompt_id=slug)
            .values("prompt_version")
            .annotate(requests=Count("id"), cost=Sum("cost_usd"), latency=Avg("latency_ms"),
                      unpriced=Count("id", filter=UNPRICED & ~ERROR_Q))  # as the rollups count it
        )
        return {row["prompt_version"]: row for row in rows}
