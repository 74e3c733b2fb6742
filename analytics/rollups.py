"""Rollups: the measures of an org's logs per bucket of time and value of one dimension, kept
exact by the transactions that change the logs, so aggregate pages never scan raw rows.

Writing: `add(rows)` after rows are inserted, `subtract(rows)` after they are deleted (or
before a change, with `add` after it), in the same transaction. Both turn the rows into deltas
per (org, grain, bucket, dimension, value) and apply them holding the org's rollup lock
(PostgreSQL: an advisory transaction lock; SQLite has one writer). Adding, the log writer's
path, is one INSERT … ON CONFLICT DO UPDATE: the database adds the counts, and the sketches
(analytics.sketch, plain JSON in both databases) are read, merged here and written whole.
Subtracting (erase, purge, edits: rare) reads the rows, takes the deltas out and writes them.

Grains: minutes, hours, days and weeks (UTC; a week starts on Monday). Every dimension is kept per
hour and per day, and every one but sessions per week too (a 30-day question reads four weeks and a
few days, not thirty days); sessions also keep one row each for all time (grain "a", bucket EPOCH,
uncapped, with the session's name as `label`): the sessions list walks them by their indexes,
largest first, instead of adding up every session of a range (rollup_reads); the row of all logs
per minute too, for the 1 h view's chart (a question about one value of a dimension reads the
partial hours at a range's ends from the raw rows). A dimension keeps at most CAPS[grain] values
per bucket; the logs of values beyond it go to the bucket's overflow row (value "", overflow true),
so the bucket's totals stay exact and a read that needs one of the folded values reads that
bucket's finer buckets (down to the raw rows) instead. Users per day and per week are never capped:
distinct users are exact for any range.

Which row a log went to is decided only by what exists: its value's row if there is one, else
a new one while the bucket has fewer than the cap, else the overflow row. Rows are never
deleted one by one (a value's row whose logs were all erased stays, at zero), so a later
subtraction finds the same row the addition used.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal
from typing import Any

import orjson
from django.db import connection, models, transaction
from django.db.models import Q
from django.utils import timezone

from .models import RequestLog, Rollup, RollupCoverage
from .sketch import Sketch, bucket_of, merge_json

GRAINS: dict[str, timedelta] = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1),
                                "w": timedelta(weeks=1)}
# Dimension -> the log's attribute. "" is the row of every log; "p:<Name>" a property.
LOW_DIMS: dict[str, str] = {"": "", "model": "model", "provider": "provider", "status": "status",
                            "cache_hit": "cache_hit", "streamed": "streamed", "cache_match": "cache_match"}
HIGH_DIMS: dict[str, str] = {"user": "user_id", "session": "session_id", "name": "request_name", "prompt": "prompt_id"}
DIM_COLUMNS = {**LOW_DIMS, **HIGH_DIMS}
PROPERTY_PREFIX = "p:"
# Shadow-mode semantic candidates by similarity band ("0.93": 0.93 <= similarity < 0.94), from
# which the dashboard shows what each threshold would have served.
SHADOW_DIM = "shadow"
# Sessions keep no latency sketches: no page shows a session's percentiles (a third of the bytes).
UNSKETCHED = ("session",)
# Nor weeks: a session lasts minutes, and the sessions list walks back from the newest days.
UNWEEKLY = ("session",)
# Sessions keep a row each for all time too: grain ALLTIME, bucket EPOCH.
ALLTIME = "a"
ALLTIME_DIMS = ("session",)
# Values kept per bucket and dimension (minutes keep only the all-logs row, which has one).
CAPS: dict[str, int] = {"h": 1_000, "d": 10_000, "w": 10_000}
UNCAPPED = {("d", "user"), ("w", "user")}  # and every all-time row
# Users and sessions keep when their requests of a bucket started and ended.
SPAN_DIMS = ("user", "session")
MAX_VALUE = 255
MAX_PROPERTY_NAME = 200
# The columns a log's contribution is computed from (the rest of the row is never read).
LOG_FIELDS = ("org_id", "created_at", "status", "model", "provider", "cache_hit", "cache_match", "similarity",
              "streamed", "user_id", "session_id", "session_name", "request_name", "prompt_id", "properties",
              "latency_ms", "ttft_ms", "prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd")
# The percentiles the pages read from the merged sketches: name -> (sketch, fraction).
PERCENTILES = {"latency_p50_ms": ("latency", 0.50), "latency_p95_ms": ("latency", 0.95),
               "latency_p99_ms": ("latency", 0.99), "ttft_p50_ms": ("ttft", 0.50)}
SCALARS = ("requests", "errors", "cache_hits", "unpriced", "prompt_tokens", "completion_tokens", "cached_tokens",
           "cost_usd", "saved_usd")
# A range whose end is this close to now runs until now: the buckets still open are read whole.
OPEN_END = timedelta(seconds=5)
_LOCK_CLASS = 17017  # pg_advisory_xact_lock(class, org id): one rollup writer per org at a time
EPOCH = datetime(2000, 1, 1, tzinfo=dt_timezone.utc)


# Filter names (queries.EXACT_FILTERS) -> the rollup dimension that keeps them.
FILTER_DIMS = {"user_id": "user", "session_id": "session", "model": "model", "provider": "provider",
               "status": "status", "cache_hit": "cache_hit", "request_name": "name", "prompt_id": "prompt"}


def condition(selection: Any, group_dim: str | None = None) -> tuple[str, str] | None:
    """(dimension, value) of the one filter of a selection (analytics.queries.Selection) that a rollup
    answers, ("", "") for none; None when no rollup can: body text, two filters, a filter no rollup
    keeps, or a filter on another dimension than `group_dim`'s (no rollup keeps two at once)."""
    if selection.search or getattr(selection, "conditions", None):
        return None  # body text, or the explorer's filter builder: only raw rows answer them
    conditions = [(FILTER_DIMS.get(name), value) for name, value in selection.filters.items() if value is not None]
    conditions += [(PROPERTY_PREFIX + name, value) for name, value in selection.properties.items()]
    if len(conditions) > 1 or any(dim is None for dim, _ in conditions):
        return None
    if not conditions:
        return "", ""
    dim, value = conditions[0]
    if group_dim is not None and group_dim != dim:
        return None
    if isinstance(value, bool):
        return dim, "1" if value else "0"
    if dim.startswith(PROPERTY_PREFIX):
        return dim, property_text(value) or ""
    return dim, str(value)


