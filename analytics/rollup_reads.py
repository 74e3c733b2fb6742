"""Aggregates read from the rollups (analytics.rollups), with the raw rows only at the edges.

A range [start, end) is cut into whole weeks, days, hours and minutes (the coarsest that fit,
and only grains the question allows: an hourly chart cannot use days), and the seconds at
either end, which are read from the raw rows. A question about one value of a dimension (kept
per hour, not per minute) reads the partial hours from the raw rows too. A bucket whose values
overflowed its cap, when the question needs one of the folded values, is read from its finer
buckets instead (an overflowing hour from the raw rows).

With CLICKHOUSE_URL, ClickHouse's hourly rollups answer instead (analytics.clickhouse.reads).

Every function returns None when the rollups cannot answer (free-text search, two filters at
once, a filter no rollup keeps, a time before the org's rollups are complete): the caller then
reads the raw rows (analytics.metrics, under a time budget).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from django.db import connection
from django.db.models import CharField, Count, F, Max, Min, Q, QuerySet, Sum, Value
from django.db.models.fields.json import KT
from django.db.models.functions import Coalesce, Concat
from django.utils import timezone

from . import clickhouse
from .models import RequestLog, Rollup
from .pricing import UNPRICED
from .queries import ERROR_Q, SHADOW_SIMILARITY, Selection
from .rollups import (
    ALLTIME,
    ALLTIME_DIMS,
    DIM_COLUMNS,
    EPOCH,
    GRAINS,
    OPEN_END,
    PERCENTILES,
    PROPERTY_PREFIX,
    SHADOW_DIM,
    SPAN_DIMS,
    UNWEEKLY,
    Measures,
    alltime_counted,
    ceil,
    condition,
    covered_from,
    floor,
    measures_of,
    shadow_band,
    typed_key,
    utc,
)
from .sketch import Sketch, add_json

# metrics.group_key names -> rollup dimension.
GROUP_DIMS = {"model": "model", "provider": "provider", "user": "user", "prompt": "prompt",
              "cache_match": "cache_match", "shadow_similarity": SHADOW_DIM}
INTERVAL_GRAINS = {"minute": ("m",), "hour": ("h", "m"), "day": ("d", "h", "m")}
_SCALAR_SUMS = ("requests", "errors", "cache_hits", "unpriced", "prompt_tokens", "completion_tokens",
                "cached_tokens", "cost_usd", "saved_usd")


@dataclass
class Plan:
    org_id: int
    start: datetime
    end: datetime
    dim: str = ""  # the filter's dimension ("" for none)
    value: str = ""
    open_end: bool = False  # the range runs until now: the current buckets are read whole

    def grains(self, dim: str, coarsest: tuple[str, ...] = ("w", "d", "h", "m")) -> tuple[str, ...]:
        return tuple(g for g in coarsest if (g != "m" or dim == "") and (g != "w" or dim not in UNWEEKLY))


def plan(selection: Selection, group_dim: str | None = None) -> Plan | None:
    """How the rollups answer the selection, or None when they cannot."""
    found = condition(selection, group_dim)
    if found is None:
        return None
    dim, value = found
    covered = covered_from(selection.org.pk)
    start = selection.start or EPOCH
    if covered is None or start < covered:
        return None
    now = timezone.now()
    end = selection.end
    # A range that runs until now (no end, or an end that is now: the last 24 hours): the buckets
    # still open hold nothing later, so they are read whole rather than their logs from the raw
    # rows (a log stamped ahead of now, a client's clock skew, counts too).
    open_end = end is None or abs(end - now) <= OPEN_END
    if open_end:
        end = floor(now, "d") + GRAINS["d"] * 2
    if end <= start:
        end = start
    return Plan(selection.org.pk, start, end, dim, value, open_end)



def split(lo: datetime, hi: datetime, grains: tuple[str, ...]) -> tuple[list[tuple[str, datetime, datetime]],
                                                                      list[tuple[datetime, datetime]]]:
    """[lo, hi) as whole buckets of the coarsest grains that fit, and the raw remainders."""
    if lo >= hi:
        return [], []
    if not grains:
        return [], [(lo, hi)]
    grain, finer = grains[0], grains[1:]
    a, b = ceil(lo, grain), floor(hi, grain)
    if a >= b:
        return split(lo, hi, finer)
    left, left_raw = split(lo, a, finer)
    right, right_raw = split(b, hi, finer)
    return [(grain, a, b), *left, *right], left_raw + right_raw


def _pieces_q(pieces: list[tuple[str, datetime, datetime]]) -> Q:
    q = Q(pk__in=[])
    for grain, lo, hi in pieces:
        q |= Q(grain=grain, bucket__gte=lo, bucket__lt=hi)
    return q


_RAW_QUERIES = 4  # raw ranges read one query each; more (overflowing buckets) in one OR-ed query


def _raw_q(ranges: list[tuple[datetime, datetime]]) -> Q:
    q = Q(pk__in=[])
    for lo, hi in ranges:
        q |= Q(created_at__gte=lo, created_at__lt=hi)
    return q


def _without_overflow(p: Plan, dim: str, pieces, raw, grains: tuple[str, ...], *, value: str | None):
    """Buckets where the values needed may be folded into the overflow row are read from their
    finer buckets instead (a week from its days, a day from its hours), the finest from the raw rows."""
    if not dim or not pieces:
        return pieces, raw
    pieces, raw = list(pieces), list(raw)
    checking = pieces
    while checking:
        overflowing = set(Rollup.objects.filter(_pieces_q(checking), org_id=p.org_id, dim=dim, overflow=True)
                          .values_list("grain", "bucket"))
        if value is not None and overflowing:
            kept = set(Rollup.objects.filter(_pieces_q(checking), org_id=p.org_id, dim=dim, overflow=False,
                                             value=value).values_list("grain", "bucket"))
            overflowing -= kept
        checking = []
        for grain, bucket in sorted((grain, utc(bucket)) for grain, bucket in overflowing):
            step = GRAINS[grain]
            for index, (g, lo, hi) in enumerate(pieces):
                if g == grain and lo <= bucket < hi:
                    pieces[index:index + 1] = [x for x in ((g, lo, bucket), (g, bucket + step, hi)) if x[1] < x[2]]
                    break
            finer, finer_raw = split(bucket, bucket + step, grains[grains.index(grain) + 1:])
            pieces.extend(finer)
            checking.extend(finer)
            raw.extend(finer_raw)
    return pieces, raw


def _rollup_rows(p: Plan, dim: str, pieces, value: str | None) -> QuerySet[Rollup]:
    qs = Rollup.objects.filter(_pieces_q(pieces), org_id=p.org_id, dim=dim)
    if value is not None and dim:  # the all-logs row has one value
        qs = qs.filter(value=value, overflow=False)
    return qs


def _raw_logs(p: Plan, ranges) -> QuerySet[RequestLog]:
    qs = RequestLog.objects.filter(_raw_q(ranges), org_id=p.org_id)
    if p.dim:
        qs = qs.filter(_dim_q(p.dim, p.value))
    return qs


def _raw_parts(p: Plan, ranges) -> list[QuerySet[RequestLog]]:
    """The raw logs of the ranges as a few querysets to add up: one per range (adjacent ones joined)
    while there are few. SQLite answers `org = ? AND (range OR range)` by reading every log of the
    org (its OR optimisation needs each term indexed on its own), which turned the two minute-long
    edges of a dashboard into a scan of a million rows; one range each is an index range."""
    merged: list[list[datetime]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    if len(merged) > _RAW_QUERIES:
        return [_raw_logs(p, merged)]
    return [_raw_logs(p, [(lo, hi)]) for lo, hi in merged]


def _dim_q(dim: str, value: str) -> Q:
    if dim.startswith(PROPERTY_PREFIX):
        return Q(**{f"properties__{dim[len(PROPERTY_PREFIX):]}": value})
    column = DIM_COLUMNS[dim]
    if dim in ("cache_hit", "streamed"):
        return Q(**{column: value == "1"})
    if dim == "status":
        return Q(status=int(value)) if value.lstrip("-").isdigit() else Q(pk__in=[])
    return Q(**{column: value})


def _group_expr(dim: str):
    if dim.startswith(PROPERTY_PREFIX):
        return KT(f"properties__{dim[len(PROPERTY_PREFIX):]}")
    if dim == SHADOW_DIM:
        return SHADOW_SIMILARITY  # grouped by exact value here, by band in _raw_key
    if dim in _TEXT_DIMS and connection.vendor == "sqlite":
        # Grouping by a plain column, SQLite read the org's whole (org, column) index in its order (a
        # million rows: 150 ms) rather than the minutes of the edges by time: an expression has no index.
        return Concat(F(DIM_COLUMNS[dim]), Value(""), output_field=CharField())
    return F(DIM_COLUMNS[dim])


_TEXT_DIMS = ("model", "provider", "cache_match", "user", "session", "name", "prompt")


# Plain fetches, never .iterator(): a server-side cursor on PostgreSQL is planned for its first
# rows (cursor_tuple_fraction) and scanned a whole minute index instead of a few buckets.
_RAW_AGGREGATES = {
    "m_requests": Count("created_at"), "m_errors": Count("created_at", filter=ERROR_Q),
    "m_cache_hits": Count("created_at", filter=Q(cache_hit=True)),
    "m_unpriced": Count("created_at", filter=UNPRICED & ~ERROR_Q),
    "m_prompt_tokens": Sum("prompt_tokens"), "m_completion_tokens": Sum("completion_tokens"),
    "m_cached_tokens": Sum("cached_tokens"), "m_cost_usd": Sum("cost_usd"),
    "m_saved_usd": Sum("cost_usd", filter=Q(cache_hit=True)), "m_first_at": Min("created_at"),
    "m_last_at": Max("created_at"),
}
# Prefixed: annotate() refuses aliases that shadow the model's fields.
_ROLLUP_AGGREGATES = {**{f"m_{name}": Sum(name) for name in _SCALAR_SUMS}, "m_first_at": Min("first_at"),
                      "m_last_at": Max("last_at")}


def _measures(row: dict[str, Any]) -> Measures:
    m = Measures()
    for name in _SCALAR_SUMS:
        value = row.get(f"m_{name}", row.get(name))
        if value is not None:
            setattr(m, name, Decimal(value) if name in ("cost_usd", "saved_usd") else int(value))
    m.first_at, m.last_at = row.get("m_first_at"), row.get("m_last_at")
    return m


def _merge(into: dict, key, m: Measures) -> None:
    if key in into:
        into[key].merge(m)
    else:
        into[key] = m


def finish(m: Measures, percentiles: tuple[str, ...] | None = ()) -> dict[str, Any]:
    """Measures -> the metrics JSON shape (analytics.metrics._finish)."""
    count = m.requests
    out = {
        "count": count,
        "errors": m.errors,
        "error_rate": m.errors / count if count else 0.0,
        "cost_usd": float(m.cost_usd),
        "prompt_tokens": m.prompt_tokens,
        "completion_tokens": m.completion_tokens,
        "cache_hits": m.cache_hits,
        "saved_usd": float(m.saved_usd),
        "unpriced": m.unpriced,
    }
    out["total_tokens"] = out["prompt_tokens"] + out["completion_tokens"]
    out["cache_hit_rate"] = m.cache_hits / count if count else 0.0
    for name, (sketch_name, fraction) in PERCENTILES.items():
        wanted = percentiles is None or name in percentiles
        value = getattr(m, sketch_name).quantile(fraction) if wanted else None
        out[name] = None if value is None else round(float(value), 3)
    return out


def _add_raw_sketches(qs: QuerySet[RequestLog], into: dict, key_of: Callable[[Any], Any], group_field=None) -> None:
    fields = ["latency_ms", "ttft_ms"] + (["created_at"] if group_field == "created_at" else [])
    if group_field and group_field != "created_at":
        qs = qs.annotate(group_key=group_field)
        fields.append("group_key")
    for values in qs.values_list(*fields):
        key = key_of(values[2] if len(values) > 2 else None)
        m = into.get(key)
        if m is None:
            continue
        if values[0] is not None:
            m.latency.add(float(values[0]))
        if values[1] is not None:
            m.ttft.add(float(values[1]))


# --- The three questions the pages and APIs ask -----------------------------------------------


def summary(selection: Selection, percentiles: tuple[str, ...] | None = None) -> dict[str, Any] | None:
    if clickhouse.enabled():
        from .clickhouse import reads

        return reads.summary(selection, percentiles)
    p = plan(selection)
    if p is None:
        return None
    grains = p.grains(p.dim)
    pieces, raw = split(p.start, p.end, grains)
    pieces, raw = _without_overflow(p, p.dim, pieces, raw, grains, value=p.value if p.dim else None)
    total = Measures()
    rows = _rollup_rows(p, p.dim, pieces, p.value)
    total.merge(_measures(rows.aggregate(**_ROLLUP_AGGREGATES)))
    if percentiles != ():
        latency, ttft = {}, {}
        for stored_latency, stored_ttft in rows.values_list(*_SKETCH_TEXT):
            add_json(latency, orjson.loads(stored_latency))
            add_json(ttft, orjson.loads(stored_ttft))
        total.latency.merge(Sketch.from_json(latency))
        total.ttft.merge(Sketch.from_json(ttft))
    for logs in _raw_parts(p, raw):
        total.merge(_measures(logs.aggregate(**_RAW_AGGREGATES)))
        if percentiles != ():
            _add_raw_sketches(logs, {None: total}, lambda _: None)
    return finish(total, percentiles)


ORDERS = {"count": "requests", "cost_usd": "cost_usd", "errors": "errors", "last": "last_at",
          "prompt_tokens": "prompt_tokens", "completion_tokens": "completion_tokens"}


def grouped(selection: Selection, dim: str, *, order_by: str = "-count", limit: int | None = None,
            exclude_empty: bool = False, percentiles: tuple[str, ...] | None = None,
            contains: str = "") -> list[dict[str, Any]] | None:
    """The metrics per value of a dimension, as metrics.grouped returns them (plus first and last
    for users and sessions), or None when the rollups cannot answer. `contains` narrows the values
    to those containing it (case-insensitive)."""
    if clickhouse.enabled():
        from .clickhouse import reads

        return reads.grouped(selection, dim, order_by=order_by, limit=limit, exclude_empty=exclude_empty,
                             percentiles=percentiles, contains=contains)
    p = plan(selection, group_dim=dim)
    if p is None or order_by.lstrip("-") not in {*ORDERS, "group_key"}:
        return None
    grains = p.grains(dim)
    pieces, raw = split(p.start, p.end, grains)
    only = p.value if p.dim == dim and p.dim else None
    pieces, raw = _without_overflow(p, dim, pieces, raw, grains, value=only)
    rows = _rollup_rows(p, dim, pieces, only).filter(overflow=False)
    if contains:
        rows = rows.filter(value__icontains=contains)
    # Plain lists while grouping (a user or session list can have tens of thousands of values);
    # Measures only for the groups returned.
    if exclude_empty:
        rows = rows.exclude(value="")
    field = order_by.lstrip("-")
    descending = order_by.startswith("-")
    index = None if field == "group_key" else _TOTALS.index(ORDERS[field])
    newest = None
    if order_by == "-last" and limit and exclude_empty and dim in SPAN_DIMS:
        newest = _newest_values(p, dim, pieces, raw, rows, limit, contains)
        rows = rows.filter(value__in=newest)
    groups: dict[Any, list] = {}
    raw_parts = []
    for raw_logs in _raw_parts(p, raw):
        raw_logs = raw_logs.annotate(group_key=_group_expr(dim))
        if contains:
            raw_logs = raw_logs.filter(group_key__icontains=contains)
        if newest is not None:
            raw_logs = raw_logs.filter(group_key__in=newest)
        raw_parts.append(raw_logs)
        for row in raw_logs.order_by().values_list("group_key").annotate(**_RAW_AGGREGATES):
            _add_totals(groups, _raw_key(dim, row[0]), row[1:])
    sums = rows.values_list("value").annotate(**_ROLLUP_AGGREGATES)
    if limit and descending and index is not None:
        # Sums only grow: the top `limit` are among the rollups' top `limit` + one per value the raw
        # edges hold (each can overtake one), plus those values' own rollup sums.
        ordering = F(f"m_{ORDERS[field]}").desc(nulls_last=True)
        found = list(sums.order_by(ordering, "value")[:limit + len(groups)])
        found += list(sums.filter(value__in=[key for key in groups if isinstance(key, str)][:5000]).order_by())
        seen = set()
        for row in found:
            if row[0] not in seen:
                seen.add(row[0])
                _add_totals(groups, row[0], row[1:])
    else:
        for row in sums.order_by():
            _add_totals(groups, row[0], row[1:])
    if exclude_empty:
        groups.pop("", None)
        groups.pop(None, None)

    def sort_key(item):
        key, totals = item
        if index is None:
            return (key is None, key or "")
        value = totals[index]
        missing = value is None
        if descending:
            return (missing, _negate(value) if not missing else 0, key or "")
        return (missing, value if not missing else 0, key or "")

    ordered = sorted(((key, totals) for key, totals in groups.items() if totals[0] > 0), key=sort_key)
    if limit:
        ordered = ordered[:limit]
    ordered = [(key, _measures(dict(zip(_TOTAL_NAMES, totals)))) for key, totals in ordered]
    if percentiles != () and ordered:
        chosen = {key: m for key, m in ordered}
        values = [key for key in chosen if key is not None]
        stored: dict[str, tuple[dict, dict]] = {}
        for start in range(0, len(values), 900):
            for value, latency, ttft in (rows.filter(value__in=values[start:start + 900])
                                         .values_list("value", *_SKETCH_TEXT)):
                into = stored.setdefault(value, ({}, {}))
                add_json(into[0], orjson.loads(latency))
                add_json(into[1], orjson.loads(ttft))
        for value, (latency, ttft) in stored.items():
            chosen[value].latency.merge(Sketch.from_json(latency))
            chosen[value].ttft.merge(Sketch.from_json(ttft))
        for raw_logs in raw_parts:
            _add_raw_sketches(raw_logs, chosen, lambda key: _raw_key(dim, key), group_field=_group_expr(dim))
    return [{"key": typed_key(dim, key), **finish(m, percentiles), **extras(m)} for key, m in ordered]


def distinct_count(selection: Selection, dim: str) -> int | None:
    """How many values of a dimension (users, say) the selection's logs have, "" left out; None when
    the rollups cannot answer."""
    if clickhouse.enabled():
        from .clickhouse import reads

        return reads.distinct_count(selection, dim)
    p = plan(selection, group_dim=dim)
    if p is None:
        return None
    grains = p.grains(dim)
    pieces, raw = split(p.start, p.end, grains)
    only = p.value if p.dim == dim and p.dim else None
    pieces, raw = _without_overflow(p, dim, pieces, raw, grains, value=only)
    rows = _rollup_rows(p, dim, pieces, only).filter(overflow=False, requests__gt=0).exclude(value="")
    values = set(rows.order_by().values_list("value", flat=True).distinct())
    for logs in _raw_parts(p, raw):
        found = (logs.annotate(group_key=_group_expr(dim)).exclude(group_key="").exclude(group_key=None)
                 .order_by().values_list("group_key", flat=True).distinct())
        values.update(_raw_key(dim, key) for key in found)
    return len(values)


def _newest_values(p: Plan, dim: str, pieces, raw, rows: QuerySet[Rollup], limit: int, contains: str) -> list[str]:
    """The `limit` values (users, sessions) seen last, read from the newest buckets backwards: a
    value first met in a bucket was last seen in it, so the walk stops once `limit` values are met
    (a day or two of a busy org) instead of grouping every value of the range."""
    segments = [(None, lo, hi) for lo, hi in raw]
    for grain, lo, hi in pieces:
        step = GRAINS[grain]
        bucket = lo
        while bucket < hi:
            segments.append((grain, bucket, bucket + step))
            bucket += step
    segments.sort(key=lambda segment: segment[2], reverse=True)  # disjoint: newest first
    last_seen: dict[str, datetime] = {}
    for grain, lo, hi in segments:
        if len(last_seen) >= limit:
            break
        if grain is None:
            logs = _raw_logs(p, [(lo, hi)]).annotate(group_key=_group_expr(dim)).exclude(group_key="")
            if contains:
                logs = logs.filter(group_key__icontains=contains)
            found = logs.order_by().values_list("group_key").annotate(last=Max("created_at"))
        else:
            found = rows.filter(grain=grain, bucket=lo).values_list("value", "last_at")
        for value, last in found:
            if value and last is not None and value not in last_seen:
                last_seen[value] = last  # every newer bucket was read first: this is its last
    ordered = sorted(last_seen.items(), key=lambda item: (item[1], item[0]), reverse=True)
    return [value for value, _ in ordered[:limit]]


_TOTALS = (*_SCALAR_SUMS, "first_at", "last_at")
# The stored sketches (JSON text), decoded with orjson.
_SKETCH_TEXT = ("latency", "ttft")
_TOTAL_NAMES = [f"m_{name}" for name in _TOTALS]


def _add_totals(groups: dict[Any, list], key, values) -> None:
    """Add one aggregate row (in _TOTALS order) to a group's running totals."""
    totals = groups.get(key)
    if totals is None:
        groups[key] = [0 if value is None and i < len(_SCALAR_SUMS) else value for i, value in enumerate(values)]
        return
    for i in range(len(_SCALAR_SUMS)):
        if values[i] is not None:
            totals[i] += values[i]
    first, last = values[-2], values[-1]
    if first is not None and (totals[-2] is None or first < totals[-2]):
        totals[-2] = first
    if last is not None and (totals[-1] is None or last > totals[-1]):
        totals[-1] = last


