"""Changes to logs already in ClickHouse: deletes (erase, retention) and edits (a property set,
the user, session or properties an OpenTelemetry trace gives later).

The rollups follow without rereading anything: before a change, the logs' rollup rows are added
again with the opposite sign (sums and sketch bucket counts go back; the view only ever adds);
after an edit, the logs' new rows are added; the sessions' all-time rows (session_totals) alike.
So an hour's totals stay exact while the writer keeps inserting into the same hour. The extremes
kept for percentiles (a bucket's exact minimum and maximum) cannot be taken back: after an erase
they may still be those of an erased log; so may a session's first and last request and its name
in session_totals (its span there is never narrower than its logs'), until a change leaves the
session no log: its row is then deleted, name and all.

Deletes are lightweight (`DELETE FROM`: the rows are masked at once, removed by merges); edits
are lightweight updates (patch parts, applied at once on reads). Both wait for the server.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from . import client
from .schema import rollup_select, session_select
from .store import properties_map

# INSERT … SELECT into log_rollups: two opposite rows of the same content are not a retry.
_ROLLUP_INSERT = {"insert_deduplicate": 0, "prefer_column_name_to_alias": 1}


def _where(org_id: int, ids: list[str]) -> tuple[str, dict[str, Any]]:
    return ("org_id = {org:UInt64} AND id IN {ids:Array(UUID)}", {"org": org_id, "ids": ids})


def _rollups(org_id: int, ids: list[str], sign: int, sessions: bool = True) -> None:
    where, params = _where(org_id, ids)
    client().command(f"INSERT INTO log_rollups {rollup_select(where, sign)}", parameters=params,
                     settings=_ROLLUP_INSERT)
    if sessions:
        client().command(f"INSERT INTO session_totals {session_select('request_logs', where, sign)}",
                         parameters=params, settings=_ROLLUP_INSERT)


def delete(org_id: int, ids: Iterable[Any]) -> None:
    """Delete an org's logs by id, and take them out of the rollups."""
    ids = [str(log_id) for log_id in ids]
    if not ids:
        return
    where, params = _where(org_id, ids)
    sessions = _sessions_of(where, params)
    _rollups(org_id, ids, -1)
    for table in ("request_logs", "request_ids"):
        client().command(f"DELETE FROM {table} WHERE {where}", parameters=params,
                         settings={"lightweight_deletes_sync": 2})
    _drop_emptied(org_id, sessions)


def _sessions_of(where: str, params: dict[str, Any]) -> list[str]:
    return [row[0] for row in client().query(
        f"SELECT DISTINCT session_id FROM request_logs WHERE {where} AND session_id != ''",
        parameters=params).result_rows]


def _drop_emptied(org_id: int, sessions: list[str]) -> None:
    """Take the sessions left with no log out of session_totals, their names with them: an erase
    deletes what a user sent, and a name is not taken back by the opposite-sign rows."""
    if sessions:
        client().command(
            "DELETE FROM session_totals WHERE org_id = {org:UInt64} AND session_id IN (SELECT session_id "
            "FROM session_totals WHERE org_id = {org:UInt64} AND session_id IN {sessions:Array(String)} "
            "GROUP BY session_id HAVING sum(requests) <= 0)",
            parameters={"org": org_id, "sessions": sessions}, settings={"lightweight_deletes_sync": 2})


_TYPES = {"user_id": "String", "session_id": "String", "session_path": "String", "session_name": "String",
          "properties": "Map(String, String)", "request_body": "String", "response_body": "String",
          "request_omitted": "Bool", "response_omitted": "Bool"}


def update(org_id: int, log_id: Any, changes: dict[str, Any]) -> None:
    """Set columns of one log (the SQL row was just edited the same way)."""
    unknown = set(changes) - set(_TYPES)
    if unknown:
        raise ValueError(f"cannot update {sorted(unknown)} in ClickHouse")
    if not changes:
        return
    ids = [str(log_id)]
    values: dict[str, Any] = {}
    assignments = []
    for name, value in changes.items():
        if name == "properties":  # as two arrays: clickhouse-connect quotes a Map parameter as JSON
            pairs = properties_map(value)
            values["v_keys"], values["v_values"] = list(pairs), list(pairs.values())
            assignments.append("properties = mapFromArrays({v_keys:Array(String)}, {v_values:Array(String)})")
            values["v_properties_json"] = orjson.dumps(value).decode() if value else ""
            assignments.append("properties_json = {v_properties_json:String}")
        else:
            values[f"v_{name}"] = value if value is not None else ""
            assignments.append(f"{name} = {{v_{name}:{_TYPES[name]}}}")
    sessions = "session_id" in changes or "session_name" in changes  # else its session's row stays as it is
    left = _sessions_of(*_where(org_id, ids)) if "session_id" in changes else []
    _rollups(org_id, ids, -1, sessions)
    client().command(f"UPDATE request_logs SET {', '.join(assignments)} "
                     "WHERE org_id = {org:UInt64} AND id = {id:UUID}",
                     parameters={"org": org_id, "id": ids[0], **values})
    _rollups(org_id, ids, 1, sessions)
    _drop_emptied(org_id, left)  # the session the log left, if it was its last


def erase(org_id: int, *, user_id: str | None = None, before=None, batch_size: int = 10_000) -> dict[str, int]:
    """Delete an org's logs (all, one user's, or those older than `before`) from ClickHouse, with their
    feedback and scores (kept in SQL by request id), a batch of ids at a time; counts per kind, as
    analytics.lifecycle.delete_logs_in_batches gives them. For ClickHouse as the only log store,
    where SQL holds no log to select them by."""
    from ..models import Feedback, Score
    from . import moment

    where, params = ["org_id = {org:UInt64}"], {"org": org_id}
    if user_id is not None:
        where.append("user_id = {user:String}")
        params["user"] = user_id
    if before is not None:
        where.append("created_at < {before:DateTime64(6, 'UTC')}")
        params["before"] = moment(before)
    counts = {"requests": 0, "feedback": 0, "scores": 0}
    while True:
        ids = [row[0] for row in client().query(
            f"SELECT id FROM request_logs FINAL WHERE {' AND '.join(where)} ORDER BY created_at "
            f"LIMIT {int(batch_size)}", parameters=params).result_rows]
        if not ids:
            return counts
        counts["feedback"] += Feedback.objects.filter(org_id=org_id, request_id__in=ids).delete()[0]
        counts["scores"] += Score.objects.filter(org_id=org_id, request_id__in=ids).delete()[0]
        delete(org_id, ids)
        counts["requests"] += len(ids)
        if len(ids) < batch_size:
            return counts