def typed_key(dim: str, key):
    """A rollup value as the raw rows' group key (status an int, cache_hit and streamed a bool)."""
    if dim == "status" and key is not None:
        return int(key) if key.lstrip("-").isdigit() else key
    if dim in ("cache_hit", "streamed"):
        return key == "1"
    return key


def is_error(status: int) -> bool:
    return status >= 400 or status < 200


def floor(moment: datetime, grain: str) -> datetime:
    if grain == ALLTIME:
        return EPOCH
    moment = moment.astimezone(dt_timezone.utc)
    if grain == "m":
        return moment.replace(second=0, microsecond=0)
    if grain == "h":
        return moment.replace(minute=0, second=0, microsecond=0)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday()) if grain == "w" else day


def property_text(value: Any) -> str | None:
    """A property's value as the rollups and filters see it (JSON for non-strings); None for null."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def shadow_band(cache_match: str, similarity: float | None) -> str | None:
    if cache_match != "shadow" or similarity is None:
        return None
    return f"{math.floor(round(similarity * 100, 6)) / 100:.2f}"


def dim_values(log: Any, grain: str) -> list[tuple[str, str]]:
    """(dimension, value) pairs a log counts under at a grain."""
    pairs = [("", "")]
    if grain == "m":
        return pairs
    for dim, column in LOW_DIMS.items():
        if not dim:
            continue
        value = getattr(log, column)
        if isinstance(value, bool):
            value = "1" if value else "0"
        pairs.append((dim, str(value) if value is not None else ""))
    for dim, column in HIGH_DIMS.items():
        pairs.append((dim, getattr(log, column) or ""))
    band = shadow_band(log.cache_match, log.similarity)
    if band is not None:
        pairs.append((SHADOW_DIM, band))
    for name, value in (log.properties or {}).items() if isinstance(log.properties, dict) else ():
        text = property_text(value)
        if text is not None and name and len(name) <= MAX_PROPERTY_NAME and "__" not in name:
            pairs.append((PROPERTY_PREFIX + name, text))
    return pairs


@dataclass
class Measures:
    """What a set of logs adds up to; `sign` -1 holds what a removal takes away."""

    requests: int = 0
    errors: int = 0
    cache_hits: int = 0
    unpriced: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    saved_usd: Decimal = Decimal(0)
    latency: Sketch = field(default_factory=Sketch)
    ttft: Sketch = field(default_factory=Sketch)
    first_at: datetime | None = None
    last_at: datetime | None = None
    label: str = ""  # a session's all-time row: its name (the greatest the logs gave)

    def merge(self, other: "Measures", sign: int = 1) -> None:
        for name in SCALARS:
            setattr(self, name, getattr(self, name) + sign * getattr(other, name))
        self.label = max(self.label, other.label)
        if sign > 0:
            self.latency.merge(other.latency)
            self.ttft.merge(other.ttft)
            if other.first_at is not None:
                self.first_at = other.first_at if self.first_at is None else min(self.first_at, other.first_at)
                self.last_at = other.last_at if self.last_at is None else max(self.last_at, other.last_at)
        else:
            self.latency.remove(other.latency)
            self.ttft.remove(other.ttft)

    def copy(self) -> "Measures":
        other = Measures(**{name: getattr(self, name) for name in SCALARS}, first_at=self.first_at,
                         last_at=self.last_at, label=self.label)
        other.latency.merge(self.latency)
        other.ttft.merge(self.ttft)
        return other

    @classmethod
    def of_row(cls, row: Rollup) -> "Measures":
        return cls(**{name: getattr(row, name) for name in SCALARS}, latency=Sketch.from_json(_json(row.latency)),
                   ttft=Sketch.from_json(_json(row.ttft)), first_at=row.first_at, last_at=row.last_at,
                   label=row.label)


Key = tuple[int, str, datetime, str, str]  # org, grain, bucket, dim, value


def deltas(logs: Iterable[Any], *, alltime: bool = True) -> dict[Key, Measures]:
    """The logs' measures per rollup key (before caps). Each log is counted once per hour key; a
    day's, a week's and a session's all-time keys are the merge of their hours' (fewer objects than
    logs in any batch). `alltime=False` leaves the all-time keys out (a rebuild counts them apart)."""
    grouped: dict[Key, list[tuple]] = {}
    labels: dict[tuple[int, str], str] = {}
    for log in logs:
        if log.session_name and log.session_id and alltime:
            key = (log.org_id, log.session_id)
            labels[key] = max(labels.get(key, ""), log.session_name)
        contribution = _contribution(log)
        minute = (log.org_id, "m", floor(log.created_at, "m"), "", "")
        entries = grouped.get(minute)
        if entries is None:
            grouped[minute] = [contribution]
        else:
            entries.append(contribution)
        hour = floor(log.created_at, "h")
        for dim, value in dim_values(log, "h"):
            key = (log.org_id, "h", hour, dim, value)
            entries = grouped.get(key)
            if entries is None:
                grouped[key] = [contribution]
            else:
                entries.append(contribution)
    out = {key: _measures_of(entries, key[3] not in UNSKETCHED) for key, entries in grouped.items()}
    for (org_id, grain, bucket, dim, value), measures in list(out.items()):
        if grain != "h":
            continue
        for coarser in _coarser(dim, value, alltime):
            key = (org_id, coarser, floor(bucket, coarser), dim, value)
            if key in out:
                out[key].merge(measures)
            else:
                out[key] = measures.copy()
    for (org_id, session), label in labels.items():
        found = out.get((org_id, ALLTIME, EPOCH, "session", session))
        if found is not None:
            found.label = label
    return out


def _coarser(dim: str, value: str, alltime: bool) -> tuple[str, ...]:
    """The grains an hour's row of a dimension adds up into."""
    grains = ("d",) if dim in UNWEEKLY else ("d", "w")
    if dim in ALLTIME_DIMS and value and alltime:
        grains += (ALLTIME,)
    return grains