EXTRAS = ("first", "last", "cost")


def extras(m: Measures) -> dict[str, Any]:
    """What the users and sessions lists show beyond the metrics: first and last request, exact cost."""
    return {"first": m.first_at, "last": m.last_at, "cost": m.cost_usd}


def _raw_key(dim: str, key):
    if dim == SHADOW_DIM:
        return None if key is None else shadow_band("shadow", key)
    if dim in ("cache_hit", "streamed"):
        return "1" if key else "0"
    if dim == "status" or (dim.startswith(PROPERTY_PREFIX) and key is not None):
        return str(key)
    return key


def _negate(value):
    if isinstance(value, datetime):
        return -value.timestamp()
    return -value


def timeseries(selection: Selection, interval: str, start: datetime, end: datetime,
               percentiles: tuple[str, ...] | None = None) -> dict[datetime, dict[str, Any]] | None:
    """Metrics per interval bucket ({bucket start: metrics}), or None when the rollups cannot answer."""
    if clickhouse.enabled():
        from .clickhouse import reads

        return reads.timeseries(selection, interval, start, end, percentiles)
    p = plan(selection)
    if p is None:
        return None
    p.start = max(p.start, start)
    if end and not p.open_end:
        p.end = min(p.end, end)
    grains = p.grains(p.dim, INTERVAL_GRAINS[interval])
    pieces, raw = split(p.start, p.end, grains)
    pieces, raw = _without_overflow(p, p.dim, pieces, raw, grains, value=p.value if p.dim else None)
    grain = INTERVAL_GRAINS[interval][0]
    buckets: dict[datetime, Measures] = {}
    fields = ["bucket", *_SCALAR_SUMS] + (["latency", "ttft"] if percentiles != () else [])
    for row in _rollup_rows(p, p.dim, pieces, p.value).values(*fields):
        m = _measures(row)
        if percentiles != ():
            m.latency = Sketch.from_json(orjson.loads(row["latency"]))
            m.ttft = Sketch.from_json(orjson.loads(row["ttft"]))
        _merge(buckets, floor(utc(row["bucket"]), grain), m)
    if raw:
        logs_by_bucket: dict[datetime, list[RequestLog]] = {}
        for logs in _raw_parts(p, raw):
            for log in logs.only("created_at", "status", "cache_hit", "cost_usd", "prompt_tokens",
                                 "completion_tokens", "cached_tokens", "latency_ms", "ttft_ms"):
                logs_by_bucket.setdefault(floor(log.created_at, grain), []).append(log)
        for moment, logs in logs_by_bucket.items():
            _merge(buckets, moment, measures_of(logs))
    return {moment: finish(m, percentiles) for moment, m in sorted(buckets.items()) if not end or moment < end}


