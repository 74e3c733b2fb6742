"""The one way to select an org's request logs: the API and the pages share it.

Everything starts from `RequestLog.objects.filter(org=org)`, so a filter can
narrow an org's logs but never reach another org's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
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
    # The explorer's filter builder (AND/OR conditions on columns and properties); the aggregates
    # never receive them (rollups.condition does not read them).
    conditions: Conditions | None = None

    def __post_init__(self) -> None:
        filters = {name: value for name, value in self.filters.items() if value is not None}
        self.start = filters.pop("created_after", None) or self.start
        self.end = filters.pop("created_before", None) or self.end
        self.filters = filters
        self.qs  # noqa: B018  a bad filter is refused now, as logs_for refuses it

    @property
    def qs(self) -> QuerySet[RequestLog]:
        bounds = {"created_after": self.start, "created_before": self.end}
        return logs_for(self.org, {**self.filters, **bounds}, self.properties, self.search, self.conditions)


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
    conditions: Conditions | None = None,
) -> QuerySet[RequestLog]:
    """The org's logs narrowed by exact filters, a created_at window, custom properties, body text
    and the explorer's conditions (ANDed with the rest, so an OR stays inside the time range)."""
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
    if conditions:
        qs = conditions.apply(qs)
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


# --- The explorer's filter builder: conditions on columns and properties (issue #22 item 3) ---------
#
# In the URL each condition is one `f` parameter, `<field>:<op>:<value>` (`f=latency_ms:gt:1000`,
# `f=property.Env:ne:prod`), and `join=or` combines them with OR (AND by default). The simple
# parameters (`model=`, `status=error`, `prop_key=`/`prop_value=`...) keep working and are ANDed
# with the conditions; the time range bounds all of them.

TEXT, NUMBER, BOOL = "text", "number", "bool"
# Field -> (kind, label). `status` is a number that also takes the value "error" (= / ≠ only).
CONDITION_FIELDS: dict[str, tuple[str, str]] = {
    "model": (TEXT, "Model"),
    "provider": (TEXT, "Provider"),
    "status": (NUMBER, "Status"),
    "user_id": (TEXT, "User"),
    "session_id": (TEXT, "Session"),
    "request_name": (TEXT, "Request name"),
    "path": (TEXT, "Path"),
    "cache_hit": (BOOL, "Cache hit"),
    "source": (TEXT, "Source"),
    "prompt_id": (TEXT, "Prompt"),
    "latency_ms": (NUMBER, "Latency (ms)"),
    "ttft_ms": (NUMBER, "Time to first token (ms)"),
    "cost_usd": (NUMBER, "Cost (USD)"),
    "prompt_tokens": (NUMBER, "Prompt tokens"),
    "completion_tokens": (NUMBER, "Completion tokens"),
    "total_tokens": (NUMBER, "Total tokens"),
}
PROPERTY_FIELD = "property."
OPERATORS = {"eq": "=", "ne": "≠", "contains": "contains", "gt": ">", "lt": "<"}
OPERATORS_BY_KIND = {TEXT: ("eq", "ne", "contains"), NUMBER: ("eq", "ne", "gt", "lt"), BOOL: ("eq", "ne")}
MAX_CONDITIONS = 20
_CONDITION = re.compile(r"(.+?):(eq|ne|contains|gt|lt):(.*)", re.DOTALL)
_TRUE, _FALSE = ("true", "1", "yes", "hit"), ("false", "0", "no", "miss")
# Total tokens as the explorer's Tokens column counts them (a missing count is 0).
TOTAL_TOKENS_ALIAS = "filter_total_tokens"
_INTEGER_FIELDS = ("status", "prompt_tokens", "completion_tokens", "total_tokens")


