"""The aggregates from ClickHouse: summary, grouped and time series, as analytics.rollup_reads
returns them from the SQL rollups.

A range is read from `log_rollups_daily` for its whole days, `log_rollups` for the whole hours
at either end and `request_logs` for the minutes at either end (one read of each table, both
ends at once; a range that runs until now reads the open hour and day whole); all give the same
columns, the sketches' bucket maps included, and one outer query adds them up (UNION ALL, then
sum and sumMap); the merged sketch is read back into analytics.sketch.Sketch. A selection no
rollup keeps (two filters, a prompt version, body text) is read from `request_logs` alone,
within ANALYTICS_RAW_BUDGET_SECONDS (`max_execution_time`), TooSlow past it.

A query costs ~5-15 ms per table it reads however little it reads there, so a page asks few:
the dashboard's totals and charts are one query (summary_and_timeseries), its top lists one more
(grouped_many).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone

from .. import rollups
from ..queries import Selection, TooSlow
from ..rollups import OPEN_END, PERCENTILES, PROPERTY_PREFIX, SHADOW_DIM, property_text
from ..sketch import Sketch
from . import client, moment
from .schema import FILLED, ZERO_BUCKET, measures

_COLUMN_TYPES = {"user_id": "String", "session_id": "String", "model": "String", "provider": "String",
                 "status": "Int32", "cache_hit": "Bool", "request_name": "String", "prompt_id": "String",
                 "prompt_version": "Int32"}
# The raw expression of each dimension: the values the view stores (schema._PAIRS).
_DIM_EXPRESSIONS = {"": "''", "model": "toString(model)", "provider": "toString(provider)",
                    "status": "toString(status)", "cache_hit": "if(cache_hit, '1', '0')",
                    "streamed": "if(streamed, '1', '0')", "cache_match": "toString(cache_match)", "user": "user_id",
                    "session": "session_id", "name": "request_name", "prompt": "prompt_id",
                    SHADOW_DIM: "toString(toDecimal64(floor(round(assumeNotNull(similarity) * 100, 6)) / 100, 2))"}
_ORDERS = {"count": "t_requests", "cost_usd": "t_cost_usd", "errors": "t_errors", "last": "t_last_at",
           "prompt_tokens": "t_prompt_tokens", "completion_tokens": "t_completion_tokens", "group_key": "k"}
_DT64 = "DateTime64(6, 'UTC')"
_DT = "DateTime('UTC')"
_INTERVALS = {"minute": "minute", "hour": "hour", "day": "day"}
_SUMS = rollups.SCALARS
_SKETCHES = ("latency", "latency_low", "latency_high", "ttft", "ttft_low", "ttft_high")
_ROLLUP_COLUMNS = ", ".join((*_SUMS, "first_at", "last_at", *_SKETCHES))


class _Query:
    """Parameters and the SQL that binds them."""

    def __init__(self, org_id: int):
        self.params: dict[str, Any] = {"org": org_id}

    def bind(self, value: Any, kind: str) -> str:
        if isinstance(value, datetime):
            value = moment(value) if kind == _DT64 else value.astimezone(dt_timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f"{{{name}:{kind}}}"


def _raw_where(q: _Query, selection: Selection, lo: datetime | None, hi: datetime | None) -> list[str]:
    where = ["org_id = {org:UInt64}"]
    if lo is not None:
        where.append(f"created_at >= {q.bind(lo, _DT64)}")
    if hi is not None:
        where.append(f"created_at < {q.bind(hi, _DT64)}")
    for name, value in selection.filters.items():
        if value is None:
            continue
        if name == "status" and not isinstance(value, int):
            value = int(value) if str(value).lstrip("-").isdigit() else None
            if value is None:
                where.append("0")
                continue
        where.append(f"{name} = {q.bind(value, _COLUMN_TYPES[name])}")
    for name, value in selection.properties.items():
        where.append(f"properties[{q.bind(name, 'String')}] = {q.bind(property_text(value) or '', 'String')}"
                     f" AND mapContains(properties, {q.bind(name, 'String')})")
    if selection.search:
        text = q.bind(selection.search, "String")
        where.append(f"(positionCaseInsensitiveUTF8(request_body, {text}) > 0"
                     f" OR positionCaseInsensitiveUTF8(response_body, {text}) > 0)")
    if getattr(selection, "conditions", None):
        where.append(_conditions_sql(q, selection.conditions))
    return where


# The explorer's conditions (analytics.queries.Condition) in ClickHouse, meaning what they mean in SQL:
# ≠ keeps the logs without a value (or without the property), contains is case-insensitive.
_CONDITION_TYPES = {"latency_ms": "Float64", "ttft_ms": "Float64", "cost_usd": "Decimal(38, 10)",
                    "prompt_tokens": "Int64", "completion_tokens": "Int64", "total_tokens": "Float64",
                    "status": "Int32", "cache_hit": "Bool"}
_CONDITION_COLUMNS = {"total_tokens": "(ifNull(prompt_tokens, 0) + ifNull(completion_tokens, 0))"}
_COMPARE = {"eq": "=", "gt": ">", "lt": "<"}


def _conditions_sql(q: _Query, conditions) -> str:
    parts = [_condition_sql(q, condition) for condition in conditions.items]
    return "(" + (" OR " if conditions.any_of else " AND ").join(parts) + ")"


def _condition_sql(q: _Query, condition) -> str:
    if condition.is_property:
        name = q.bind(condition.property_name, "String")
        value = q.bind(str(condition.value), "String")
        if condition.op == "contains":
            return f"(mapContains(properties, {name}) AND positionCaseInsensitiveUTF8(properties[{name}], {value}) > 0)"
        equal = f"(mapContains(properties, {name}) AND properties[{name}] = {value})"
        return equal if condition.op == "eq" else f"NOT {equal}"
    column = _CONDITION_COLUMNS.get(condition.field, condition.field)
    if condition.field == "status" and condition.value == "error":
        errors = "(status >= 400 OR status < 200)"
        return errors if condition.op == "eq" else f"NOT {errors}"
    if condition.op == "contains":
        return f"positionCaseInsensitiveUTF8(toString({column}), {q.bind(condition.value, 'String')}) > 0"
    kind = _CONDITION_TYPES.get(condition.field, "String")
    value = condition.value
    if kind.startswith("Int") and isinstance(value, float):  # status:lt:200.5 or tokens:gt:10.5
        kind = "Float64"
    if kind == "Float64":
        value = float(value)
    elif kind.startswith("Decimal"):  # a cost finer than the column's 10 places compares as it rounds
        value = str(Decimal(value).quantize(Decimal("1e-10")))
    bound = q.bind(value, kind)
    if condition.op == "ne":
        return f"({column} IS NULL OR {column} != {bound})"
    return f"ifNull({column} {_COMPARE[condition.op]} {bound}, 0)"


def _dim_expression(q: _Query, dim: str, where: list[str]) -> str:
    """The raw rows' value of a dimension; logs that do not count under it are left out."""
    if dim.startswith(PROPERTY_PREFIX):
        name = q.bind(dim[len(PROPERTY_PREFIX):], "String")
        where.append(f"mapContains(properties, {name})")
        return f"properties[{name}]"
    if dim == SHADOW_DIM:
        where.append("cache_match = 'shadow' AND similarity IS NOT NULL")
    return _DIM_EXPRESSIONS[dim]