# --- The users and sessions lists, one user's page ---------------------------------------------


def people_page(selection: Selection, dim: str, *, order_by: str, offset: int, limit: int,
                contains: str = "", names: bool = False) -> tuple[list[dict[str, Any]], bool] | None:
    """One page of the users or sessions list ("" left out): `limit` values from `offset`, as
    grouped returns them, and whether more follow; None when the rollups cannot answer. `names`:
    `contains` matches a session's name too.

    Sessions, largest or newest first, walk their all-time rows (_alltime_page; with ClickHouse,
    analytics.clickhouse.sessions); otherwise it reads the top offset + limit + 1 of grouped (the
    rollups' top-n reads stay exact, a page deeper costs a little more)."""
    if dim in ALLTIME_DIMS:
        found = None
        if clickhouse.enabled():
            from .clickhouse import sessions

            found = sessions.page(selection, order_by=order_by, offset=offset, limit=limit, contains=contains,
                                  names=names)
        else:
            p = plan(selection, group_dim=dim)
            if p is not None and not p.dim:
                found = _alltime_page(p, dim, order_by=order_by, offset=offset, limit=limit, contains=contains,
                                      names=names)
        if found is not None:
            return found
    if names:
        return None  # names are only in the all-time rows
    found = grouped(selection, dim, order_by=order_by, limit=offset + limit + 1, exclude_empty=True,
                    percentiles=(), contains=contains)
    if found is None:
        return None
    return found[offset:offset + limit], len(found) > offset + limit