def alltime_deltas(logs: Iterable[Any]) -> dict[Key, Measures]:
    """Only the sessions' all-time keys of the logs, as deltas makes them (a rebuild counting them
    from every log): sessions keep no sketches, so their hours' merge is the logs' own measures."""
    grouped: dict[Key, list[tuple]] = {}
    labels: dict[Key, str] = {}
    for log in logs:
        if not log.session_id:
            continue
        key = (log.org_id, ALLTIME, EPOCH, "session", log.session_id)
        entries = grouped.get(key)
        if entries is None:
            grouped[key] = [_contribution(log)]
        else:
            entries.append(_contribution(log))
        if log.session_name:
            labels[key] = max(labels.get(key, ""), log.session_name)
    out = {key: _measures_of(entries, sketches=False) for key, entries in grouped.items()}
    for key, label in labels.items():
        out[key].label = label
    return out


def _contribution(log: Any) -> tuple:
    """What one log adds, computed once for the ~40 rollup rows it counts in."""
    error = is_error(log.status)
    cost = None if log.cost_usd is None else Decimal(log.cost_usd)
    tokens = log.prompt_tokens is not None or log.completion_tokens is not None
    latency = None if log.latency_ms is None or log.latency_ms != log.latency_ms else float(log.latency_ms)
    ttft = None if log.ttft_ms is None or log.ttft_ms != log.ttft_ms else float(log.ttft_ms)
    return (error, bool(log.cache_hit), cost is None and tokens and not error, log.prompt_tokens or 0,
            log.completion_tokens or 0, log.cached_tokens or 0, cost,
            latency, None if latency is None else bucket_of(latency),
            ttft, None if ttft is None else bucket_of(ttft), log.created_at)


def measures_of(logs: Iterable[Any]) -> Measures:
    """What some logs add up to (a page's raw rows at the edges of a range)."""
    return _measures_of([_contribution(log) for log in logs])


