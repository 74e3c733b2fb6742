"""The log writer's inserts into ClickHouse: one insert per batch, never a log twice.

- The logs of a batch already in `request_logs` are left out (one query over the batch's
  orgs and time span, which the table's order and its id index make cheap): a replay from the
  journal or the spool, or a Redis entry claimed again after a writer died, adds only new logs.
- The insert carries a deduplication token, the hash of its ids: a retried insert whose first
  attempt did reach the server (a timeout after the write) is dropped by the server, in the
  rollups' table too (deduplicate_blocks_in_dependent_materialized_views).
"""

from __future__ import annotations

import hashlib
import logging
import operator
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson

from ..models import RequestLog
from ..pricing import cost_usd
from ..rollups import property_text
from . import client, moment

log = logging.getLogger(__name__)

COLUMNS = (
    "id", "org_id", "api_key_id", "created_at", "provider", "method", "target_url", "path", "requested_model",
    "model", "status", "error", "cancelled", "streamed", "request_headers", "request_body", "response_body",
    "request_omitted", "response_omitted", "latency_ms", "ttft_ms", "prompt_tokens", "completion_tokens",
    "cached_tokens", "cost_usd", "user_id", "session_id", "session_path", "session_name", "properties",
    "request_name", "cache_hit", "cache_match", "similarity", "source_request_id", "retries", "fallback_index",
    "prompt_id", "prompt_version", "prompt_variables", "source", "properties_json",
)
_TEXT = {"provider", "method", "target_url", "path", "requested_model", "model", "error", "request_body",
         "response_body", "user_id", "session_id", "session_path", "session_name", "request_name", "cache_match",
         "prompt_id", "source"}
_JSON = {"request_headers", "prompt_variables"}
_FLOAT = {"latency_ms", "ttft_ms", "similarity"}
# parallel_view_processing: the server fills the three views of an insert on as many cores (the
# views are most of an insert's time, and the writer waits for them).
INSERT_SETTINGS = {"deduplicate_blocks_in_dependent_materialized_views": 1, "async_insert": 0,
                   "date_time_input_format": "best_effort", "parallel_view_processing": 1}


def properties_map(properties: Any) -> dict[str, str]:
    """A log's properties as ClickHouse's Map(String, String): JSON text for non-strings, nulls out."""
    if not isinstance(properties, dict):
        return {}
    out = {}
    for name, value in properties.items():
        text = property_text(value)
        if text is not None:
            out[str(name)] = text
    return out


def row_of(log: Any) -> dict[str, Any]:
    """One log (a RequestLog, or anything with its attributes) as an insert row (JSONEachRow)."""
    values = log.__dict__ if hasattr(log, "_state") else {name: getattr(log, name) for name in COLUMNS[:-1]}
    row = {name: values.get(name) for name in COLUMNS[:-1]}
    for name in _TEXT:
        if row[name] is None:
            row[name] = ""
    for name in _JSON:
        value = row[name]
        row[name] = "" if value in (None, {}, "") else orjson.dumps(value).decode()
    for name in _FLOAT:
        value = row[name]
        if value is not None and value != value:  # NaN: no measure
            row[name] = None
    properties = row["properties"] if isinstance(row["properties"], dict) else {}
    row["properties"] = properties_map(properties)
    row["properties_json"] = orjson.dumps(properties).decode() if properties else ""
    if row["cost_usd"] is not None:
        row["cost_usd"] = str(row["cost_usd"])
    created = row["created_at"]
    row["created_at"] = created.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    return row


def _rows(logs: list[Any]) -> bytes:
    return b"\n".join(_json(row_of(log)) for log in logs)