_ALLTIME_ORDERS = {"count": "requests", "cost_usd": "cost_usd", "errors": "errors", "last": "last_at"}
_ALLTIME_CHUNK = 500
# Rows walked in order before the walk reads every remaining candidate at once (a search matching
# few sessions of many, a deep page, ties): ordered reads past it would cost more than one read.
ALLTIME_WALK_LIMIT = 20_000


def _alltime_page(p: Plan, dim: str, *, order_by: str, offset: int, limit: int, contains: str,
                  names: bool) -> tuple[list[dict[str, Any]], bool] | None:
    """A page of sessions largest (or newest) first, exact, from their all-time rows walked in the
    order of an index (Rollup's rollup_alltime_*) instead of adding up every session of the range.

    A session's all-time measure bounds its measure in the range from above (sums only grow, a
    last request in the range is no later than its last ever), so once the page's last session
    sorts ahead of the walk's position, no session not yet walked can enter the page. A session
    whose first and last requests both lie in the range counts its all-time row as it is; one
    reaching past either end has its measure in the range added up from the range's buckets.
    Past ALLTIME_WALK_LIMIT rows it reads every session of the range at once. None when the walk
    cannot answer (an org whose all-time rows are not counted yet, an order it has no index for)."""
    field = order_by.lstrip("-")
    if not order_by.startswith("-") or field not in _ALLTIME_ORDERS or not alltime_counted(p.org_id):
        return None
    column = _ALLTIME_ORDERS[field]
    index = _TOTALS.index(column)
    rows = (Rollup.objects.filter(org_id=p.org_id, dim=dim, grain=ALLTIME, overflow=False, requests__gt=0,
                                  last_at__gte=p.start, first_at__lt=p.end).exclude(value=""))
    if contains:
        rows = _matching(rows, contains, names)
    rows = rows.order_by(F(column).desc(), "value").values_list("value", *_TOTALS)
    want = offset + limit + 1
    in_range: dict[str, list] = {}  # the measures in the range of the sessions reaching past it
    edges = None
    size = _ALLTIME_CHUNK
    while True:
        # Each read from the top, in one statement: the rows the writer moves meanwhile are not
        # skipped between two reads. Four times more each time: at most a third read twice.
        walked = list(rows[:size] if size else rows)
        exact: dict[str, list] = {}
        reaching = []
        for value, *totals in walked:
            if totals[-2] >= p.start and totals[-1] < p.end:
                exact[value] = totals
            elif value not in in_range:
                reaching.append(value)
        if reaching:
            if edges is None:
                grains = p.grains(dim)
                edges = _without_overflow(p, dim, *split(p.start, p.end, grains), grains, value=None)
            found = _range_totals(p, dim, edges, reaching)
            in_range.update({value: found.get(value) for value in reaching})
        exact.update({value: totals for value, totals in in_range.items() if totals is not None})
        ordered = sorted(exact, key=lambda value: (_negate(exact[value][index]), value))
        if not size or len(walked) < size:
            break  # every row walked
        # Strictly ahead: ties are ordered by the database's collation, the page by code points.
        if len(ordered) >= want and exact[ordered[want - 1]][index] > walked[-1][1 + index]:
            break  # no session not walked can sort ahead of the page's last
        size = None if size >= ALLTIME_WALK_LIMIT else min(size * 4, ALLTIME_WALK_LIMIT)
    page = [(value, _measures(dict(zip(_TOTAL_NAMES, exact[value])))) for value in ordered[offset:offset + limit]]
    return ([{"key": value, **finish(m, ()), **extras(m)} for value, m in page], len(ordered) > offset + limit)