def _hours(start: datetime, end: datetime) -> tuple[datetime, datetime] | None:
    """The whole hours inside [start, end), or None when there is none."""
    first = start.astimezone(dt_timezone.utc).replace(minute=0, second=0, microsecond=0)
    if first < start:
        first += timedelta(hours=1)
    last = end.astimezone(dt_timezone.utc).replace(minute=0, second=0, microsecond=0)
    return (first, last) if first < last else None


def _days(first: datetime, last: datetime) -> tuple[datetime, datetime] | None:
    """The whole days (UTC) inside [first, last), both hour-aligned, or None."""
    a = first.replace(hour=0)
    if a < first:
        a += timedelta(days=1)
    b = last.replace(hour=0)
    return (a, b) if a < b else None


def _bounds(selection: Selection) -> tuple[datetime, datetime]:
    """The range to read. One that runs until now (no end, or an end that is now: the last 30 days)
    ends after tomorrow, so the buckets still open are read whole from the rollups rather than
    their minutes from the raw rows, as analytics.rollup_reads reads them: they hold nothing later
    than now (a log stamped ahead of now, a client's clock skew, counts too)."""
    start = selection.start or datetime(2000, 1, 1, tzinfo=dt_timezone.utc)
    now = timezone.now()
    if selection.end is None or abs(selection.end - now) <= OPEN_END:
        return start, rollups.floor(now, "d") + timedelta(days=2)
    return start, selection.end