def _json(row: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(row, default=str)
    except orjson.JSONEncodeError:  # a lone surrogate in a client's text is not UTF-8: replace it
        return orjson.dumps({name: value.encode("utf-8", "replace").decode() if isinstance(value, str) else value
                             for name, value in row.items()}, default=str)


def stored_ids(logs: list[Any]) -> set[uuid.UUID]:
    """The ids among `logs` that request_logs holds already."""
    if not logs:
        return set()
    found = _stored([str(log.id) for log in logs], {log.org_id for log in logs},
                    moment(min(log.created_at for log in logs)), moment(max(log.created_at for log in logs)))
    return {uuid.UUID(log_id) for log_id in found}


def _stored(ids: list[str], org_ids: set[int], first: str, last: str) -> set[str]:
    """The ids (canonical text) request_logs holds among those of logs of the orgs made between
    `first` and `last`: one query, the ids sent beside it as an external table (a query parameter
    is a form field of at most ~100 KB)."""
    from clickhouse_connect.driver.external import ExternalData

    batch = ExternalData(file_name="batch", data="\n".join(ids).encode(), fmt="TabSeparated", structure=["id UUID"])
    result = client().query(
        "SELECT id FROM request_logs WHERE org_id IN {orgs:Array(UInt64)}"
        " AND created_at BETWEEN {first:DateTime64(6, 'UTC')} AND {last:DateTime64(6, 'UTC')}"
        " AND id IN (SELECT id FROM batch)",
        parameters={"orgs": sorted(org_ids), "first": first, "last": last}, external_data=batch,
    )
    return {str(row[0]) for row in result.result_rows}


def columns_of(logs: list[Any]) -> list[list[Any]]:
    """The logs as insert columns (in COLUMNS' order), the values row_of gives, typed for the
    native format: one list per column, transposed in C (a dict lookup per value cost more than
    the insert) and converted only where a value needs it."""
    values = [log.__dict__ if hasattr(log, "_state") else {name: getattr(log, name) for name in COLUMNS[:-1]}
              for log in logs]
    try:
        columns = [list(column) for column in zip(*map(_VALUES, values))]
    except KeyError:  # a log read with some fields deferred
        columns = [[row.get(name) for row in values] for name in COLUMNS[:-1]]
    return _typed(columns)


def _typed(columns: list[list[Any]]) -> list[list[Any]]:
    """Columns of values as a RequestLog holds them, with properties_json after them, as the
    native format takes them (a column of ids as text or times as ticks is taken as it is)."""
    out = []
    for name, column in zip(COLUMNS[:-1], columns):
        if name in _TEXT:
            if None in column:
                column = ["" if value is None else value for value in column]
        elif name in _JSON:
            column = ["" if value in (None, {}, "") else orjson.dumps(value).decode() for value in column]
        elif name in _FLOAT:
            column = [None if value is not None and value != value else value for value in column]
        elif name == "cost_usd":  # the encoder reads a Decimal, str or float through its text
            pass
        elif name in ("id", "source_request_id"):  # all UUIDs or all text: the encoder reads the first's kind
            kinds = {type(value) for value in column} - {type(None)}
            if len(kinds) > 1 or kinds - {str, uuid.UUID}:
                column = [None if value is None else uuid.UUID(str(value)) for value in column]
        elif name in _NUMBERS:
            if None in column:
                column = [_NUMBERS[name] if value is None else value for value in column]
        elif name == "properties":
            properties = [value if isinstance(value, dict) else {} for value in column]
            column = [properties_map(value) if value else {} for value in properties]
        out.append(column)
    out.append(["" if not value else orjson.dumps(value).decode() for value in properties])
    return out


_VALUES = operator.itemgetter(*COLUMNS[:-1])


# Columns that are never null in ClickHouse, and their value for a missing one.
_NUMBERS = {"status": 0, "retries": 0, "cancelled": False, "streamed": False, "request_omitted": False,
            "response_omitted": False, "cache_hit": False}
_insert_types: dict[str, Any] = {}


def _native_insert(columns: list[list[Any]], token: str) -> None:
    """One insert in the native format, column by column (clickhouse-connect's columnar insert: 2-3x
    the rows per second of JSONEachRow, which the server parses field by field)."""
    c = client()
    key = (getattr(c, "url", id(c)), c.database)
    if key not in _insert_types:  # the table's types, read once per server (a DESCRIBE per insert otherwise)
        _insert_types[key] = c.create_insert_context("request_logs", list(COLUMNS)).column_types
    settings = {**INSERT_SETTINGS, "insert_deduplication_token": token}
    try:
        c.insert("request_logs", columns, column_names=list(COLUMNS), column_types=_insert_types[key],
                 column_oriented=True, settings=settings)
    except UnicodeEncodeError:  # a lone surrogate in a client's text is not UTF-8: replace it
        columns = [[value.encode("utf-8", "replace").decode() if isinstance(value, str) else value
                    for value in column] for column in columns]
        c.insert("request_logs", columns, column_names=list(COLUMNS), column_types=_insert_types[key],
                 column_oriented=True, settings=settings)


@dataclass
class Prepared:
    """A batch ready to send: the logs not stored yet (RequestLogs, or records as the writer reads
    them), their ids as text, their insert columns and the insert's deduplication token."""

    logs: list[Any]
    ids: list[str]
    columns: list[list[Any]]
    token: str


def _token(ids: list[str]) -> str:
    return hashlib.sha256("".join(ids).encode()).hexdigest()


def prepare(logs: list[Any]) -> Prepared | None:
    """The logs not stored yet made ready to insert; None when there is none."""
    if not logs:
        return None
    stored = stored_ids(logs)
    fresh = [log for log in logs if log.id not in stored]
    if not fresh:
        return None
    ids = [str(log.id) for log in fresh]
    return Prepared(fresh, ids, columns_of(fresh), _token(ids))


def prepare_records(records: list[dict[str, Any]], leave_out: frozenset | set = frozenset()) -> Prepared | None:
    """prepare() for queued records (analytics.writer's): their columns made straight from them,
    with no RequestLog per log (building one cost as much as the insert's columns). A malformed
    record (no id or time) is left out, and logged."""
    records, ids, ticks = well_formed(records)
    if not records:
        return None
    # Which logs are stored already is asked while the columns are made (the answer is the
    # server's time: a tenth of a batch's), and the few stored are then taken out of them.
    stored = _lookup().submit(_stored, ids, {record["org_id"] for record in records}, _moment_of(min(ticks)),
                              _moment_of(max(ticks)))
    columns = record_columns(records, ids, ticks)
    left_out = stored.result() | leave_out if leave_out else stored.result()
    if left_out:
        keep = [n for n, log_id in enumerate(ids) if log_id not in left_out]
        if not keep:
            return None
        if len(keep) < len(ids):
            records, ids = [records[n] for n in keep], [ids[n] for n in keep]
            columns = [[column[n] for n in keep] for column in columns]
    return Prepared(records, ids, columns, _token(ids))


_lookups: ThreadPoolExecutor | None = None


def _lookup() -> ThreadPoolExecutor:
    """The thread that asks which logs of a batch are stored (a client of its own, per thread)."""
    global _lookups
    if _lookups is None:
        _lookups = ThreadPoolExecutor(max_workers=1, thread_name_prefix="log-lookup")
    return _lookups


def send(prepared: Prepared | None) -> list[Any]:
    """Insert a prepared batch; returns the logs inserted."""
    if prepared is None:
        return []
    _native_insert(prepared.columns, prepared.token)
    return prepared.logs


def insert(logs: list[Any]) -> list[Any]:
    """Insert the logs not stored yet; returns those inserted."""
    return send(prepare(logs))


# --- Queued records straight into columns ---------------------------------------------------------

_UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def uuid_text(value: Any) -> str:
    """A UUID as its canonical text (lower case, with hyphens); ValueError if it is none."""
    if type(value) is str and _UUID_TEXT.fullmatch(value):
        return value
    return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))