def _measures_of(entries: list[tuple], sketches: bool = True) -> Measures:
    m = Measures()
    m.requests = len(entries)
    first = last = entries[0][11]
    for (error, hit, unpriced, prompt, completion, cached, cost, latency, latency_index, ttft, ttft_index,
         created) in entries:
        m.errors += error
        m.cache_hits += hit
        m.unpriced += unpriced
        m.prompt_tokens += prompt
        m.completion_tokens += completion
        m.cached_tokens += cached
        if cost is not None:
            m.cost_usd += cost
            if hit:
                m.saved_usd += cost
        if latency is not None and sketches:
            m.latency.add_indexed(latency_index, latency)
        if ttft is not None and sketches:
            m.ttft.add_indexed(ttft_index, ttft)
        if created < first:
            first = created
        elif created > last:
            last = created
    m.first_at, m.last_at = first, last
    return m


def add(logs: Iterable[Any], *, alltime: bool = True) -> None:
    """Count logs just inserted (in the caller's transaction)."""
    _apply(deltas(logs, alltime=alltime), 1)


def subtract(logs: Iterable[Any]) -> None:
    """Take out logs just deleted, or about to change (in the caller's transaction)."""
    _apply(deltas(logs), -1)


def _apply(changes: dict[Key, Measures], sign: int) -> None:
    if not changes:
        return
    by_org: dict[int, dict[Key, Measures]] = {}
    for key, measures in changes.items():
        by_org.setdefault(key[0], {})[key] = measures
    with transaction.atomic():
        for org_id in sorted(by_org):
            _apply_org(org_id, by_org[org_id], sign)


def _lock(org_id: int) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_CLASS, org_id])


def _cap(grain: str, dim: str) -> int | None:
    return None if (grain, dim) in UNCAPPED or dim == "" or grain == ALLTIME else CAPS[grain]


def _apply_org(org_id: int, changes: dict[Key, Measures], sign: int) -> None:
    _lock(org_id)
    if sign > 0 and connection.vendor in ("postgresql", "sqlite"):
        _upsert(org_id, changes)
        return
    existing, counts = _existing(org_id, changes)
    targets: dict[tuple, Measures] = {}  # (grain, bucket, dim, overflow, value) -> delta
    for (_, grain, bucket, dim, value), measures in changes.items():
        target = (grain, bucket, dim, False, value)
        if target not in existing:
            cap = _cap(grain, dim)
            full = cap is not None and counts.get((grain, bucket, dim), 0) >= cap
            if sign < 0 or full or len(value) > MAX_VALUE:
                target = (grain, bucket, dim, True, "")
            else:
                counts[(grain, bucket, dim)] = counts.get((grain, bucket, dim), 0) + 1
        if target in targets:
            targets[target].merge(measures)
        else:
            targets[target] = measures
    updates, inserts, spans = [], [], []
    for target, delta in targets.items():
        row = existing.get(target)
        if row is None:
            row = Rollup(org_id=org_id, grain=target[0], bucket=target[1], dim=target[2], overflow=target[3],
                         value=target[4])
            current = Measures()
            inserts.append(row)
        else:
            current = Measures.of_row(row)
            updates.append(row)
        current.merge(delta, sign)
        _store(row, current)
        if row.dim in SPAN_DIMS and not row.overflow:
            if sign < 0 and current.requests > 0 and (delta.first_at == current.first_at
                                                       or delta.last_at == current.last_at):
                spans.append(row)  # the first or last request may be the one removed
            elif sign < 0 and current.requests <= 0:
                row.first_at = row.last_at = None
        else:
            row.first_at = row.last_at = None
    for row in spans:
        _recount_span(row)
    _write(inserts, updates)