def _spans(start: datetime, end: datetime, whole_hours: bool, whole_days: bool
           ) -> tuple[list[tuple[str, list[tuple[datetime, datetime]]]], list[tuple[datetime, datetime]]]:
    """Where [start, end) is read: the rollup tables with their ranges of buckets (the whole days
    from the daily table, the whole hours at either end from the hourly one), then the raw rows'
    ranges (the minutes at either end)."""
    hours = _hours(start, end) if whole_hours else None
    if hours is None:
        return [], [(start, end)] if start < end else []
    days = _days(*hours) if whole_days else None
    tables = [("log_rollups", [hours])] if days is None else [
        ("log_rollups_daily", [days]),
        ("log_rollups", [(lo, hi) for lo, hi in ((hours[0], days[0]), (days[1], hours[1])) if lo < hi])]
    raw = [(lo, hi) for lo, hi in ((start, hours[0]), (hours[1], end)) if lo < hi]
    return [(table, spans) for table, spans in tables if spans], raw


def _within(q: _Query, column: str, spans: list[tuple[datetime, datetime]], kind: str) -> str:
    """The column in any of the [lo, hi) spans: both ends of a range in one read of the table (each
    read costs ~5-10 ms however little it reads)."""
    return "(" + " OR ".join(f"({column} >= {q.bind(lo, kind)} AND {column} < {q.bind(hi, kind)})"
                             for lo, hi in spans) + ")"


def _parts(q: _Query, selection: Selection, key_dim: str | None, rollup_key: str, raw_key: str | None,
           whole_hours: bool = True, values: list[str] | None = None,
           whole_days: bool = True) -> tuple[list[str], bool]:
    """The UNION ALL parts (rollups, then raw rows) for the selection, grouped by `k`; and whether
    the raw rows answer alone (no rollup could)."""
    start, end = _bounds(selection)
    condition = rollups.condition(selection, key_dim)
    tables, raw_spans = _spans(start, end, condition is not None and whole_hours, whole_days)
    parts = []
    for table, spans in tables:
        dim, value = condition
        row_dim = key_dim if key_dim is not None else dim
        where = ["org_id = {org:UInt64}", f"dim = {q.bind(row_dim, 'String')}", _within(q, "bucket", spans, _DT)]
        if dim:
            where.append(f"value = {q.bind(value, 'String')}")
        if values is not None:
            where.append(f"value IN {q.bind(values, 'Array(String)')}")
        parts.append(f"SELECT {rollup_key} AS k, {_ROLLUP_COLUMNS} FROM {table} WHERE {' AND '.join(where)}")
    if raw_spans:
        where = [*_raw_where(q, selection, None, None), _within(q, "created_at", raw_spans, _DT64)]
        key = raw_key if raw_key is not None else _dim_expression(q, key_dim, where)
        if values is not None:
            where.append(f"{key} IN {q.bind(values, 'Array(String)')}")
        parts.append(f"SELECT {key} AS k, {measures()} FROM request_logs WHERE {' AND '.join(where)} GROUP BY k")
    return parts, condition is None


def _outer(parts: list[str], percentiles: tuple[str, ...] | None, keys: str = "k", group_by: str = "k") -> str:
    merges = ""
    if percentiles != ():
        merges = "".join(f", sumMap({name}) AS t_{name}, min({name}_low) AS t_{name}_low, "
                         f"max({name}_high) AS t_{name}_high" for name in ("latency", "ttft"))
    # Totals named t_*: the raw parts need prefer_column_name_to_alias (their sums are named as
    # the columns they add up), which would make these names mean the inner columns.
    sums = ", ".join(f"sum({name}) AS t_{name}" for name in _SUMS)
    union = " UNION ALL ".join(parts)
    return (f"SELECT {keys}, {sums}, min(first_at) AS t_first_at, max(last_at) AS t_last_at{merges} "
            f"FROM ({union}) GROUP BY {group_by} HAVING t_requests > 0")


def _run(sql: str, q: _Query, raw_only: bool) -> list[dict[str, Any]]:
    options: dict[str, Any] = {"prefer_column_name_to_alias": 1}
    budget = getattr(settings, "ANALYTICS_RAW_BUDGET_SECONDS", None)
    if raw_only and budget:
        options["max_execution_time"] = budget
    from clickhouse_connect.driver.exceptions import DatabaseError

    try:
        result = client().query(sql, parameters=q.params, settings=options)
    except DatabaseError as exc:
        if "TIMEOUT_EXCEEDED" in str(exc) and raw_only and budget:
            raise TooSlow(budget) from None
        raise
    return list(result.named_results())