def _matching(rows: QuerySet[Rollup], contains: str, names: bool) -> QuerySet[Rollup]:
    """The all-time rows whose value (or name) contains the text, ignoring case. PostgreSQL: ILIKE on
    the columns, which the trigram index (analytics.0016) serves for a rare text and whose statistics
    tell the planner when most rows match (then it walks the order's index)."""
    if connection.vendor != "postgresql":
        return rows.filter(Q(value__icontains=contains) | Q(label__icontains=contains) if names
                           else Q(value__icontains=contains))
    pattern = "%" + contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    where = "(value ILIKE %s OR label ILIKE %s)" if names else "value ILIKE %s"
    return rows.extra(where=[where], params=[pattern, pattern] if names else [pattern])


def _range_totals(p: Plan, dim: str, edges, values: list[str]) -> dict[str, list]:
    """The totals (in _TOTALS order) of some values of a dimension within the plan's range, from its
    buckets (`edges`: the pieces and raw ranges _without_overflow gave) and raw edges; values with
    no request in the range are left out."""
    pieces, raw = edges
    groups: dict[Any, list] = {}
    for start in range(0, len(values), 900):
        chunk = values[start:start + 900]
        for raw_logs in _raw_parts(p, raw):
            found = (raw_logs.annotate(group_key=_group_expr(dim)).filter(group_key__in=chunk).order_by()
                     .values_list("group_key").annotate(**_RAW_AGGREGATES))
            for row in found:
                _add_totals(groups, _raw_key(dim, row[0]), row[1:])
        sums = (_rollup_rows(p, dim, pieces, None).filter(overflow=False, value__in=chunk).order_by()
                .values_list("value").annotate(**_ROLLUP_AGGREGATES))
        for row in sums:
            _add_totals(groups, row[0], row[1:])
    return {value: totals for value, totals in groups.items() if totals[0] > 0}


