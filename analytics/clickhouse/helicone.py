"""Helicone's query API (analytics.helicone_query) answered from ClickHouse.

The filter tree is compiled once, by analytics.helicone_query, into Django `Q` conditions; this
module translates those conditions into ClickHouse SQL, so a field means the same in both stores
(one definition of each field and operator). Feedback and scores live in SQL: a condition on them
becomes the set of matching request ids, read from SQL and sent beside the query as an external
table (a query parameter is a form field of at most ~100 KB).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db.models import Exists, F, Q, Value
from django.db.models.expressions import CombinedExpression
from django.db.models.functions import Coalesce
from django.db.models.lookups import Exact, GreaterThan, GreaterThanOrEqual, LessThan, LessThanOrEqual

from ..models import Feedback, RequestLog, Score
from . import client
from .reads import _DT64, _Query
from .rows import _BODIES, _READ, _log

_COMPARE = {Exact: "=", GreaterThan: ">", GreaterThanOrEqual: ">=", LessThan: "<", LessThanOrEqual: "<="}
# Columns whose ClickHouse type compares badly with a float parameter.
_COLUMNS = {"cost_usd": "toFloat64(cost_usd)"}
_TEXT_LOOKUPS = ("regex", "iregex", "icontains")
# SQL's SUM: null when no log of the group has a cost.
_COST = "if(countIf(cost_usd IS NOT NULL) = 0, NULL, toFloat64(sum(cost_usd)))"


class _Compiler:
    """SQL for the Q conditions of one query; id sets from SQL go to external tables."""

    def __init__(self, org_id: int):
        self.org_id = org_id
        self.q = _Query(org_id)
        self.id_sets: list[list[uuid.UUID]] = []

    def bind(self, value: Any, kind: str | None = None) -> str:
        if kind is None:
            if isinstance(value, bool):
                kind = "Bool"
            elif isinstance(value, int):
                kind = "Int64"
            elif isinstance(value, float):
                kind = "Float64"
            elif isinstance(value, datetime):
                kind = _DT64
            else:
                kind, value = "String", str(value)
        return self.q.bind(value, kind)

    def ids_in(self, ids) -> str:
        self.id_sets.append(list(ids))
        return f"id IN (SELECT id FROM ids_{len(self.id_sets)})"

    def external(self):
        if not self.id_sets:
            return None
        from clickhouse_connect.driver.external import ExternalData

        data = None
        for number, ids in enumerate(self.id_sets, 1):
            spec = {"file_name": f"ids_{number}", "data": "\n".join(str(i) for i in ids).encode(),
                    "fmt": "TabSeparated", "structure": ["id UUID"]}
            if data is None:
                data = ExternalData(**spec)
            else:
                data.add_file(**spec)
        return data

    # --- conditions ---

    def condition(self, node: Q | None) -> str:
        if node is None:
            return "1"
        parts = [self.child(child) for child in node.children]
        sql = f" {node.connector} ".join(f"({part})" for part in parts) if parts else "1"
        return f"(NOT ({sql}))" if node.negated else f"({sql})"  # whole: it is ANDed with the org's condition

    def child(self, child: Any) -> str:
        if isinstance(child, Q):
            return self.condition(child)
        if isinstance(child, tuple):
            return self.lookup(*child)
        if type(child) in _COMPARE:
            rhs = self.expression(child.rhs) if hasattr(child.rhs, "resolve_expression") else self.bind(child.rhs)
            return f"{self.expression(child.lhs)} {_COMPARE[type(child)]} {rhs}"
        if isinstance(child, Exists):
            return self.exists(child)
        raise ValueError(f"no ClickHouse translation for {child!r}")

    def expression(self, expression: Any) -> str:
        if isinstance(expression, F):
            return _COLUMNS.get(expression.name, expression.name)
        if isinstance(expression, Value):
            return self.bind(expression.value)
        if isinstance(expression, Coalesce):
            return f"ifNull({', '.join(self.expression(e) for e in expression.get_source_expressions())})"
        if isinstance(expression, CombinedExpression):
            return f"({self.expression(expression.lhs)} {expression.connector} {self.expression(expression.rhs)})"
        raise ValueError(f"no ClickHouse translation for {expression!r}")

    def lookup(self, path: str, value: Any) -> str:
        if path == "feedback__rating":
            ids = Feedback.objects.filter(org_id=self.org_id, rating=value).values_list("request_id", flat=True)
            return self.ids_in(ids)
        if path == "properties__has_key":
            return f"mapContains(properties, {self.bind(value)})"
        if path == "properties__contains":  # {name: text}, PostgreSQL's containment
            return " AND ".join(f"mapContains(properties, {self.bind(name)}) AND properties[{self.bind(name)}] = "
                                f"{self.bind(text)}" for name, text in value.items()) or "1"
        name, _, operator = path.rpartition("__")
        if operator not in _TEXT_LOOKUPS:
            name, operator = path, "exact"
        if name.startswith("properties__"):
            key = self.bind(name[len("properties__"):])
            # A missing key is SQL's NULL: neither a condition nor its negation holds on it.
            return f"if(mapContains(properties, {key}), {self.text(f'properties[{key}]', operator, value)}, NULL)"
        if name == "id":
            if operator == "exact":
                return f"id = {self.bind(str(value), 'UUID')}"
            return self.text("toString(id)", operator, value)
        if isinstance(value, str) or operator != "exact":
            return self.text(name, operator, value)
        # A nullable column's NULL matches no value, and does match its negation (as Django writes it).
        return f"ifNull({_COLUMNS.get(name, name)} = {self.bind(value)}, 0)"

    def text(self, column: str, operator: str, value: Any) -> str:
        bound = self.bind(value)
        if operator == "exact":
            return f"{column} = {bound}"
        if operator == "regex":
            return f"match({column}, {bound})"
        if operator == "iregex":
            return f"match({column}, concat('(?is)', {bound}))"
        return f"positionCaseInsensitiveUTF8({column}, {bound}) > 0"

    def exists(self, node: Exists) -> str:
        """A score condition (analytics.helicone_query.ScoreExists): the ids of the matching scores."""
        name, check = getattr(node, "score_name", None), getattr(node, "check", None)
        if check is None:
            raise ValueError("no ClickHouse translation for a subquery")
        scores = Score.objects.filter(org_id=self.org_id, name=name).filter(check)
        return self.ids_in(scores.values_list("request_id", flat=True))

    def run(self, sql: str):
        return client().query(sql, parameters=self.q.params, external_data=self.external(),
                              settings={"prefer_column_name_to_alias": 1})


# --- Requests ---------------------------------------------------------------------------------


def _order(sort: dict[str, Any] | None, columns: dict[str, str]) -> str:
    """ORDER BY for a Helicone sort (already checked by helicone_query.sort_logs), nulls last, then
    newest id first as SQL orders UUIDs (their text)."""
    if not sort:
        return "created_at DESC, toString(id) DESC"
    order = []
    for name, direction in sort.items():
        if name == "random":
            return "rand()"
        if name == "properties":
            for prop, prop_direction in direction.items():
                value = f"if(mapContains(properties, '{_quote(prop)}'), properties['{_quote(prop)}'], NULL)"
                order.append(f"{value} {prop_direction.upper()} NULLS LAST")
            continue
        order.append(f"{columns[name]} {direction.upper()} NULLS LAST")
    return ", ".join([*order, "toString(id) DESC"])


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


_REQUEST_SORTS = {
    "created_at": "created_at", "cache_created_at": "created_at", "latency": "latency_ms",
    "cost": "toFloat64(cost_usd)", "total_tokens": "(ifNull(prompt_tokens, 0) + ifNull(completion_tokens, 0))",
    "prompt_tokens": "prompt_tokens", "completion_tokens": "completion_tokens", "user_id": "user_id",
    "body_model": "model", "is_cached": "cache_hit",
}


def request_logs(org_id: int, where: Q | None, *, sort: dict[str, Any] | None, limit: int, offset: int,
                 cached_only: bool = False, scored_only: bool = False, bodies: bool = True) -> list[RequestLog]:
    """A page of the org's logs the condition selects, in Helicone's sort."""
    if limit == 0:
        return []
    c = _Compiler(org_id)
    conditions = ["org_id = {org:UInt64}", c.condition(where)]
    if cached_only:
        conditions.append("cache_hit")
    if scored_only:
        conditions.append(c.ids_in(Score.objects.filter(org_id=org_id).values_list("request_id", flat=True)
                                   .distinct()))
    columns = _READ if bodies else [name for name in _READ if name not in _BODIES]
    result = c.run(f"SELECT {', '.join(columns)} FROM request_logs FINAL WHERE {' AND '.join(conditions)} "
                   f"ORDER BY {_order(sort, _REQUEST_SORTS)} LIMIT {int(limit)} OFFSET {int(offset)}")
    return [_log(row) for row in result.named_results()]


def logs_by_ids(org_id: int, ids: list[Any], bodies: bool = True) -> list[RequestLog]:
    """The org's logs among `ids`, newest first (each found by its time)."""
    if not ids:
        return []
    c = _Compiler(org_id)
    c.id_sets.append(ids)
    columns = _READ if bodies else [name for name in _READ if name not in _BODIES]
    result = c.run(f"SELECT {', '.join(columns)} FROM request_logs FINAL WHERE org_id = {{org:UInt64}} "
                   "AND id IN (SELECT id FROM ids_1) AND created_at IN (SELECT created_at FROM request_ids "
                   "WHERE org_id = {org:UInt64} AND id IN (SELECT id FROM ids_1)) "
                   "ORDER BY created_at DESC, toString(id) DESC")
    return [_log(row) for row in result.named_results()]