def _sketch(row: dict[str, Any], name: str) -> Sketch:
    """A merged sketch read back (analytics.sketch), which interpolates like percentile_cont."""
    sketch = Sketch()
    for index, count in (row.get(name) or {}).items():
        if index == ZERO_BUCKET:
            sketch.zeros += count
        else:
            sketch.buckets[index] = count
    sketch.count = sketch.zeros + sum(sketch.buckets.values())
    if sketch.count:
        sketch.low, sketch.high = float(row[f"{name}_low"]), float(row[f"{name}_high"])
    return sketch


def _finish(row: dict[str, Any] | None, percentiles: tuple[str, ...] | None) -> dict[str, Any]:
    row = {name[2:] if name.startswith("t_") else name: value for name, value in (row or {}).items()}
    count = int(row.get("requests") or 0)
    errors = int(row.get("errors") or 0)
    hits = int(row.get("cache_hits") or 0)
    out = {
        "count": count, "errors": errors, "error_rate": errors / count if count else 0.0,
        "cost_usd": float(row.get("cost_usd") or 0), "prompt_tokens": int(row.get("prompt_tokens") or 0),
        "completion_tokens": int(row.get("completion_tokens") or 0), "cache_hits": hits,
        "saved_usd": float(row.get("saved_usd") or 0), "unpriced": int(row.get("unpriced") or 0),
    }
    out["total_tokens"] = out["prompt_tokens"] + out["completion_tokens"]
    out["cache_hit_rate"] = hits / count if count else 0.0
    sketches: dict[str, Sketch] = {}
    for name, (sketch, level) in PERCENTILES.items():
        value = None
        if (percentiles is None or name in percentiles) and count:
            if sketch not in sketches:
                sketches[sketch] = _sketch(row, sketch)
            value = sketches[sketch].quantile(level)
        out[name] = None if value is None else round(float(value), 3)
    return out


def summary(selection: Selection, percentiles: tuple[str, ...] | None = None) -> dict[str, Any]:
    q = _Query(selection.org.pk)
    parts, raw_only = _parts(q, selection, None, "''", "''")
    rows = _run(_outer(parts, percentiles), q, raw_only)
    return _finish(rows[0] if rows else None, percentiles)


def grouped(selection: Selection, dim: str, *, order_by: str = "-count", limit: int | None = None,
            exclude_empty: bool = False, percentiles: tuple[str, ...] | None = None,
            contains: str = "") -> list[dict[str, Any]]:
    """Per value of a rollup dimension, with first and last request and the exact cost (the users
    and sessions lists' extras)."""
    field = order_by.lstrip("-")
    if field not in _ORDERS:
        raise ValueError(f"cannot order by {order_by!r}")
    values = None
    if order_by == "-last" and limit:
        values = _newest_values(selection, dim, limit, exclude_empty, contains)
    q = _Query(selection.org.pk)
    parts, raw_only = _parts(q, selection, dim, "value", None, values=values)
    sql = _outer(parts, percentiles)
    if exclude_empty:
        sql += " AND k != ''"
    if contains:
        sql += f" AND positionCaseInsensitiveUTF8(k, {q.bind(contains, 'String')}) > 0"
    direction = "DESC" if order_by.startswith("-") else "ASC"
    sql += f" ORDER BY {_ORDERS[field]} {direction}, k"
    if limit:
        sql += f" LIMIT {int(limit)}"
    out = []
    for row in _run(sql, q, raw_only):
        out.append({"key": rollups.typed_key(dim, row["k"]), **_finish(row, percentiles), "first": row["t_first_at"],
                    "last": row["t_last_at"], "cost": Decimal(row["t_cost_usd"] or 0)})
    return out


_WINDOWS = (timedelta(hours=1), timedelta(hours=6), timedelta(days=1), timedelta(days=7))


def _newest_values(selection: Selection, dim: str, limit: int, exclude_empty: bool, contains: str) -> list[str] | None:
    """The `limit` values (sessions, users) seen last, from the newest hours back: if `limit` values
    were seen in the last hour, they are the ones seen last in any longer range, so the list need
    not add up a month of sessions to keep 200. None: take the whole range."""
    end = selection.end or timezone.now()
    for window in _WINDOWS:
        start = end - window
        if selection.start is not None and start <= selection.start:
            return None
        narrow = Selection(selection.org, start, end, dict(selection.filters), dict(selection.properties),
                           selection.search)
        q = _Query(selection.org.pk)
        parts, raw_only = _parts(q, narrow, dim, "value", None)
        sql = _outer(parts, ())
        if exclude_empty:
            sql += " AND k != ''"
        if contains:
            sql += f" AND positionCaseInsensitiveUTF8(k, {q.bind(contains, 'String')}) > 0"
        found = _run(sql + f" ORDER BY t_last_at DESC, k LIMIT {int(limit)}", q, raw_only)
        if len(found) >= limit:
            return [row["k"] for row in found]
    return None