def _upsert(org_id: int, changes: dict[Key, Measures]) -> None:
    """PostgreSQL, adding: one INSERT … ON CONFLICT DO UPDATE that adds the deltas' counts to the
    stored rows in the database; sketches are read, merged here and written whole. Which rows exist
    is looked up only where a dimension is near its cap."""
    candidates: dict[tuple[str, datetime, str], set[str]] = {}
    for _, grain, bucket, dim, value in changes:
        if _cap(grain, dim) is not None:
            candidates.setdefault((grain, bucket, dim), set()).add(value)
    counts = _value_counts(org_id, list(candidates))
    crowded = [key for key, values in candidates.items() if counts.get(key, 0) + len(values) > _cap(key[0], key[2])]
    existing = _existing_values(org_id, {key: candidates[key] for key in crowded})
    crowded_set = set(crowded)
    targets: dict[tuple, Measures] = {}
    for (_, grain, bucket, dim, value), measures in changes.items():
        target = (grain, bucket, dim, False, value)
        if len(value) > MAX_VALUE:
            target = (grain, bucket, dim, True, "")
        elif (grain, bucket, dim) in crowded_set and (grain, bucket, dim, value) not in existing:
            if counts.get((grain, bucket, dim), 0) < _cap(grain, dim):
                counts[(grain, bucket, dim)] = counts.get((grain, bucket, dim), 0) + 1
            else:
                target = (grain, bucket, dim, True, "")
        if target in targets:
            targets[target].merge(measures)
        else:
            targets[target] = measures
    sketches = _merged_sketches(org_id, targets)
    rows = []
    for key, m in targets.items():
        grain, bucket, dim, overflow, value = key
        span = dim in SPAN_DIMS and not overflow
        latency, ttft = sketches.get(key) or (m.latency.to_json(), m.ttft.to_json())
        rows.append([org_id, grain, bucket, dim, value, overflow, *(getattr(m, name) for name in SCALARS),
                     latency, ttft, m.first_at if span else None, m.last_at if span else None, m.label])
    rows.sort(key=lambda row: (row[3], row[1], row[2], row[5], row[4]))  # one lock order for every writer
    if connection.vendor == "sqlite":
        _sqlite_upsert(rows)
        return
    table = Rollup._meta.db_table
    names = [*_KEY, *_WRITTEN]
    casts = ["bigint", "text", "timestamptz", "text", "text", "boolean", *(_PG_TYPES[name] for name in _WRITTEN)]
    # One array per column (unnest): a statement of any size is planned once, cheaply. The sketches
    # go as one JSON array each (json, not jsonb: only checked, never converted): as text[] elements
    # psycopg escaped every quote of them in Python.
    arrays = ", ".join("json_array_elements_text(%s::json)" if name in _SKETCHES else f"unnest(%s::{cast}[])"
                       for name, cast in zip(names, casts))
    added = ", ".join(f"{name} = t.{name} + excluded.{name}" for name in SCALARS)
    with _bound_cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} AS t ({', '.join(names)}) SELECT * FROM ROWS FROM ({arrays}) "
            "ON CONFLICT (org_id, dim, grain, bucket, overflow, value) DO UPDATE SET "
            f"{added}, latency = excluded.latency, ttft = excluded.ttft, "
            "first_at = LEAST(t.first_at, excluded.first_at), last_at = GREATEST(t.last_at, excluded.last_at), "
            "label = GREATEST(t.label, excluded.label)",
            [_json_array(column) if name in _SKETCHES else list(column) for column, name in zip(zip(*rows), names)])


def _sqlite_upsert(rows: list[list[Any]]) -> None:
    """SQLite (one writer at a time): the same upsert, a row per execution."""
    names = [*_KEY, *_WRITTEN]
    converters = dict(_converters(names))
    converters["latency"] = converters["ttft"] = _json_text
    params = []
    for row in rows:
        params.append([converters[name](value) if converters[name] else value for name, value in zip(names, row)])
    added = ", ".join(f"{name} = {name} + excluded.{name}" for name in SCALARS)
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {Rollup._meta.db_table} ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))}) "
            "ON CONFLICT (org_id, dim, grain, bucket, overflow, value) DO UPDATE SET "
            f"{added}, latency = excluded.latency, ttft = excluded.ttft, "
            "first_at = coalesce(min(first_at, excluded.first_at), first_at, excluded.first_at), "
            "last_at = coalesce(max(last_at, excluded.last_at), last_at, excluded.last_at), "
            "label = max(label, excluded.label)", params)


def _matching(org_id: int, keys: list[tuple], fields: tuple[str, ...]) -> list[tuple]:
    """SQLite: the stored rows of the keys ((grain, bucket, dim, overflow, value)) with `fields`, by
    a superset query on the unique index, filtered here."""
    grains, buckets, dims = {k[0] for k in keys}, {k[1] for k in keys}, {k[2] for k in keys}
    qs = Rollup.objects.filter(org_id=org_id, grain__in=grains, bucket__in=sorted(buckets), dim__in=sorted(dims))
    values = sorted({k[4] for k in keys})
    if len(values) <= 900:
        qs = qs.filter(value__in=values)
    wanted = set(keys)
    found = []
    for row in qs.values_list("grain", "bucket", "dim", "overflow", "value", *fields):
        key = (row[0], utc(row[1]), row[2], row[3], row[4])
        if key in wanted:
            found.append((key, row[5:]))
    return found


def _merged_sketches(org_id: int, targets: dict[tuple, Measures]) -> dict[tuple, tuple[dict, dict]]:
    """The target rows' stored sketches merged with the deltas' (under the org's lock): the upsert
    writes them whole. Merging here costs a tenth of a JSON merge in SQL."""
    keys = [key for key in targets if key[2] not in UNSKETCHED]
    if not keys:
        return {}
    out = {}
    if connection.vendor == "sqlite":
        for key, (latency, ttft) in _matching(org_id, keys, ("latency", "ttft")):
            delta = targets[key]
            out[key] = (merge_json(_json(latency), delta.latency.to_json()),
                        merge_json(_json(ttft), delta.ttft.to_json()))
        return out
    with _bound_cursor() as cursor:
        cursor.execute(
            f"SELECT r.grain, r.bucket, r.dim, r.overflow, r.value, r.latency, r.ttft FROM {Rollup._meta.db_table} r "
            "JOIN unnest(%s::text[], %s::timestamptz[], %s::text[], %s::boolean[], %s::text[]) "
            "AS k(grain, bucket, dim, overflow, value) ON r.grain = k.grain AND r.bucket = k.bucket "
            "AND r.dim = k.dim AND r.overflow = k.overflow AND r.value = k.value WHERE r.org_id = %s",
            [[k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys], [k[3] for k in keys],
             [k[4] for k in keys], org_id])
        for grain, bucket, dim, overflow, value, latency, ttft in cursor.fetchall():
            key = (grain, utc(bucket), dim, overflow, value)
            delta = targets[key]
            out[key] = (merge_json(_json(latency), delta.latency.to_json()),
                        merge_json(_json(ttft), delta.ttft.to_json()))
    return out


