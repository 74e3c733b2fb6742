"""Request logs read from ClickHouse as RequestLog objects (unsaved in SQL, but marked as loaded
from a database, so templates, serializers and the feedback and scores kept by log id in SQL
treat them as the SQL rows they mirror).

- `get(org_id, log_id)`: one log with its bodies (`request_ids` gives its time, so the read is a
  primary-key range);
- `page(selection, ...)`: a page of a selection in one of the explorer's orders, bodies left out;
- `session_logs(org, session_id)`: the session page's logs, read in the session's hours;
- `models_and_properties(selection, limit)`: the user page's sample of their newest logs;
- `count(selection)`.

A log written twice by a race (ReplacingMergeTree) is shown once. In time order, pages follow
the table's order (created_at, id), read with FINAL in order, and the read stops after the page.
In the other orders (ties broken by the id's text, as PostgreSQL and SQLite order UUIDs) FINAL
would merge the whole range before sorting it: the page's keys are sorted without it, the copies
of a log counted once, then the page's rows read by key (_by_value).
"""

from __future__ import annotations

import uuid
from datetime import timezone as dt_timezone
from typing import Any

import orjson
from django.db.models.base import ModelState

from ..models import RequestLog
from ..queries import Selection
from . import client, moment
from .reads import _hours_of, _Query, _raw_where
from .store import COLUMNS

_BODIES = ("request_headers", "request_body", "response_body", "prompt_variables")
_READ = (*COLUMNS, "properties_json")
_LISTED = ", ".join(name for name in _READ if name not in _BODIES)  # a list's columns: no bodies
_ORDERS = {"created_at": "created_at", "latency_ms": "latency_ms", "cost_usd": "cost_usd",
           "completion_tokens": "completion_tokens"}
ERRORS = "(status >= 400 OR status < 200)"


def _log(values: dict[str, Any]) -> RequestLog:
    if "request_headers" in values:
        values["request_headers"] = orjson.loads(values["request_headers"]) if values["request_headers"] else {}
    if "prompt_variables" in values:
        values["prompt_variables"] = orjson.loads(values["prompt_variables"]) if values["prompt_variables"] else None
    # As they were sent (a number stays a number); the Map holds their text for filters and rollups.
    text = values.pop("properties_json", "")
    values["properties"] = orjson.loads(text) if text else dict(values.get("properties") or {})
    created = values.get("created_at")
    if created is not None and created.tzinfo is None:
        values["created_at"] = created.replace(tzinfo=dt_timezone.utc)
    log = RequestLog.__new__(RequestLog)
    for field in RequestLog._meta.concrete_fields:
        if field.attname in values:
            log.__dict__[field.attname] = values[field.attname]
        elif field.attname not in _BODIES:
            log.__dict__[field.attname] = field.get_default()
    log._state = ModelState()
    log._state.adding = False
    log._state.db = "default"
    return log


def get(org_id: int, log_id: Any) -> RequestLog | None:
    try:
        log_id = uuid.UUID(str(log_id))
    except ValueError:
        return None
    result = client().query(f"SELECT {', '.join(_READ)} FROM request_logs FINAL "
                            "WHERE org_id = {org:UInt64} AND id = {id:UUID} AND created_at IN ("
                            "SELECT created_at FROM request_ids WHERE id = {id:UUID} AND org_id = {org:UInt64}) "
                            "LIMIT 1",
                            parameters={"org": org_id, "id": str(log_id)})
    rows = list(result.named_results())
    return _log(rows[0]) if rows else None


def _where(selection: Selection, errors_only: bool) -> tuple[_Query, str]:
    q = _Query(selection.org.pk)
    where = _raw_where(q, selection, selection.start, selection.end)
    if errors_only:
        where.append(ERRORS)
    return q, " AND ".join(where)


def page(selection: Selection, *, order: str = "-created_at", offset: int = 0, limit: int = 50,
         errors_only: bool = False) -> list[RequestLog]:
    """A page of the selection's logs without their bodies, ordered like the explorer (nulls last,
    then newest id first)."""
    column = _ORDERS[order.lstrip("-")]
    direction = "DESC" if order.startswith("-") else "ASC"
    q, where = _where(selection, errors_only)
    if column == "created_at":  # the table's order: read in order, stopping after the page
        return _read(q, where, f"created_at {direction}, id {direction}", limit, offset)
    ordering = f"{column} {direction} NULLS LAST, toUInt128(id) DESC"
    found = _by_value(q, where, column, ordering, offset, limit)
    return found if found is not None else _read(q, where, ordering, limit, offset)