def distinct_count(selection: Selection, dim: str) -> int:
    q = _Query(selection.org.pk)
    parts, raw_only = _parts(q, selection, dim, "value", None)
    union = " UNION ALL ".join(parts)
    sql = f"SELECT count() AS n FROM (SELECT k FROM ({union}) GROUP BY k HAVING sum(requests) > 0 AND k != '')"
    return int(_run(sql, q, raw_only)[0]["n"])


def timeseries(selection: Selection, interval: str, start: datetime, end: datetime,
               percentiles: tuple[str, ...] | None = None) -> dict[datetime, dict[str, Any]]:
    unit = _INTERVALS[interval]
    bounded = Selection(selection.org, max(filter(None, (selection.start, start))),
                        min(filter(None, (selection.end, end))) if end else selection.end,
                        dict(selection.filters), dict(selection.properties), selection.search)
    q = _Query(selection.org.pk)
    parts, raw_only = _parts(q, bounded, None, f"toDateTime(toStartOfInterval(bucket, INTERVAL 1 {unit}), 'UTC')",
                             f"toDateTime(toStartOfInterval(created_at, INTERVAL 1 {unit}), 'UTC')",
                             whole_hours=interval != "minute", whole_days=interval == "day")
    rows = _run(_outer(parts, percentiles) + " ORDER BY k", q, raw_only)
    return {_utc(row["k"]): _finish(row, percentiles) for row in rows}


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=dt_timezone.utc) if moment.tzinfo is None else moment


def summary_and_timeseries(selection: Selection, interval: str,
                           percentiles: tuple[str, ...] | None = None) -> tuple[dict[str, Any], dict[datetime, dict]]:
    """summary(selection) and timeseries(selection, interval, selection.start, selection.end) in one
    query (the dashboard's tiles and charts): the same rows grouped per bucket and in all (GROUPING
    SETS), so the figures are those of the two reads, for one read of the tables. The buckets'
    percentiles are `percentiles`, the total's all of them."""
    unit = _INTERVALS[interval]
    q = _Query(selection.org.pk)
    parts, raw_only = _parts(q, selection, None, f"toDateTime(toStartOfInterval(bucket, INTERVAL 1 {unit}), 'UTC')",
                             f"toDateTime(toStartOfInterval(created_at, INTERVAL 1 {unit}), 'UTC')",
                             whole_hours=interval != "minute", whole_days=interval == "day")
    sql = _outer(parts, None, "k, grouping(k) AS is_total", "GROUPING SETS ((k), ())")
    rows = _run(sql + " ORDER BY is_total, k", q, raw_only)
    total = next((row for row in rows if row["is_total"]), None)
    return _finish(total, None), {_utc(row["k"]): _finish(row, percentiles) for row in rows if not row["is_total"]}