def _bound_cursor():
    """A psycopg cursor that sends parameters apart from the SQL (server-side binding): Django's
    client-side cursor quotes each array element into the SQL text in Python."""
    import psycopg

    connection.ensure_connection()
    return psycopg.Cursor(connection.connection)


def _json_array(values) -> str:
    return orjson.dumps(list(values)).decode()


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _value_counts(org_id: int, keys: list[tuple[str, datetime, str]]) -> dict[tuple, int]:
    """How many values each (grain, bucket, dim) keeps a row for (PostgreSQL)."""
    if not keys:
        return {}
    if connection.vendor == "sqlite":
        counts: dict[tuple, int] = {}
        qs = Rollup.objects.filter(org_id=org_id, overflow=False, grain__in={k[0] for k in keys},
                                   bucket__in=sorted({k[1] for k in keys}), dim__in=sorted({k[2] for k in keys}))
        wanted = set(keys)
        for grain, bucket, dim, n in qs.order_by().values_list("grain", "bucket", "dim").annotate(n=models.Count("id")):
            if (grain, utc(bucket), dim) in wanted:
                counts[(grain, utc(bucket), dim)] = n
        return counts
    with _bound_cursor() as cursor:
        cursor.execute(
            f"SELECT r.grain, r.bucket, r.dim, count(*) FROM {Rollup._meta.db_table} r "
            "JOIN unnest(%s::text[], %s::timestamptz[], %s::text[]) AS k(grain, bucket, dim) "
            "ON r.grain = k.grain AND r.bucket = k.bucket AND r.dim = k.dim "
            "WHERE r.org_id = %s AND NOT r.overflow GROUP BY 1, 2, 3",
            [[k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys], org_id])
        return {(grain, utc(bucket), dim): n for grain, bucket, dim, n in cursor.fetchall()}


def _existing_values(org_id: int, wanted: dict[tuple[str, datetime, str], set[str]]) -> set[tuple]:
    """Which of the wanted values have a row of their own (PostgreSQL)."""
    keys = [(*key, value) for key, values in wanted.items() for value in values]
    if not keys:
        return set()
    if connection.vendor == "sqlite":
        rows = _matching(org_id, [(g, b, d, False, v) for g, b, d, v in keys], ())
        return {(g, b, d, v) for (g, b, d, _, v), _ in rows}
    with _bound_cursor() as cursor:
        cursor.execute(
            f"SELECT r.grain, r.bucket, r.dim, r.value FROM {Rollup._meta.db_table} r "
            "JOIN unnest(%s::text[], %s::timestamptz[], %s::text[], %s::text[]) AS k(grain, bucket, dim, value) "
            "ON r.grain = k.grain AND r.bucket = k.bucket AND r.dim = k.dim AND r.value = k.value "
            "WHERE r.org_id = %s AND NOT r.overflow",
            [[k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys], [k[3] for k in keys], org_id])
        return {(grain, utc(bucket), dim, value) for grain, bucket, dim, value in cursor.fetchall()}


_SKETCHES = ("latency", "ttft")
_WRITTEN = [*SCALARS, *_SKETCHES, "first_at", "last_at", "label"]
_KEY = ["org_id", "grain", "bucket", "dim", "value", "overflow"]


def _converters(names: list[str]) -> list[tuple[str, Any]]:
    """Per column: None to pass the value as is, else Django's conversion (JSON, decimals, times)."""
    special = (models.JSONField, models.DecimalField, models.DateTimeField)
    out = []
    for name in names:
        field_ = Rollup._meta.get_field(name.removesuffix("_id") if name.endswith("_id") else name)
        if isinstance(field_, special):
            out.append((name, lambda value, f=field_: f.get_db_prep_save(value, connection)))
        else:
            out.append((name, None))
    return out