_RAW_ORDERS = {"count": "count", "cost_usd": "cost", "last": "last", "errors": "errors"}
_PEOPLE_COLUMNS = {"user": "user_id", "session": "session_id"}


def raw_people_page(selection: Selection, dim: str, *, order_by: str, offset: int, limit: int,
                    contains: str = "", names: bool = False) -> tuple[list[dict[str, Any]], bool]:
    """people_page from the raw rows (an org whose rollups are not built yet, or a session search,
    which matches names: no rollup keeps them). `names`: `contains` matches the session's name too.
    With ClickHouse a session search people_page cannot answer (a filter, session_totals not filled
    yet) reads its raw rows there (analytics.clickhouse.reads)."""
    if names and clickhouse.enabled():
        from .clickhouse import reads

        found = reads.search_sessions(selection, contains, order_by=order_by, offset=offset, limit=limit + 1)
        return found[:limit], len(found) > limit
    column = _PEOPLE_COLUMNS[dim]
    qs = selection.qs.exclude(**{column: ""})
    if contains:
        matches = Q(**{f"{column}__icontains": contains})
        if names:
            matches |= Q(session_name__icontains=contains)
        qs = qs.filter(matches)
    field = _RAW_ORDERS[order_by.lstrip("-")]
    ordering = F(field).desc(nulls_last=True) if order_by.startswith("-") else F(field).asc(nulls_last=True)
    rows = list(qs.values(column)
                .annotate(count=Count("id"), cost=Coalesce(Sum("cost_usd"), Value(Decimal(0))),
                          prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"),
                          errors=Count("id", filter=ERROR_Q), first=Min("created_at"), last=Max("created_at"))
                .order_by(ordering, column)[offset:offset + limit + 1])
    found = [{"key": row[column], "count": row["count"], "cost": Decimal(row["cost"] or 0),
              "cost_usd": float(row["cost"] or 0), "errors": row["errors"], "first": row["first"], "last": row["last"],
              "total_tokens": (row["prompt"] or 0) + (row["completion"] or 0)} for row in rows]
    return found[:limit], len(found) > limit


def user_seen(org_id: int, user_id: str) -> tuple[datetime, datetime] | None:
    """A user's first and last request ever, None for a user with no logs: two ends of the
    (org, user, created_at) index (SQLite answers min() alone from an index, not min() and max())."""
    if clickhouse.enabled():
        from .clickhouse import reads

        return reads.user_seen(org_id, user_id)
    logs = RequestLog.objects.filter(org_id=org_id, user_id=user_id)
    first = logs.order_by("created_at").values_list("created_at", flat=True).first()
    if first is None:
        return None
    return first, logs.order_by("-created_at").values_list("created_at", flat=True).first()