def grouped_many(selection: Selection, asks: list[tuple[str, str, int | None, bool]]
                 ) -> list[tuple[list[dict[str, Any]], int]] | None:
    """grouped() without percentiles of several dimensions of one selection, in one query (a query
    costs ~5-15 ms per table it reads, however little it reads there): per ask (dim, order_by,
    limit, exclude_empty), its rows as grouped() orders them and how many values other than ""
    it has in all (distinct_count). None for a selection with a filter, which no rollup of two
    dimensions keeps."""
    dims = [dim for dim, *_ in asks]
    if rollups.condition(selection) != ("", "") or len(set(dims)) < len(dims):
        return None
    q = _Query(selection.org.pk)
    start, end = _bounds(selection)
    bound = {dim: q.bind(dim, "String") for dim in dims}
    columns = ", ".join((*_SUMS, "first_at", "last_at"))
    tables, raw_spans = _spans(start, end, True, True)
    parts = [f"SELECT dim AS d, value AS k, {columns} FROM {table} WHERE org_id = {{org:UInt64}} "
             f"AND dim IN ({', '.join(bound.values())}) AND {_within(q, 'bucket', spans, _DT)}"
             for table, spans in tables]
    pairs = []  # (dimension, value) of a raw log under each dimension it counts under, as the view keeps them
    for dim in dims:
        if dim.startswith(PROPERTY_PREFIX):
            name = q.bind(dim[len(PROPERTY_PREFIX):], "String")
            pairs.append(f"if(mapContains(properties, {name}), [({bound[dim]}, properties[{name}])], [])")
        elif dim == SHADOW_DIM:
            pairs.append(f"if(cache_match = 'shadow' AND similarity IS NOT NULL, "
                         f"[({bound[dim]}, {_DIM_EXPRESSIONS[dim]})], [])")
        else:
            pairs.append(f"[({bound[dim]}, {_DIM_EXPRESSIONS[dim]})]")
    if raw_spans:
        where = " AND ".join([*_raw_where(q, selection, None, None), _within(q, "created_at", raw_spans, _DT64)])
        parts.append(f"SELECT pair.1 AS d, pair.2 AS k, {measures()} FROM request_logs "
                     f"ARRAY JOIN arrayConcat({', '.join(pairs)}) AS pair WHERE {where} GROUP BY d, k")
    parts = [f"SELECT d, k, {columns} FROM ({part})" for part in parts]
    orders, keep, empty = [], [], []  # keep: multiIf's (condition, limit) pairs
    for dim, order_by, limit, exclude_empty in asks:
        field = order_by.lstrip("-")
        if field not in _ORDERS:
            raise ValueError(f"cannot order by {order_by!r}")
        column = _ORDERS[field]
        # Each ask's order applies to its own dimension's rows; the others see a constant there.
        orders.append(f"if(d = {bound[dim]}, {column}, defaultValueOfArgumentType({column})) "
                      f"{'DESC' if order_by.startswith('-') else 'ASC'}")
        if limit:
            keep += [f"d = {bound[dim]}", str(int(limit))]
        if exclude_empty:
            empty.append(bound[dim])
    sql = _outer(parts, (), "d, k", "d, k")
    if empty:
        sql += f" AND NOT (k = '' AND d IN ({', '.join(empty)}))"
    # Each dimension's rows up to its limit: a condition on `d` out here would be pushed down into
    # the reads (a third slower), one on a column made beside the rank is not.
    limits = f"multiIf({', '.join(keep)}, 18446744073709551615)" if keep else "18446744073709551615"
    sql = (f"SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY d ORDER BY {', '.join(orders)}, k) AS n, "
           f"countIf(k != '') OVER (PARTITION BY d) AS n_values, {limits} AS n_limit FROM ({sql})) "
           "WHERE n <= n_limit ORDER BY d, n")
    found: dict[str, list[dict[str, Any]]] = {dim: [] for dim in dims}
    for row in _run(sql, q, False):
        found[row["d"]].append(row)
    return [([{"key": rollups.typed_key(dim, row["k"]), **_finish(row, ())} for row in found[dim]],
             int(found[dim][0]["n_values"]) if found[dim] else 0) for dim in dims]


def picker_values(org_id: int, since: datetime, per_dim: int = 50) -> dict[str, set[str]]:
    """Values of the model, provider, request name and property dimensions seen since `since`
    (the explorer's pickers), at most `per_dim` each."""
    q = _Query(org_id)
    result = client().query(
        "SELECT dim, value FROM log_rollups WHERE org_id = {org:UInt64} AND bucket >= "
        f"{q.bind(since, _DT)} AND (dim IN ('model', 'provider', 'name') OR startsWith(dim, 'p:')) "
        f"GROUP BY dim, value HAVING sum(requests) > 0 ORDER BY dim, value LIMIT {int(per_dim)} BY dim",
        parameters=q.params)
    out: dict[str, set[str]] = {}
    for dim, value in result.result_rows:
        out.setdefault(dim, set()).add(value)
    return out


def session_facts(org_id: int, since: datetime, session_ids: list[str]) -> dict[str, tuple[str, int]]:
    """{session id: (its name, distinct users)} for the sessions list, from their logs since `since`.
    A session whose first request is not earlier has them in its all-time row (session_totals: the
    largest sessions of a month are spread over the month, whose every log the bloom index would
    visit); the others' logs are read up to the last of them (all from the logs while session_totals
    is not filled)."""
    if not session_ids:
        return {}
    q = _Query(org_id)
    rows = client().query(
        f"SELECT {FILLED} AS filled, session_id, first_at, last_at, name, "
        "length(mapFilter((user, n) -> n > 0, users)) FROM session_totals FINAL WHERE org_id IN ({org:UInt64}, 0) "
        f"AND ({FILLED} OR session_id IN {q.bind(session_ids, 'Array(String)')}) ORDER BY filled DESC",
        parameters=q.params).result_rows
    filled = bool(rows) and rows[0][0]
    facts: dict[str, tuple[str, int]] = {}
    until = None  # the last request of the sessions that began before `since`
    for _, session, first, last, name, users in rows[1:] if filled else ():
        if first >= since:
            facts[session] = (name, int(users))
        else:
            until = last if until is None else max(until, last)
    rest = [session for session in session_ids if session not in facts]
    if rest and (until is not None or not filled):
        q = _Query(org_id)
        where = ["org_id = {org:UInt64}", f"created_at >= {q.bind(since, _DT64)}",
                 f"session_id IN {q.bind(rest, 'Array(String)')}"]
        if until is not None:
            where.append(f"created_at <= {q.bind(until, _DT64)}")
        result = client().query(
            "SELECT session_id, max(session_name), uniqExactIf(user_id, user_id != '') FROM request_logs "
            f"WHERE {' AND '.join(where)} GROUP BY session_id", parameters=q.params)
        facts.update({session: (name, int(users)) for session, name, users in result.result_rows})
    return facts