@dataclass(frozen=True)
class Condition:
    field: str  # a key of CONDITION_FIELDS, or "property.<Name>"
    op: str  # a key of OPERATORS
    text: str  # the value as given
    value: Any  # the value as compared: str, float, Decimal, bool, or "error" for status

    @property
    def kind(self) -> str:
        return TEXT if self.is_property else CONDITION_FIELDS[self.field][0]

    @property
    def is_property(self) -> bool:
        return self.field.startswith(PROPERTY_FIELD)

    @property
    def property_name(self) -> str:
        return self.field[len(PROPERTY_FIELD):]

    @property
    def param(self) -> str:
        """The `f` parameter that gives this condition again."""
        return f"{self.field}:{self.op}:{self.text}"

    @property
    def label(self) -> str:
        name = f"property {self.property_name}" if self.is_property else CONDITION_FIELDS[self.field][1]
        return f"{name} {OPERATORS[self.op]} {self.text if self.text != '' else '(empty)'}"

    def _column_q(self) -> Q:
        column = TOTAL_TOKENS_ALIAS if self.field == "total_tokens" else self.field
        if self.field == "status" and self.value == "error":
            return ERROR_Q if self.op == "eq" else ~ERROR_Q
        if self.op == "contains":
            return Q(**{f"{column}__icontains": self.value})
        if self.op == "gt":
            return Q(**{f"{column}__gt": self.value})
        if self.op == "lt":
            return Q(**{f"{column}__lt": self.value})
        if self.field in _INTEGER_FIELDS and isinstance(self.value, float):
            equal = Q(pk__in=[])  # no whole count equals 10.5 (Django would compare with 10)
        else:
            equal = Q(**{column: self.value})
        # ≠ keeps the logs without a value (no latency, no cost): "not 100 ms" includes "not measured",
        # as ClickHouse is asked (analytics.clickhouse.reads).
        return equal if self.op == "eq" else ~equal

    def property_alias(self, index: int) -> tuple[str, Any] | None:
        """The annotation a property condition compares (so a property named like a lookup, say
        `contains` or `in`, is still a key): None where PostgreSQL's containment needs none."""
        from django.db.models.fields.json import KeyTextTransform, KeyTransform

        if not self.is_property or (self.op != "contains" and is_postgres()):
            return None
        transform = KeyTextTransform if self.op == "contains" else KeyTransform
        return f"filter_property_{index}", transform(self.property_name, "properties")

    def q(self, alias: str = "") -> Q:
        if self.is_property:
            return self._property_q(alias)
        return self._column_q()

    def _property_q(self, alias: str) -> Q:
        name, value = self.property_name, self.value
        if self.op == "contains":
            return Q(**{f"{alias}__icontains": value})
        # A property sent as a number (Plan: 3) equals its text ("3"), as in ClickHouse's map of texts.
        number = _json_number(value)
        if is_postgres():
            # Containment uses the GIN index on properties; `properties__Name=` would not.
            equal = Q(properties__contains={name: value})
            if number is not None:
                equal |= Q(properties__contains={name: number})
            return equal if self.op == "eq" else ~equal
        equal = Q(**{alias: value})
        if number is not None:
            equal |= Q(**{alias: number})
        # On SQLite a missing key compares as NULL: "≠" counts a log without the property, as PostgreSQL's
        # NOT containment and ClickHouse do.
        return equal if self.op == "eq" else (~equal | ~Q(properties__has_key=name))


@dataclass(frozen=True)
class Conditions:
    items: tuple[Condition, ...] = ()
    any_of: bool = False  # OR (else AND)

    def __bool__(self) -> bool:
        return bool(self.items)

    @property
    def join(self) -> str:
        return "or" if self.any_of else "and"

    def apply(self, qs: QuerySet[RequestLog]) -> QuerySet[RequestLog]:
        if not self.items:
            return qs
        if any(c.field == "total_tokens" for c in self.items):
            from django.db.models.functions import Coalesce

            qs = qs.alias(**{TOTAL_TOKENS_ALIAS: Coalesce("prompt_tokens", 0) + Coalesce("completion_tokens", 0)})
        combined = Q()
        for index, condition in enumerate(self.items):
            alias = condition.property_alias(index)
            if alias:
                qs = qs.alias(**{alias[0]: alias[1]})
            q = condition.q(alias[0] if alias else "")
            combined = (combined | q) if self.any_of and combined else (combined & q)
        return qs.filter(combined)