def _read(q: _Query, where: str, ordering: str, limit: int, offset: int = 0) -> list[RequestLog]:
    result = client().query(
        f"SELECT {_LISTED} FROM request_logs FINAL WHERE {where} "
        f"ORDER BY {ordering} LIMIT {int(limit)} OFFSET {int(offset)}", parameters=q.params)
    return [_log(row) for row in result.named_results()]


# Rows more than a page the keys' read asks for: a log stored twice (a race of two writers, which
# FINAL shows once) takes one of them.
SPARE_KEYS = 10


def _by_value(q: _Query, where: str, column: str, ordering: str, offset: int,
              limit: int) -> list[RequestLog] | None:
    """A page in the order of a column other than the time, without FINAL (which merges every row of
    the range before sorting them: 2 s over a week of 100M logs a month): the keys (time, id) down
    to the page's last, sorted from the three columns they need, then the page's rows read by key,
    a granule each. Ids tie-break in text order, as PostgreSQL and SQLite order UUIDs: toUInt128
    orders a UUID as its text does (ClickHouse's own UUID order does not).

    A log stored twice (only a race of two writers stores one twice, both copies from the same
    record) is counted once, as FINAL shows it. None, for FINAL to answer, when copies took more
    than the spare rows or differ where they are seen (in the keys read, or on the page)."""
    wanted = offset + limit
    keys = client().query(f"SELECT created_at, id, {column} FROM request_logs WHERE {where} "
                          f"ORDER BY {ordering} LIMIT {wanted + SPARE_KEYS}", parameters=q.params).result_rows
    values: dict[tuple, Any] = {}
    for created_at, log_id, value in keys:
        if not _same(values.setdefault((created_at, log_id), value), value):
            return None
    if len(keys) == wanted + SPARE_KEYS and len(values) < wanted:
        return None
    chosen = list(values)[offset:wanted]  # each log once, in the order read
    if not chosen:
        return []
    at = q.bind([moment(created_at) for created_at, _ in chosen], "Array(DateTime64(6, 'UTC'))")
    ids = q.bind([str(log_id) for _, log_id in chosen], "Array(UUID)")
    result = client().query(f"SELECT {_LISTED} FROM request_logs WHERE {where} "
                            f"AND created_at IN {at} AND id IN {ids} ORDER BY {ordering}", parameters=q.params)
    found: dict[tuple, dict[str, Any]] = {}
    for row in result.named_results():
        if found.setdefault((row["created_at"], row["id"]), row) != row:
            return None
    if list(found) != chosen:
        return None
    return [_log(row) for row in found.values()]


def _same(a: Any, b: Any) -> bool:
    return a == b or (a != a and b != b)  # NaN is itself


def session_logs(org, session_id: str, limit: int = 1000) -> list[RequestLog]:
    """A session's first `limit` logs, oldest first, bodies left out (the session page), read within
    the hours the rollups give it (reads._hours_of): the whole table took 1 s at 100M logs."""
    q, where = _where(Selection(org, filters={"session_id": session_id}), False)
    hours = _hours_of(q, "session", session_id)
    return _read(q, f"{where} AND created_at >= {hours}.1 AND created_at < {hours}.2 + INTERVAL 1 HOUR",
                 "created_at ASC, id ASC", limit)


def models_and_properties(selection: Selection, limit: int) -> list[tuple[str, dict[str, Any]]]:
    """(model, properties) of the selection's newest `limit` logs (the user page's sample): two
    columns rather than whole logs (2,000 of them built as RequestLog cost more than their read)."""
    q, where = _where(selection, False)
    result = client().query(f"SELECT toString(model), properties_json, properties FROM request_logs FINAL "
                            f"WHERE {where} ORDER BY created_at DESC, id DESC LIMIT {int(limit)}", parameters=q.params)
    return [(model, orjson.loads(text) if text else dict(properties)) for model, text, properties in result.result_rows]


def count(selection: Selection, errors_only: bool = False) -> int:
    """Without FINAL (which merges every row of the range: 8 s over a day of 100M logs a month): the
    writer never inserts a log twice, so only a race of two writers could count one twice."""
    q, where = _where(selection, errors_only)
    return int(client().query(f"SELECT count() FROM request_logs WHERE {where}",
                              parameters=q.params).result_rows[0][0])