def search_sessions(selection: Selection, text: str, *, order_by: str, offset: int,
                    limit: int) -> list[dict[str, Any]]:
    """The sessions whose id or name contains `text` (case-insensitive), as grouped returns them,
    from the raw rows of the range (no rollup keeps names), within the raw-read budget."""
    field = order_by.lstrip("-")
    if field not in _ORDERS:
        raise ValueError(f"cannot order by {order_by!r}")
    q = _Query(selection.org.pk)
    where = _raw_where(q, selection, selection.start, selection.end)
    pattern = q.bind(text, "String")
    where += ["session_id != ''", f"(positionCaseInsensitiveUTF8(session_id, {pattern}) > 0"
                                  f" OR positionCaseInsensitiveUTF8(session_name, {pattern}) > 0)"]
    part = f"SELECT session_id AS k, {measures()} FROM request_logs WHERE {' AND '.join(where)} GROUP BY k"
    direction = "DESC" if order_by.startswith("-") else "ASC"
    sql = _outer([part], ()) + f" ORDER BY {_ORDERS[field]} {direction}, k LIMIT {int(limit)} OFFSET {int(offset)}"
    return [{"key": row["k"], **_finish(row, ()), "first": row["t_first_at"], "last": row["t_last_at"],
             "cost": Decimal(row["t_cost_usd"] or 0)} for row in _run(sql, q, True)]


def _hours_of(q: _Query, dim: str, value: str) -> str:
    """A scalar subquery: (first hour, last hour, hours) in which a value of a dimension ("user",
    "session") has logs, from the rollups: its days with requests from the daily table, then the
    hours of the first and the last of them from the hourly one, both found by the tables' key
    (org, dim, bucket, value: within a bucket the values are sorted). A bucket whose logs were all
    deleted adds up to no request and is passed over. Where to read the value's logs instead of
    the whole table, whose bloom index on the column reads an index block for every 32,768 logs
    (and skips nothing for a user whose logs are everywhere)."""
    where = f"org_id = {{org:UInt64}} AND dim = {q.bind(dim, 'String')} AND value = {q.bind(value, 'String')}"
    days = (f"(SELECT (min(bucket), max(bucket)) FROM (SELECT bucket FROM log_rollups_daily WHERE {where} "
            "GROUP BY bucket HAVING sum(requests) > 0))")
    return (f"(SELECT (min(bucket), max(bucket), count()) FROM (SELECT bucket FROM log_rollups WHERE {where} "
            f"AND ((bucket >= {days}.1 AND bucket < {days}.1 + INTERVAL 1 DAY) "
            f"OR (bucket >= {days}.2 AND bucket < {days}.2 + INTERVAL 1 DAY)) "
            "GROUP BY bucket HAVING sum(requests) > 0))")


def user_seen(org_id: int, user_id: str) -> tuple[datetime, datetime] | None:
    """A user's first and last request ever (the user page), None for a user with no logs: the
    rollups give the first and last hour with their requests, the raw rows of those two hours the
    moments (a heavy user's logs are everywhere: their bloom index skipped nothing of 30 days)."""
    q = _Query(org_id)
    user = q.bind(user_id, "String")
    hours = _hours_of(q, "user", user_id)
    result = client().query(
        f"SELECT min(created_at), max(created_at), count() FROM request_logs WHERE org_id = {{org:UInt64}} "
        f"AND user_id = {user} AND ((created_at >= {hours}.1 AND created_at < {hours}.1 + INTERVAL 1 HOUR) "
        f"OR (created_at >= {hours}.2 AND created_at < {hours}.2 + INTERVAL 1 HOUR))", parameters=q.params)
    first, last, count = result.result_rows[0]
    if not count:
        return None
    return _utc(first), _utc(last)


