"""Aggregates over request logs, computed in the database.

Percentiles follow one definition everywhere: linear interpolation between the
two nearest ranks, like PostgreSQL's `percentile_cont` (and Python's
`statistics.quantiles(method="inclusive")`). PostgreSQL computes them in SQL;
SQLite has no such aggregate, so there we read the sorted column of the
(already filtered, time-bounded) rows and interpolate in Python.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models import Aggregate, Count, F, FloatField, Q, QuerySet, Sum
from django.db.models.fields.json import KT, KeyTextTransform
from django.db.models.functions import TruncDay, TruncHour, TruncMinute

from . import clickhouse, rollup_reads
from .pricing import UNPRICED
from .queries import (
    ERROR_Q,
    SHADOW_SIMILARITY,
    FilterError,
    Selection,
    TooSlow,
    check_property_name,
    is_postgres,
)

GROUP_BY_ERROR = "group_by must be model, provider, user, prompt, cache_match, shadow_similarity or property:<Name>"

__all__ = ["ERROR_Q", "TooSlow", "summary", "grouped", "group_by", "timeseries"]


@contextmanager
def budget(seconds: float | None):
    """Run raw-row aggregates for at most `seconds` (None: no limit); TooSlow past it."""
    if not seconds:
        yield
        return
    if is_postgres():
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SHOW statement_timeout")
                before = cursor.fetchone()[0]
                cursor.execute("SELECT set_config('statement_timeout', %s, true)", [f"{int(seconds * 1000)}ms"])
                yield
                cursor.execute("SELECT set_config('statement_timeout', %s, true)", [before])
        except OperationalError as exc:
            if "statement timeout" in str(exc):
                raise TooSlow(seconds) from None
            raise
        return
    connection.ensure_connection()
    deadline = time.monotonic() + seconds
    raw = connection.connection
    raw.set_progress_handler(lambda: time.monotonic() > deadline, 20_000)
    try:
        yield
    except OperationalError as exc:
        if "interrupted" in str(exc):
            raise TooSlow(seconds) from None
        raise
    finally:
        raw.set_progress_handler(None, 0)


def _raw_budget() -> float | None:
    return getattr(settings, "ANALYTICS_RAW_BUDGET_SECONDS", None)

# name -> (column, fraction)
PERCENTILES: dict[str, tuple[str, float]] = {
    "latency_p50_ms": ("latency_ms", 0.50),
    "latency_p95_ms": ("latency_ms", 0.95),
    "latency_p99_ms": ("latency_ms", 0.99),
    "ttft_p50_ms": ("ttft_ms", 0.50),
}

INTERVALS = {
    "minute": (TruncMinute, timedelta(minutes=1)),
    "hour": (TruncHour, timedelta(hours=1)),
    "day": (TruncDay, timedelta(days=1)),
}
MAX_BUCKETS = 5000


class PercentileCont(Aggregate):
    """PostgreSQL's ordered-set aggregate `percentile_cont(f) WITHIN GROUP (ORDER BY expr)`."""

    function = "percentile_cont"
    name = "PercentileCont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, fraction: float, **extra):
        if not 0 <= fraction <= 1:
            raise ValueError("fraction must be within [0, 1]")
        super().__init__(expression, fraction=repr(float(fraction)), **extra)


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """percentile_cont over values already sorted ascending; None for no values."""
    if not sorted_values:
        return None
    position = fraction * (len(sorted_values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def _base_aggregates() -> dict[str, Any]:
    return {
        # Count a column of the covering (org, created_at) index, never "id": on PostgreSQL
        # that keeps the aggregate an index-only scan (created_at is never null).
        "count": Count("created_at"),
        "errors": Count("created_at", filter=ERROR_Q),
        "cost_usd": Sum("cost_usd"),
        "prompt_tokens": Sum("prompt_tokens"),
        "completion_tokens": Sum("completion_tokens"),
        "cache_hits": Count("created_at", filter=Q(cache_hit=True)),
        # A cache hit is stored with the cost the provider call would have had.
        "saved_usd": Sum("cost_usd", filter=Q(cache_hit=True)),
        "unpriced": Count("created_at", filter=UNPRICED & ~ERROR_Q),
    }


def _percentile_aggregates(names=None) -> dict[str, Any]:
    return {name: PercentileCont(column, fraction) for name, (column, fraction) in PERCENTILES.items()
            if names is None or name in names}


def _prefixed(aggregates: dict[str, Any]) -> dict[str, Any]:
    # annotate() refuses aliases that shadow model fields (cost_usd, prompt_tokens...).
    return {f"m_{name}": aggregate for name, aggregate in aggregates.items()}


def _finish(row: dict[str, Any]) -> dict[str, Any]:
    """Database aggregates -> the JSON-friendly metrics shape."""
    row = {name[2:] if name.startswith("m_") else name: value for name, value in row.items()}
    count = row.get("count") or 0
    out = {
        "count": count,
        "errors": row.get("errors") or 0,
        "error_rate": (row.get("errors") or 0) / count if count else 0.0,
        "cost_usd": float(row.get("cost_usd") or Decimal(0)),
        "prompt_tokens": int(row.get("prompt_tokens") or 0),
        "completion_tokens": int(row.get("completion_tokens") or 0),
        "cache_hits": row.get("cache_hits") or 0,
        "saved_usd": float(row.get("saved_usd") or Decimal(0)),
        "unpriced": row.get("unpriced") or 0,
    }
    out["total_tokens"] = out["prompt_tokens"] + out["completion_tokens"]
    out["cache_hit_rate"] = out["cache_hits"] / count if count else 0.0
    for name in PERCENTILES:
        value = row.get(name)
        out[name] = None if value is None else round(float(value), 3)
    return out


def summary(source: QuerySet | Selection, *, percentiles: tuple[str, ...] | None = None,
            limit_seconds: float | None = -1) -> dict[str, Any]:
    """count, error_rate, cost_usd, tokens, latency/TTFT percentiles, cache hits of the selected
    logs: from the rollups when they can answer a Selection, else from the rows under a time
    budget (TooSlow past it; `limit_seconds` None: no limit)."""
    if isinstance(source, Selection):
        answer = rollup_reads.summary(source, percentiles)
        if answer is not None:
            return answer
        with budget(_raw_budget() if limit_seconds == -1 else limit_seconds):
            return _raw_summary(source.qs)
    return _raw_summary(source)


def _raw_summary(qs: QuerySet) -> dict[str, Any]:
    aggregates = _base_aggregates()
    if is_postgres():
        aggregates.update(_percentile_aggregates())
        return _finish(qs.aggregate(**_prefixed(aggregates)))
    row = qs.aggregate(**_prefixed(aggregates))
    for column in {column for column, _ in PERCENTILES.values()}:
        values = list(qs.filter(**{f"{column}__isnull": False}).order_by(column).values_list(column, flat=True))
        for name, (col, fraction) in PERCENTILES.items():
            if col == column:
                row[name] = percentile(values, fraction)
    return _finish(row)


def group_key(group_by: str):
    """The expression a `group_by` value groups on."""
    simple = {"model": F("model"), "provider": F("provider"), "user": F("user_id"), "prompt": F("prompt_id"),
              "cache_match": F("cache_match"), "shadow_similarity": SHADOW_SIMILARITY}
    if group_by in simple:
        return simple[group_by]
    if group_by.startswith("property:"):
        name = check_property_name(group_by[len("property:") :], group_by)
        return KT(f"properties__{name}")
    raise FilterError(GROUP_BY_ERROR)


def grouped(source: QuerySet | Selection, key, *, order_by: str = "-count", limit: int | None = None,
            exclude_empty: bool = False, with_percentiles: bool = True,
            percentiles: tuple[str, ...] | None = None, limit_seconds: float | None = -1) -> list[dict[str, Any]]:
    """The metrics per value of `key` (a `group_by` name, or an expression over the rows), as
    [{"key": ..., "count": ..., ...}]: from the rollups when they can answer a Selection.

    `percentiles` narrows which of PERCENTILES are computed (None: all).
    """
    if isinstance(key, str):
        dim = group_dim(key)
        if isinstance(source, Selection):
            answer = rollup_reads.grouped(source, dim, order_by=order_by, limit=limit, exclude_empty=exclude_empty,
                                          percentiles=percentiles if with_percentiles else ())
            if answer is not None:
                return [{name: value for name, value in row.items() if name not in rollup_reads.EXTRAS}
                        for row in answer]
        key = group_key(key)
    if isinstance(source, Selection):
        with budget(_raw_budget() if limit_seconds == -1 else limit_seconds):
            return _raw_grouped(source.qs, key, order_by=order_by, limit=limit, exclude_empty=exclude_empty,
                                with_percentiles=with_percentiles, percentiles=percentiles)
    return _raw_grouped(source, key, order_by=order_by, limit=limit, exclude_empty=exclude_empty,
                        with_percentiles=with_percentiles, percentiles=percentiles)


def distinct_count(selection: Selection, group_by: str, *, limit_seconds: float | None = -1) -> int:
    """How many values of a `group_by` (users, say) the selection's logs have, "" left out."""
    answer = rollup_reads.distinct_count(selection, group_dim(group_by))
    if answer is not None:
        return answer
    key = group_key(group_by)
    with budget(_raw_budget() if limit_seconds == -1 else limit_seconds):
        return (selection.qs.annotate(group_key=key).exclude(group_key="").exclude(group_key=None)
                .order_by().values("group_key").distinct().count())


def group_dim(group_by: str) -> str:
    """The rollup dimension of a `group_by` value."""
    if group_by.startswith("property:"):
        return rollup_reads.PROPERTY_PREFIX + check_property_name(group_by[len("property:"):], group_by)
    if group_by in rollup_reads.GROUP_DIMS:
        return rollup_reads.GROUP_DIMS[group_by]
    raise FilterError(GROUP_BY_ERROR)


def _raw_grouped(qs: QuerySet, key, *, order_by: str = "-count", limit: int | None = None,
                 exclude_empty: bool = False, with_percentiles: bool = True,
                 percentiles: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    qs = qs.annotate(group_key=key)
    if exclude_empty:
        qs = qs.exclude(group_key__isnull=True)
        if not isinstance(key, KeyTextTransform):  # SQLite reads "" there as malformed JSON
            qs = qs.exclude(group_key="")
    aggregates = _base_aggregates()
    if is_postgres() and with_percentiles:
        aggregates.update(_percentile_aggregates(percentiles))
    column = order_by.lstrip("-")
    column = column if column == "group_key" else f"m_{column}"
    ordering = F(column).desc(nulls_last=True) if order_by.startswith("-") else F(column).asc()
    rows = qs.values("group_key").annotate(**_prefixed(aggregates)).order_by(ordering, "group_key")
    if limit:
        rows = rows[:limit]
    rows = list(rows)
    if not is_postgres() and rows and with_percentiles:
        _sqlite_group_percentiles(qs, rows)
    return [{"key": row.pop("group_key"), **_finish(row)} for row in rows]


def _sqlite_group_percentiles(qs: QuerySet, rows: list[dict[str, Any]]) -> None:
    # The rows are already bounded by a time window; one ordered pass per column.
    subset = qs
    for column in {column for column, _ in PERCENTILES.values()}:
        values: dict[Any, list[float]] = defaultdict(list)
        pairs = (subset.filter(**{f"{column}__isnull": False}).order_by(column)
                 .values_list("group_key", column))
        for group, value in pairs.iterator(chunk_size=5000):
            values[group].append(value)
        for row in rows:
            for name, (col, fraction) in PERCENTILES.items():
                if col == column:
                    row[f"m_{name}"] = percentile(values.get(row["group_key"], []), fraction)


def group_by(source: QuerySet | Selection, group_by: str, limit: int = 100) -> list[dict[str, Any]]:
    return grouped(source, group_by, limit=limit)


def timeseries(qs: QuerySet | Selection, interval: str, start: datetime, end: datetime,
               *, fill: bool = False, percentiles: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Metrics per `interval` bucket between start and end (oldest first)."""
    _check_buckets(interval, start, end)
    trunc = INTERVALS[interval][0]
    answer = rollup_reads.timeseries(qs, interval, start, end, percentiles) if isinstance(qs, Selection) else None
    if answer is not None:
        buckets = [{"time": moment, **row} for moment, row in answer.items()]
    else:
        buckets = grouped(qs, trunc("created_at", tzinfo=dt_timezone.utc), order_by="group_key",
                          percentiles=percentiles)
        for bucket in buckets:
            bucket["time"] = _as_utc(bucket.pop("key"))
    return _filled(buckets, interval, start, end) if fill else buckets


def _filled(buckets: list[dict[str, Any]], interval: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Every bucket between start and end, those without logs with zeros."""
    by_time = {bucket["time"]: bucket for bucket in buckets}
    filled = []
    current = _floor(start, interval)
    while current < end:
        filled.append(by_time.get(current) or {"time": current, **_finish({})})
        current += INTERVALS[interval][1]
    return filled


def summary_and_timeseries(selection: Selection, interval: str, *, fill: bool = False,
                           percentiles: tuple[str, ...] | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """summary(selection) and timeseries(selection, interval, its start, its end): with ClickHouse
    in one query (a page's queries cost more by their number than by what they read there)."""
    if not clickhouse.enabled() or selection.start is None or selection.end is None:
        return summary(selection), timeseries(selection, interval, selection.start, selection.end, fill=fill,
                                              percentiles=percentiles)
    from .clickhouse import reads

    _check_buckets(interval, selection.start, selection.end)
    totals, answer = reads.summary_and_timeseries(selection, interval, percentiles)
    buckets = [{"time": moment, **row} for moment, row in answer.items()]
    return totals, _filled(buckets, interval, selection.start, selection.end) if fill else buckets


@dataclass(frozen=True)
class Grouping:
    """One question of grouped_many: grouped() without percentiles, and with `count_values` how
    many values other than "" there are in all (distinct_count)."""

    group_by: str
    order_by: str = "-count"
    limit: int | None = None
    exclude_empty: bool = False
    count_values: bool = False


def grouped_many(selection: Selection, groupings: list[Grouping]) -> list[tuple[list[dict[str, Any]], int | None]]:
    """grouped() (and distinct_count()) of several group_by values of one selection, as (rows,
    count of values or None): with ClickHouse in one query where the rollups answer them all."""
    if clickhouse.enabled():
        from .clickhouse import reads

        answer = reads.grouped_many(selection, [(group_dim(g.group_by), g.order_by, g.limit, g.exclude_empty)
                                                for g in groupings])
        if answer is not None:
            return [(rows, count if g.count_values else None) for g, (rows, count) in zip(groupings, answer)]
    return [(grouped(selection, g.group_by, order_by=g.order_by, limit=g.limit, exclude_empty=g.exclude_empty,
                     with_percentiles=False),
             distinct_count(selection, g.group_by) if g.count_values else None) for g in groupings]


def _check_buckets(interval: str, start: datetime, end: datetime) -> None:
    if interval not in INTERVALS:
        raise FilterError("interval must be minute, hour or day")
    if (end - start) / INTERVALS[interval][1] > MAX_BUCKETS:
        raise FilterError(f"Too many {interval} buckets: narrow the time range or use a longer interval")


def _as_utc(value) -> datetime:
    if isinstance(value, str):  # SQLite returns text for truncated datetimes in values()
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt_timezone.utc)
    return value.astimezone(dt_timezone.utc)


def _floor(moment: datetime, interval: str) -> datetime:
    moment = moment.astimezone(dt_timezone.utc).replace(second=0, microsecond=0)
    if interval in ("hour", "day"):
        moment = moment.replace(minute=0)
    if interval == "day":
        moment = moment.replace(hour=0)
    return moment


def pick_interval(span: timedelta) -> str:
    """A bucket size that gives a readable number of points for a page chart."""
    if span <= timedelta(hours=2):
        return "minute"
    if span <= timedelta(days=3):
        return "hour"
    return "day"