def every(org_id: int, chunk_size: int = 2000):
    """Every log of an org with its bodies, oldest first, a chunk per query (exports)."""
    after = None
    while True:
        where = "org_id = {org:UInt64}"
        params: dict[str, Any] = {"org": org_id}
        if after is not None:
            where += (" AND (created_at, toString(id)) > ({at:DateTime64(6, 'UTC')}, {id:String})")
            params.update(at=moment(after[0]), id=str(after[1]))
        result = client().query(f"SELECT {', '.join(_READ)} FROM request_logs FINAL WHERE {where} "
                                f"ORDER BY created_at, toString(id) LIMIT {int(chunk_size)}", parameters=params)
        logs = [_log(row) for row in result.named_results()]
        yield from logs
        if len(logs) < chunk_size:
            return
        after = (logs[-1].created_at, logs[-1].id)


def with_response_ids(org_id: int, column: str, model: str, start, end, response_ids: list[str],
                      limit: int = 100) -> list[tuple[Any, str, str]]:
    """(id, response body, session id) of the org's proxied logs (not OpenTelemetry's own) of a
    model between start and end whose response body holds one of the quoted response ids (an
    OpenTelemetry span's match, analytics.ingest.match_proxied)."""
    if column not in ("model", "requested_model"):
        raise ValueError(column)
    needles = [f'"{response_id}"' for response_id in response_ids]
    result = client().query(
        f"SELECT id, response_body, session_id FROM request_logs FINAL WHERE org_id = {{org:UInt64}} "
        f"AND created_at >= {{lo:DateTime64(6, 'UTC')}} AND created_at <= {{hi:DateTime64(6, 'UTC')}} "
        f"AND {column} = {{model:String}} AND source != 'otlp' "
        f"AND multiSearchAny(response_body, {{needles:Array(String)}}) LIMIT {int(limit)}",
        parameters={"org": org_id, "lo": moment(start), "hi": moment(end), "model": model, "needles": needles})
    return [tuple(row) for row in result.result_rows]


def org_of(log_id: Any) -> int | None:
    """The org of the stored log with this id, if any (one primary-key lookup of request_ids)."""
    try:
        log_id = uuid.UUID(str(log_id))
    except ValueError:
        return None
    found = client().query("SELECT org_id FROM request_ids WHERE id = {id:UUID} LIMIT 1",
                           parameters={"id": str(log_id)}).result_rows
    return int(found[0][0]) if found else None


def find(log_id: Any) -> RequestLog | None:
    """A log by id, whichever org's it is (the operators' admin), with its bodies."""
    org_id = org_of(log_id)
    return get(org_id, log_id) if org_id is not None else None


def admin_page(*, org_ids: list[int] | None = None, equals: dict[str, Any] | None = None,
               status: str = "", since=None, before=None, search: str = "", ascending: bool = False,
               offset: int = 0, limit: int = 100) -> list[RequestLog]:
    """A page of every org's logs (the operators' admin list), newest first, bodies left out.
    `equals`: exact column values (model, provider, cache_hit, streamed); `status`: one of the
    admin's status classes; `search`: a request id, or a user or session id exactly."""
    where, params = ["1"], {}
    if org_ids is not None:
        where.append("org_id IN {orgs:Array(UInt64)}")
        params["orgs"] = org_ids
    types = {"model": "String", "provider": "String", "cache_hit": "Bool", "streamed": "Bool"}
    for name, value in (equals or {}).items():
        where.append(f"{name} = {{v_{name}:{types[name]}}}")
        params[f"v_{name}"] = value
    where.append(_STATUS_CLASSES.get(status, "1"))
    if since is not None:
        where.append("created_at >= {since:DateTime64(6, 'UTC')}")
        params["since"] = moment(since)
    if before is not None:
        where.append("created_at < {before:DateTime64(6, 'UTC')}")
        params["before"] = moment(before)
    if search:
        try:
            params["id"] = str(uuid.UUID(search))
            where.append("id = {id:UUID} AND created_at IN (SELECT created_at FROM request_ids WHERE id = {id:UUID})")
        except ValueError:
            params["term"] = search
            where.append("(user_id = {term:String} OR session_id = {term:String})")
    direction = "ASC" if ascending else "DESC"
    result = client().query(
        f"SELECT {_LISTED} FROM request_logs FINAL WHERE {' AND '.join(where)} "
        f"ORDER BY created_at {direction}, id {direction} LIMIT {int(limit)} OFFSET {int(offset)}", parameters=params)
    return [_log(row) for row in result.named_results()]


_STATUS_CLASSES = {"2xx": "status >= 200 AND status < 300", "4xx": "status >= 400 AND status < 500",
                   "429": "status = 429", "5xx": "status >= 500", "0": "status = 0", "error": ERRORS}


def has_logs(org_id: int) -> bool:
    return bool(client().query("SELECT 1 FROM request_logs WHERE org_id = {org:UInt64} LIMIT 1",
                               parameters={"org": org_id}).result_rows)