def ticks_of(timestamp: float | int) -> int:
    """Seconds since the epoch as DateTime64(6) ticks, rounded to the microsecond as
    datetime.fromtimestamp rounds (half to even, of the fraction), so that a record's time is the
    one a RequestLog built from it has."""
    whole = int(timestamp)
    return whole * 1_000_000 + round((timestamp - whole) * 1e6)


def _moment_of(ticks: int) -> str:
    seconds, micros = divmod(ticks, 1_000_000)
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.") + f"{micros:06d}"


def well_formed(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str], list[int]]:
    """The records that have an id and a time, with their ids as text and times as ticks; the
    others are left out, and logged (as analytics.writer.build_logs leaves them out)."""
    kept, ids, ticks = [], [], []
    for record in records:
        try:
            log_id, at = uuid_text(record["id"]), ticks_of(record["created_at"])
            if record.get("source_request_id") is not None:
                uuid_text(record["source_request_id"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.error("dropping malformed log record %r: %s", record.get("id"), exc)
            continue
        kept.append(record)
        ids.append(log_id)
        ticks.append(at)
    return kept, ids, ticks


# A record's fields are RequestLog's (analytics.writer.build_log); a missing one has the model's default.
_DEFAULTS = {field.attname: field.get_default() for field in RequestLog._meta.concrete_fields}
_GIVEN = tuple(name for name in COLUMNS[:-1] if name not in ("id", "created_at", "cost_usd"))


def record_columns(records: list[dict[str, Any]], ids: list[str], ticks: list[int]) -> list[list[Any]]:
    """Well-formed records (ids as text, times as ticks: well_formed) as insert columns, the values
    columns_of gives for the RequestLogs built from them: the model's default for a missing field,
    the cost priced when the record has none."""
    # The fields the first record has, transposed in C (the gateway's records carry all but a few);
    # the others, and every field when a later record lacks one the first has, value by value.
    first = records[0]
    present = [name for name in _GIVEN if name in first]
    try:
        given = (dict(zip(present, map(list, zip(*map(operator.itemgetter(*present), records)))))
                 if len(present) > 1 else {})
    except KeyError:
        given = {}
    for name in _GIVEN:
        if name not in given:
            default = _DEFAULTS[name]
            given[name] = [record.get(name, default) for record in records]
    given["id"], given["created_at"] = ids, ticks
    given["cost_usd"] = [record["cost_usd"] if "cost_usd" in record else
                         cost_usd(record.get("provider", ""), record.get("model") or record.get("requested_model", ""),
                                  record.get("prompt_tokens"), record.get("completion_tokens"),
                                  record.get("cached_tokens"), record.get("cache_write_tokens"))
                         for record in records]
    return _typed([given[name] for name in COLUMNS[:-1]])