def parse_condition(text: str) -> Condition:
    """One `f` parameter, `<field>:<op>:<value>`; FilterError naming what is wrong."""
    shown = text if len(text) <= 80 else text[:77] + "…"
    match = _CONDITION.fullmatch(text)
    if not match:
        raise FilterError(f"Invalid condition {shown!r}: write it as field:op:value, op one of "
                          f"{', '.join(OPERATORS)} (e.g. latency_ms:gt:1000)")
    field_name, op, raw = match.group(1).strip(), match.group(2), match.group(3)
    _no_nul(text, f"condition {shown!r}")
    if field_name.startswith(PROPERTY_FIELD):
        check_property_name(field_name[len(PROPERTY_FIELD):], f"condition {shown!r}")
        kind = TEXT
    elif field_name in CONDITION_FIELDS:
        kind = CONDITION_FIELDS[field_name][0]
    else:
        raise FilterError(f"Invalid condition {shown!r}: unknown field {field_name!r} (one of "
                          f"{', '.join(CONDITION_FIELDS)}, or property.<Name>)")
    if op not in OPERATORS_BY_KIND[kind]:
        allowed = ", ".join(f"{OPERATORS[o]} ({o})" for o in OPERATORS_BY_KIND[kind])
        raise FilterError(f"Invalid condition {shown!r}: {field_name} takes {allowed}")
    value: Any = raw
    if kind == BOOL:
        lowered = raw.strip().lower()
        if lowered not in _TRUE + _FALSE:
            raise FilterError(f"Invalid condition {shown!r}: {field_name} is true or false")
        value = lowered in _TRUE
    elif kind == NUMBER:
        if field_name == "status" and raw.strip().lower() == "error" and op in ("eq", "ne"):
            value = "error"
        else:
            try:
                number = Decimal(raw.strip())
                if not number.is_finite():
                    raise InvalidOperation
            except (InvalidOperation, ValueError):
                extra = " or 'error'" if field_name == "status" else ""
                raise FilterError(f"Invalid condition {shown!r}: {field_name} compares with a number{extra}, "
                                  f"not {raw[:40]!r}") from None
            if abs(number) > Decimal("1e15"):
                raise FilterError(f"Invalid condition {shown!r}: {raw[:40]!r} is too large")
            if field_name == "cost_usd":
                value = number
            elif field_name in _INTEGER_FIELDS and number == number.to_integral_value():
                value = int(number)
            else:
                value = float(number)
    return Condition(field_name, op, raw, value)


def parse_conditions(params: Mapping[str, Any]) -> Conditions:
    """The conditions of a URL (`f`, repeated, and `join`); FilterError naming the first bad one."""
    texts = params.getlist("f") if hasattr(params, "getlist") else list(params.get("f") or [])
    join = (params.get("join") or "and").strip().lower()
    if join not in ("and", "or"):
        raise FilterError(f"Invalid 'join': {join[:20]!r} (and, or)")
    if len(texts) > MAX_CONDITIONS:
        raise FilterError(f"Too many conditions: {len(texts)} (at most {MAX_CONDITIONS})")
    return Conditions(tuple(parse_condition(text) for text in texts if text != ""), any_of=join == "or")


def _json_number(text: str) -> int | float | None:
    """The JSON number a property value's text stands for ("3", "2.5"), else None."""
    if not re.fullmatch(r"-?(0|[1-9]\d{0,15})(\.\d{1,15})?", text):
        return None
    number = float(text)
    return int(number) if "." not in text else number