def _write(inserts: list[Rollup], updates: list[Rollup]) -> None:
    """INSERT and UPDATE many rows a statement (bulk_update's CASE expressions cost ~100x more)."""
    table = Rollup._meta.db_table
    quote = connection.ops.quote_name
    postgres = connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        if inserts:
            names = _KEY + _WRITTEN
            rows = _values(inserts, names)
            columns = ", ".join(quote(n) for n in names)
            if postgres:
                for chunk in _chunks(rows, 500):
                    marks = ", ".join(["(" + ", ".join(["%s"] * len(names)) + ")"] * len(chunk))
                    cursor.execute(f"INSERT INTO {table} ({columns}) VALUES {marks}", [v for row in chunk for v in row])
            else:
                cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(names))})", rows)
        if updates:
            rows = [row + [update.pk] for row, update in zip(_values(updates, _WRITTEN), updates)]
            if postgres:
                # One statement per chunk: PostgreSQL updates them together, not one round trip each.
                casts = [_PG_TYPES[name] for name in _WRITTEN] + ["bigint"]
                one = "(" + ", ".join(f"%s::{cast}" for cast in casts) + ")"
                sets = ", ".join(f"{quote(n)} = v.{quote(n)}" for n in _WRITTEN)
                aliases = ", ".join(quote(n) for n in [*_WRITTEN, "pk"])
                for chunk in _chunks(rows, 500):
                    cursor.execute(f"UPDATE {table} AS t SET {sets} FROM (VALUES {', '.join([one] * len(chunk))}) "
                                   f"AS v({aliases}) WHERE t.id = v.pk", [v for row in chunk for v in row])
            else:
                cursor.executemany(f"UPDATE {table} SET {', '.join(f'{quote(n)} = %s' for n in _WRITTEN)} "
                                   "WHERE id = %s", rows)


_PG_TYPES = {**{name: "bigint" for name in SCALARS}, "cost_usd": "numeric", "saved_usd": "numeric",
             "latency": "text", "ttft": "text", "first_at": "timestamptz", "last_at": "timestamptz", "label": "text"}


def _values(rows: list[Rollup], names: list[str]) -> list[list[Any]]:
    converters = _converters(names)
    return [[convert(row.__dict__[name]) if convert else row.__dict__[name] for name, convert in converters]
            for row in rows]


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _store(row: Rollup, measures: Measures) -> None:
    for name in SCALARS:
        setattr(row, name, getattr(measures, name))
    row.latency = _json_text(measures.latency.to_json())
    row.ttft = _json_text(measures.ttft.to_json())
    row.first_at, row.last_at = measures.first_at, measures.last_at
    row.label = measures.label


def _existing(org_id: int, changes: dict[Key, Measures]) -> tuple[dict[tuple, Rollup], dict[tuple, int]]:
    """The rows the changes touch, and how many values each (grain, bucket, dim) keeps."""
    buckets: dict[str, set[datetime]] = {}
    dims, values = set(), set()
    for _, grain, bucket, dim, value in changes:
        buckets.setdefault(grain, set()).add(bucket)
        dims.add(dim)
        values.add(value)
    when = Q()
    for grain, moments in buckets.items():
        when |= Q(grain=grain, bucket__in=sorted(moments))
    base = Rollup.objects.filter(when, org_id=org_id, dim__in=sorted(dims))
    existing = {}
    wanted = sorted(v for v in values if len(v) <= MAX_VALUE)
    for start in range(0, len(wanted), 2000):
        chunk = wanted[start : start + 2000]
        for row in base.filter(Q(value__in=chunk) | Q(overflow=True)):
            existing[(row.grain, row.bucket, row.dim, row.overflow, row.value)] = row
    if not wanted:
        for row in base.filter(overflow=True):
            existing[(row.grain, row.bucket, row.dim, row.overflow, row.value)] = row
    capped = [d for d in dims if d]
    counts = {}
    if capped:
        rows = (base.filter(dim__in=sorted(capped), overflow=False).exclude(grain=ALLTIME).order_by()
                .values_list("grain", "bucket", "dim").annotate(n=models.Count("id")))
        counts = {(grain, utc(bucket), dim): n for grain, bucket, dim, n in rows}
    existing = {(g, utc(b), d, o, v): row for (g, b, d, o, v), row in existing.items()}
    return existing, counts


def utc(moment: datetime) -> datetime:
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt_timezone.utc)
    return moment.astimezone(dt_timezone.utc)


def _recount_span(row: Rollup) -> None:
    column = HIGH_DIMS[row.dim]
    logs = RequestLog.objects.filter(org_id=row.org_id, **{column: row.value})
    if row.grain != ALLTIME:
        bucket = utc(row.bucket)
        logs = logs.filter(created_at__gte=bucket, created_at__lt=bucket + GRAINS[row.grain])
    span = logs.aggregate(first=models.Min("created_at"), last=models.Max("created_at"))
    row.first_at, row.last_at = span["first"], span["last"]


# --- Coverage and rebuilding ------------------------------------------------------------------


def covered_from(org_id: int) -> datetime | None:
    """From when the org's rollups hold all its logs (None: not built)."""
    return RollupCoverage.objects.filter(org_id=org_id).values_list("covered_from", flat=True).first()


def covered_orgs(org_ids: list[int], start: datetime) -> set[int]:
    """Which of the orgs have rollups holding all their logs from `start` on."""
    return set(RollupCoverage.objects.filter(org_id__in=org_ids, covered_from__lte=start)
               .values_list("org_id", flat=True))


