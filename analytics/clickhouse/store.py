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
import uuid
from decimal import Decimal
from typing import Any

import orjson

from ..rollups import property_text
from . import client, moment

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
INSERT_SETTINGS = {"deduplicate_blocks_in_dependent_materialized_views": 1, "async_insert": 0}


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


def row_of(log: Any) -> list[Any]:
    """One log (a RequestLog, or anything with its attributes) as an insert row."""
    out = []
    for name in COLUMNS:
        if name == "properties_json":
            properties = log.properties if isinstance(log.properties, dict) else {}
            out.append(orjson.dumps(properties).decode() if properties else "")
            continue
        value = getattr(log, name)
        if name in _TEXT:
            value = value or ""
        elif name in _JSON:
            value = "" if value in (None, {}, "") else orjson.dumps(value).decode()
        elif name == "properties":
            value = properties_map(value)
        elif name == "cost_usd" and value is not None:
            value = Decimal(value)
        elif name in _FLOAT and value is not None:
            value = float(value)
            if value != value:  # NaN: no measure
                value = None
        elif name in ("id", "source_request_id") and value is not None and not isinstance(value, uuid.UUID):
            value = uuid.UUID(str(value))
        out.append(value)
    return out


_IDS_PER_QUERY = 1000  # a query parameter is a form field: the server takes at most ~100 KB of one


def stored_ids(logs: list[Any]) -> set[uuid.UUID]:
    """The ids among `logs` that request_logs holds already."""
    out: set[uuid.UUID] = set()
    for start in range(0, len(logs), _IDS_PER_QUERY):
        chunk = logs[start:start + _IDS_PER_QUERY]
        orgs = sorted({log.org_id for log in chunk})
        result = client().query(
            "SELECT id FROM request_logs WHERE org_id IN {orgs:Array(UInt64)}"
            " AND created_at BETWEEN {first:DateTime64(6, 'UTC')} AND {last:DateTime64(6, 'UTC')}"
            " AND id IN {ids:Array(UUID)}",
            parameters={"orgs": orgs, "first": moment(min(log.created_at for log in chunk)),
                        "last": moment(max(log.created_at for log in chunk)), "ids": [str(log.id) for log in chunk]},
        )
        out.update(row[0] for row in result.result_rows)
    return out


def insert(logs: list[Any]) -> list[Any]:
    """Insert the logs not stored yet; returns those inserted."""
    if not logs:
        return []
    stored = stored_ids(logs)
    fresh = [log for log in logs if log.id not in stored]
    if not fresh:
        return []
    token = hashlib.sha256(b"".join(log.id.bytes for log in fresh)).hexdigest()
    client().insert("request_logs", [row_of(log) for log in fresh], column_names=COLUMNS,
                    settings={**INSERT_SETTINGS, "insert_deduplication_token": token})
    return fresh