# --- Sessions and users -------------------------------------------------------------------------


def sessions(org_id: int, where: Q | None, having: Q | None, *, start: datetime, end: datetime, search: str,
             name_equals: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
    """Per session in [start, end): the rows helicone_query.sessions groups in SQL, named alike."""
    c = _Compiler(org_id)
    conditions = ["org_id = {org:UInt64}", f"created_at >= {c.bind(start)}", f"created_at < {c.bind(end)}",
                  "session_id != ''", c.condition(where)]
    if search:
        term = c.bind(search)
        conditions.append(f"(positionCaseInsensitiveUTF8(session_id, {term}) > 0 "
                          f"OR positionCaseInsensitiveUTF8(session_name, {term}) > 0)")
    if name_equals is not None:
        conditions.append(f"session_name = {c.bind(name_equals)}")
    sql = ("SELECT session_id, min(created_at) AS s_first, max(created_at) AS s_latest, "
           f"max(session_name) AS s_name, {_COST} AS s_cost, count() AS s_requests, "
           "sum(ifNull(prompt_tokens, 0)) AS s_prompt, sum(ifNull(completion_tokens, 0)) AS s_completion, "
           "avg(latency_ms) AS s_latency, s_prompt + s_completion AS s_tokens "
           f"FROM request_logs FINAL WHERE {' AND '.join(conditions)} GROUP BY session_id "
           f"HAVING {c.condition(having)} ORDER BY s_latest DESC, session_id "
           f"LIMIT {int(limit)} OFFSET {int(offset)}")
    return list(c.run(sql).named_results()) if limit else []


def users(org_id: int, where: Q | None, having: Q | None, *, start: datetime | None, end: datetime | None,
          tz_minutes: float, sort: dict[str, Any], limit: int, offset: int) -> tuple[bool, int, list[dict]]:
    """(any user ever, users matching, a page of them): helicone_query.users's rows, named alike.
    `sort`: column -> direction (the columns helicone_query.USER_SORTS names)."""
    c = _Compiler(org_id)
    conditions = ["org_id = {org:UInt64}", "user_id != ''", c.condition(where)]
    if start is not None:
        conditions.append(f"created_at >= {c.bind(start)}")
    if end is not None:
        conditions.append(f"created_at < {c.bind(end)}")
    shift = c.bind(int(round(tz_minutes * 60_000_000)), "Int64")
    grouped = ("SELECT user_id, uniqExact(toDate(fromUnixTimestamp64Micro(toUnixTimestamp64Micro(created_at) - "
               f"{shift}, 'UTC'))) AS active_for, min(created_at) AS first_active, max(created_at) AS last_active, "
               "count() AS total_requests, sum(ifNull(prompt_tokens, 0)) AS total_prompt_tokens, "
               "sum(ifNull(completion_tokens, 0)) AS total_completion_tokens, "
               f"{_COST} AS cost, total_requests / active_for AS "
               "average_requests_per_day_active, (total_prompt_tokens + total_completion_tokens) / total_requests "
               f"AS average_tokens_per_request FROM request_logs FINAL WHERE {' AND '.join(conditions)} "
               f"GROUP BY user_id HAVING {c.condition(having)}")
    order = ", ".join([*(f"{column} {direction.upper()} NULLS LAST" for column, direction in sort.items()),
                       "user_id"])
    count = int(c.run(f"SELECT count() FROM ({grouped})").result_rows[0][0])
    rows = list(c.run(f"{grouped} ORDER BY {order} LIMIT {int(limit)} OFFSET {int(offset)}").named_results()) \
        if limit else []
    any_user = bool(client().query("SELECT count() FROM request_logs WHERE org_id = {org:UInt64} "
                                   "AND user_id != '' LIMIT 1", parameters={"org": org_id}).result_rows[0][0])
    return any_user, count, rows


def attach_annotations(logs: list[RequestLog]) -> list[RequestLog]:
    """Each log's feedback and scores (kept in SQL by request id), two queries for the page."""
    from django.db.models import prefetch_related_objects

    prefetch_related_objects(logs, "scores", "feedback")
    return logs