def cover_new_org(org_id: int) -> None:
    """A new org has no logs: its rollups are complete from the start."""
    RollupCoverage.objects.get_or_create(org_id=org_id, defaults={"covered_from": EPOCH,
                                                                  "alltime_at": timezone.now()})


def alltime_counted(org_id: int) -> bool:
    """Whether the org's sessions' all-time rows hold every log (rebuilt since they were added)."""
    return RollupCoverage.objects.filter(org_id=org_id, alltime_at__isnull=False).exists()


def rebuild(org_id: int, since: datetime | None = None, *, chunk: int = 20_000, progress=None) -> int:
    """Recompute an org's rollups from its rows (from `since`, rounded down to a week; else all).

    One transaction per day with logs, holding the org's rollup lock: the rollups from the end
    of the previous such day to the end of this one are deleted and this day's rows counted
    again. A log the writer inserts meanwhile is counted once either way: committed before its
    day's turn, the rebuild counts it; after, its own transaction adds it (it waits for the
    lock). Returns the number of logs counted."""
    logs = RequestLog.objects.filter(org_id=org_id)
    # From a week's start: a week's row is deleted and counted again with its first day.
    cursor = floor(since, "w") if since else EPOCH
    start = cursor
    total = logs.filter(created_at__gte=start).count()
    done = 0
    while cursor is not None:
        with transaction.atomic():
            _lock(org_id)
            first = logs.filter(created_at__gte=cursor).aggregate(first=models.Min("created_at"))["first"]
            if first is None:
                Rollup.objects.filter(org_id=org_id, bucket__gte=cursor).exclude(grain=ALLTIME).delete()
                cursor = None
                continue
            day = floor(first, "d")
            following = day + GRAINS["d"]
            Rollup.objects.filter(org_id=org_id, bucket__gte=cursor, bucket__lt=following).exclude(
                grain=ALLTIME).delete()
            rows = (logs.filter(created_at__gte=day, created_at__lt=following).order_by("created_at")
                    .only(*LOG_FIELDS))
            batch: list[RequestLog] = []
            for row in rows.iterator(chunk_size=chunk):
                batch.append(row)
                if len(batch) >= chunk:
                    add(batch, alltime=False)
                    done += len(batch)
                    batch = []
                    if progress:
                        progress(done, total)
            add(batch, alltime=False)
            done += len(batch)
            cursor = following
        if progress:
            progress(done, total)
    rebuild_alltime(org_id, chunk=chunk)
    with transaction.atomic():
        coverage, _ = RollupCoverage.objects.select_for_update().get_or_create(org_id=org_id)
        if coverage.covered_from is None or coverage.covered_from > start:
            coverage.covered_from = start
        coverage.rebuilt_at = timezone.now()
        coverage.save()
    return done


def rebuild_alltime(org_id: int, *, chunk: int = 20_000) -> int:
    """Count the org's sessions' all-time rows again from every log with a session, in one
    transaction holding the org's rollup lock (the log writer waits: seconds per million such logs).
    Returns the number of logs counted."""
    logs = (RequestLog.objects.filter(org_id=org_id).exclude(session_id="").order_by("session_id")
            .only(*LOG_FIELDS))
    done = 0
    with transaction.atomic():
        _lock(org_id)
        Rollup.objects.filter(org_id=org_id, grain=ALLTIME).delete()
        batch: list[RequestLog] = []
        for row in logs.iterator(chunk_size=chunk):
            batch.append(row)
            if len(batch) >= chunk:
                _apply_org(org_id, alltime_deltas(batch), 1)
                done += len(batch)
                batch = []
        if batch:
            _apply_org(org_id, alltime_deltas(batch), 1)
            done += len(batch)
        RollupCoverage.objects.update_or_create(org_id=org_id, defaults={"alltime_at": timezone.now()})
    return done


def forget_empty(org_id: int, before: datetime) -> int:
    """Delete the rollup buckets before `before` that no log is counted in any more (a purge
    emptied them). Only whole empty buckets: a value's row goes only when nothing can need it."""
    empty = list(Rollup.objects.filter(org_id=org_id, dim="", overflow=False, requests=0, bucket__lt=before)
                 .values_list("grain", "bucket"))
    # A session's all-time row once every log of it is gone (no later subtraction can need it).
    deleted = Rollup.objects.filter(org_id=org_id, grain=ALLTIME, requests__lte=0).delete()[0]
    for grain in GRAINS:
        moments = [bucket for g, bucket in empty if g == grain]
        for start in range(0, len(moments), 500):
            deleted += Rollup.objects.filter(org_id=org_id, grain=grain,
                                             bucket__in=moments[start:start + 500]).delete()[0]
    return deleted


def ceil(moment: datetime, grain: str) -> datetime:
    low = floor(moment, grain)
    return low if low == moment else low + GRAINS[grain]