def site_rows(org_ids: list[int], start: datetime, interval: str) -> list[dict[str, Any]]:
    """Every org's requests, errors and cost per `interval` bucket since `start` (the operators'
    site figures), from the all-logs rollups."""
    q = _Query(0)
    result = client().query(
        f"SELECT toDateTime(toStartOfInterval(bucket, INTERVAL 1 {_INTERVALS[interval]}), 'UTC') AS b, org_id, "
        "sum(requests) AS n, sum(errors) AS e, sum(cost_usd) AS c FROM log_rollups "
        f"WHERE dim = '' AND org_id IN {q.bind(org_ids, 'Array(UInt64)')} AND bucket >= {q.bind(start, _DT)} "
        "GROUP BY b, org_id HAVING n > 0", parameters=q.params)
    return [{"bucket": b, "org_id": org, "n": int(n), "errors": int(e), "cost": c}
            for b, org, n, e, c in result.result_rows]


def unpriced_models(org_ids: list[int], since: datetime) -> list[dict[str, Any]]:
    """Models that answered with token counts but no cost since `since`, most used first."""
    q = _Query(0)
    result = client().query(
        "SELECT toString(provider) AS provider, toString(model) AS model, count() AS requests, "
        "max(created_at) AS last_seen FROM request_logs "
        f"WHERE org_id IN {q.bind(org_ids, 'Array(UInt64)')} AND created_at >= {q.bind(since, _DT64)} "
        "AND cost_usd IS NULL AND (prompt_tokens IS NOT NULL OR completion_tokens IS NOT NULL) AND model != '' "
        "GROUP BY provider, model ORDER BY requests DESC LIMIT 500", parameters=q.params)
    return list(result.named_results())


def requests_since(org_ids: list[int], start: datetime) -> dict[int, int]:
    """Requests logged since `start` per org (usage against a monthly limit)."""
    edge = start.astimezone(dt_timezone.utc)
    hour = edge.replace(minute=0, second=0, microsecond=0)
    q = _Query(0)
    result = client().query(
        "SELECT org_id, sum(requests) FROM log_rollups WHERE dim = '' "
        f"AND org_id IN {q.bind(org_ids, 'Array(UInt64)')} AND bucket >= {q.bind(hour, _DT)} GROUP BY org_id",
        parameters=q.params)
    counted = {int(org): int(n) for org, n in result.result_rows}
    if edge > hour:  # take out the part of the first hour before `start`
        q = _Query(0)
        result = client().query(
            f"SELECT org_id, count() FROM request_logs WHERE org_id IN {q.bind(org_ids, 'Array(UInt64)')} "
            f"AND created_at >= {q.bind(hour, _DT64)} AND created_at < {q.bind(edge, _DT64)} GROUP BY org_id",
            parameters=q.params)
        for org, n in result.result_rows:
            counted[int(org)] = counted.get(int(org), 0) - int(n)
    return counted


class PromptUsage:
    """The prompt pages' usage figures (prompts.usage) from ClickHouse."""

    @staticmethod
    def prompt_request_counts(org, slugs: list[str]) -> dict[str, int]:
        q = _Query(org.pk)
        result = client().query(
            "SELECT prompt_id, count() FROM request_logs WHERE org_id = {org:UInt64} "
            f"AND prompt_id IN {q.bind(slugs, 'Array(String)')} GROUP BY prompt_id", parameters=q.params)
        return {slug: int(n) for slug, n in result.result_rows}

    @staticmethod
    def prompt_version_stats(org, slug: str) -> dict[int | None, dict[str, Any]]:
        q = _Query(org.pk)
        result = client().query(
            "SELECT prompt_version, count() AS requests, sum(cost_usd) AS cost, avg(latency_ms) AS latency, "
            "countIf(cost_usd IS NULL AND (prompt_tokens IS NOT NULL OR completion_tokens IS NOT NULL) "
            "AND status >= 200 AND status < 400) AS unpriced "
            f"FROM request_logs WHERE org_id = {{org:UInt64}} AND prompt_id = {q.bind(slug, 'String')} "
            "GROUP BY prompt_version", parameters=q.params)
        out = {}
        for row in result.named_results():
            row["requests"], row["unpriced"] = int(row["requests"]), int(row["unpriced"])
            if row["latency"] is not None and row["latency"] != row["latency"]:
                row["latency"] = None
            out[row["prompt_version"]] = row
        return out
