"""Helicone's filter trees, sorts and row shapes over our request logs (the query side of
analytics/helicone_api.py).

A filter is `"all"`, a leaf (`{"request_response_rmt": {"model": {"equals": "gpt-4o"}}}`: tables,
fields, operators; several in one leaf all hold) or a branch (`{"left", "operator": "and"|"or",
"right"}`). Leaves become conditions on the columns of `RequestLog`, applied to what
`queries.logs_for(org)` selects: every query starts from the key's org, so no filter reaches
another org's rows. Session and user aggregates (`sessions_request_response_rmt`, `users_view`)
become conditions on the grouped rows. A field or operator we cannot answer is a `FilterError`
naming it, never a silently ignored condition.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any, Callable

import orjson
from django.db.models import (
    Avg,
    Count,
    DateTimeField,
    Exists,
    ExpressionWrapper,
    F,
    FloatField,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce, TruncDate
from django.db.models.lookups import Exact, GreaterThan, GreaterThanOrEqual, LessThan, LessThanOrEqual

from formats.helicone_log import helicone_provider, our_provider

from . import clickhouse
from .models import RequestLog, Score
from .queries import FilterError, check_property_name, is_postgres, logs_for

TEXT_OPERATORS = ("equals", "not-equals", "like", "ilike", "contains", "not-contains")
NUMBER_OPERATORS = ("equals", "not-equals", "gte", "lte", "gt", "lt")
TIME_OPERATORS = ("equals", "gte", "lte", "gt", "lt")
MAX_LIMIT = 1000
MAX_OFFSET = 2**31 - 1
MAX_DEPTH = 50

# Helicone keeps sessions as properties of the request: these names read our session columns.
SESSION_PROPERTIES = {"Helicone-Session-Id": "session_id", "Helicone-Session-Path": "session_path",
                      "Helicone-Session-Name": "session_name"}

TOTAL_TOKENS = Coalesce(F("prompt_tokens"), Value(0)) + Coalesce(F("completion_tokens"), Value(0))


# --- Operators ------------------------------------------------------------------------------------


def like_regex(pattern: str) -> str:
    """SQL LIKE (`%` any run, `_` one character, backslash escapes) as an anchored regular expression,
    which both PostgreSQL and SQLite (Django's REGEXP) evaluate the same way, case-sensitively."""
    out, escaped = [], False
    for char in pattern:
        if escaped:
            out.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            out.append(".*")
        elif char == "_":
            out.append(".")
        else:
            out.append(re.escape(char))
    return "^" + "".join(out) + "$"


def _text(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise FilterError(f"{where}: expected a string")
    text = str(value)
    if "\x00" in text:
        raise FilterError(f"{where}: contains a NUL character")
    return text


def _float(value: Any, where: str) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
    except (TypeError, ValueError):
        raise FilterError(f"{where}: expected a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise FilterError(f"{where}: expected a finite number")
    return number


def _time(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise FilterError(f"{where}: expected an ISO 8601 timestamp")
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise FilterError(f"{where}: expected an ISO 8601 timestamp") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt_timezone.utc)


def _bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise FilterError(f"{where}: expected true or false")


def text_q(lookup: str, operator: str, value: Any, where: str, convert: Callable[[str], Any] = str) -> Q:
    text = convert(_text(value, where))
    if operator == "equals":
        return Q(**{lookup: text})
    if operator == "not-equals":
        return ~Q(**{lookup: text})
    if operator == "like":
        return Q(**{f"{lookup}__regex": like_regex(text)})
    if operator == "ilike":
        return Q(**{f"{lookup}__iregex": like_regex(text)})
    if operator == "contains":
        return Q(**{f"{lookup}__icontains": text})
    if operator == "not-contains":
        return ~Q(**{f"{lookup}__icontains": text})
    raise FilterError(f"{where}: unknown operator {operator!r} (text fields take {', '.join(TEXT_OPERATORS)})")


_COMPARISONS = {"gte": GreaterThanOrEqual, "lte": LessThanOrEqual, "gt": GreaterThan, "lt": LessThan}


def number_q(target: str | Any, operator: str, value: Any, where: str, parse=_float) -> Q:
    """A comparison of a column (by name) or an expression."""
    parsed = parse(value, where)
    expression = F(target) if isinstance(target, str) else target
    if operator in ("equals", "not-equals"):
        condition = Q(Exact(expression, parsed))
        return condition if operator == "equals" else ~condition
    if operator in _COMPARISONS:
        return Q(_COMPARISONS[operator](expression, parsed))
    allowed = TIME_OPERATORS if parse is _time else NUMBER_OPERATORS
    raise FilterError(f"{where}: unknown operator {operator!r} (this field takes {', '.join(allowed)})")


def _operators(spec: Any, where: str) -> list[tuple[str, Any]]:
    if not isinstance(spec, dict) or not spec:
        raise FilterError(f"{where}: expected an object of operators, e.g. {{\"equals\": …}}")
    return list(spec.items())


# --- Fields -----------------------------------------------------------------------------------------
# Each field: a function (operator, value, where) -> Q on RequestLog.

FieldFn = Callable[[str, Any, str], Q]


def _text_field(lookup: str) -> FieldFn:
    return lambda op, value, where: text_q(lookup, op, value, where)


def _number_field(target) -> FieldFn:
    return lambda op, value, where: number_q(target, op, value, where)


def _time_field(lookup: str) -> FieldFn:
    return lambda op, value, where: number_q(lookup, op, value, where, parse=_time)


def _bool_field(lookup: str) -> FieldFn:
    def field(op: str, value: Any, where: str) -> Q:
        if op != "equals":
            raise FilterError(f"{where}: unknown operator {op!r} (this field takes equals)")
        return Q(**{lookup: _bool(value, where)})
    return field


def _provider_field(op: str, value: Any, where: str) -> Q:
    return text_q("provider", op, value, where, convert=our_provider)


def _id_field(lookup: str) -> FieldFn:
    def field(op: str, value: Any, where: str) -> Q:
        if op not in ("equals", "not-equals", "contains", "not-contains"):
            raise FilterError(f"{where}: unknown operator {op!r} (request ids take equals, not-equals, contains, "
                              "not-contains)")
        if op in ("equals", "not-equals"):
            try:
                value = str(uuid.UUID(_text(value, where)))
            except ValueError:
                raise FilterError(f"{where}: expected a request id (a UUID)") from None
        return text_q(lookup, op, value, where)
    return field


def _prompt_version_field(op: str, value: Any, where: str) -> Q:
    # Helicone's prompt_version is text; ours is the version number.
    if op not in ("equals", "not-equals"):
        raise FilterError(f"{where}: unknown operator {op!r} (this field takes equals, not-equals)")
    text = _text(value, where).strip().lstrip("v")
    if not text.isdigit():
        raise FilterError(f"{where}: expected a version number")
    condition = Q(prompt_version=int(text))
    return condition if op == "equals" else ~condition


def _body_field(lookup: str) -> FieldFn:
    def field(op: str, value: Any, where: str) -> Q:
        if op not in ("contains", "not-contains"):
            raise FilterError(f"{where}: unknown operator {op!r} (bodies take contains, not-contains)")
        return text_q(lookup, op, value, where)
    return field


def property_q(name: str, op: str, value: Any, where: str) -> Q:
    if name in SESSION_PROPERTIES:
        return text_q(SESSION_PROPERTIES[name], op, value, where)
    check_property_name(name, where)
    if op == "equals" and is_postgres():
        # Containment uses the GIN index on properties; `properties__Name=` would not.
        return Q(properties__contains={name: _text(value, where)})
    return text_q(f"properties__{name}", op, value, where)


def _properties(spec: Any, where: str) -> Q:
    if not isinstance(spec, dict) or not spec:
        raise FilterError(f"{where}: expected {{\"<name>\": {{\"equals\": …}}}}")
    condition = Q()
    for name, operators in spec.items():
        for op, value in _operators(operators, f"{where}.{name}"):
            condition &= property_q(str(name), op, value, f"{where}.{name}.{op}")
    return condition


def _property_key(spec: Any, where: str) -> Q:
    if not isinstance(spec, dict) or set(spec) != {"equals"}:
        raise FilterError(f"{where}: expected {{\"equals\": \"<property name>\"}}")
    name = _text(spec["equals"], where)
    if name in SESSION_PROPERTIES:
        return ~Q(**{SESSION_PROPERTIES[name]: ""})
    return Q(properties__has_key=check_property_name(name, where))


class ScoreExists(Exists):
    """A log has a score of this name meeting `check` (kept apart so that ClickHouse's reads,
    which cannot join SQL's scores, can ask SQL for the ids instead)."""

    def __init__(self, name: str, check: Q):
        super().__init__(Score.objects.filter(check, request=OuterRef("pk"), name=name))
        self.score_name, self.check = name, check


def _scores(spec: Any, where: str) -> Q:
    if not isinstance(spec, dict) or not spec:
        raise FilterError(f"{where}: expected {{\"<score name>\": {{\"gte\": …}}}}")
    condition = Q()
    for name, operators in spec.items():
        for op, value in _operators(operators, f"{where}.{name}"):
            check = number_q("value", op, value, f"{where}.{name}.{op}")
            condition &= Q(ScoreExists(str(name), check))
    return condition


# Whole-spec fields: they take their own object rather than {operator: value}.
_COMPOUND = {"properties": _properties, "property_key": _property_key, "scores": _scores}

REQUEST_RESPONSE_RMT: dict[str, FieldFn] = {
    "model": _text_field("model"),
    "provider": _provider_field,
    "user_id": _text_field("user_id"),
    "status": _number_field("status"),
    "latency": _number_field("latency_ms"),
    "cost": _number_field("cost_usd"),
    "time_to_first_token": _number_field("ttft_ms"),
    "request_created_at": _time_field("created_at"),
    "response_created_at": _time_field("created_at"),
    "request_id": _id_field("id"),
    "prompt_tokens": _number_field("prompt_tokens"),
    "completion_tokens": _number_field("completion_tokens"),
    "prompt_cache_read_tokens": _number_field("cached_tokens"),
    "total_tokens": _number_field(TOTAL_TOKENS),
    "target_url": _text_field("target_url"),
    "cached": _bool_field("cache_hit"),
    "prompt_id": _text_field("prompt_id"),
    "prompt_version": _prompt_version_field,
    "request_body": _body_field("request_body"),
    "response_body": _body_field("response_body"),
    "helicone-score-feedback": _bool_field("feedback__rating"),
}
# Helicone's older tables, still accepted by its request query.
LEGACY_TABLES: dict[str, dict[str, FieldFn]] = {
    "request": {
        "created_at": _time_field("created_at"),
        "user_id": _text_field("user_id"),
        "id": _id_field("id"),
        "model": _text_field("requested_model"),
        "path": _text_field("target_url"),
        "prompt_id": _text_field("prompt_id"),
        "prompt": _body_field("request_body"),
    },
    "response": {
        "status": _number_field("status"),
        "model": _text_field("model"),
        "body_model": _text_field("model"),
        "body_tokens": _number_field(TOTAL_TOKENS),
        "body_completion": _body_field("response_body"),
    },
    "feedback": {"rating": _bool_field("feedback__rating")},
}
# Session fields a single request carries.
SESSION_ROW_FIELDS: dict[str, FieldFn] = {
    "session_session_id": _text_field("session_id"),
    "session_session_name": _text_field("session_name"),
}


def _table_q(table: str, spec: Any, fields: dict[str, FieldFn], where: str) -> Q:
    if not isinstance(spec, dict) or not spec:
        raise FilterError(f"{where}: expected an object of fields")
    condition = Q()
    for name, operators in spec.items():
        here = f"{where}.{name}"
        if table == "request_response_rmt" and name in _COMPOUND:
            condition &= _COMPOUND[name](operators, here)
            continue
        field = fields.get(name)
        if field is None:
            known = sorted([*fields, *(_COMPOUND if table == "request_response_rmt" else ())])
            raise FilterError(f"{here}: filtering on this field is not supported here (supported: {', '.join(known)})")
        for op, value in _operators(operators, here):
            condition &= field(op, value, f"{here}.{op}")
    return condition


# --- The tree ---------------------------------------------------------------------------------------
# A compiled node is (where, having): conditions on the rows and on the grouped rows (sessions, users);
# None means "no condition" ("all").

Compiled = tuple[Q | None, Q | None]
LeafFn = Callable[[str, Any, str], Compiled]


def _and(a: Q | None, b: Q | None) -> Q | None:
    return b if a is None else a if b is None else a & b


def compile_tree(node: Any, leaf: LeafFn, where: str = "filter", depth: int = 0) -> Compiled:
    if depth > MAX_DEPTH:
        raise FilterError(f"{where}: the filter is nested too deeply")
    if node == "all":
        return None, None
    if not isinstance(node, dict):
        raise FilterError(f"{where}: expected \"all\", a leaf or a {{left, operator, right}} branch")
    if "operator" in node and ("left" in node or "right" in node):
        operator = node["operator"]
        if operator not in ("and", "or"):
            raise FilterError(f"{where}.operator: expected \"and\" or \"or\"")
        left = compile_tree(node.get("left"), leaf, f"{where}.left", depth + 1)
        right = compile_tree(node.get("right"), leaf, f"{where}.right", depth + 1)
        if operator == "and":
            return _and(left[0], right[0]), _and(left[1], right[1])
        if left == (None, None) or right == (None, None):
            return None, None  # "all" or anything is everything
        if left[1] is None and right[1] is None:
            return left[0] | right[0], None
        if left[0] is None and right[0] is None:
            return None, left[1] | right[1]
        raise FilterError(f"{where}: an \"or\" cannot mix request fields with session or user totals")
    if not node:
        raise FilterError(f"{where}: an empty leaf")
    compiled: Compiled = (None, None)
    for table, spec in node.items():
        part = leaf(str(table), spec, f"{where}.{table}")
        compiled = _and(compiled[0], part[0]), _and(compiled[1], part[1])
    return compiled


def request_leaf(table: str, spec: Any, where: str) -> Compiled:
    if table == "request_response_rmt":
        return _table_q(table, spec, REQUEST_RESPONSE_RMT, where), None
    if table == "properties":
        return _properties(spec, where), None
    if table in LEGACY_TABLES:
        return _table_q(table, spec, LEGACY_TABLES[table], where), None
    if table == "sessions_request_response_rmt":
        return _table_q(table, spec, SESSION_ROW_FIELDS, where), None
    raise FilterError(f"{where}: filtering on this table is not supported (supported: request_response_rmt, "
                      f"properties, request, response, feedback, sessions_request_response_rmt)")


def filtered_logs(org, tree: Any) -> QuerySet[RequestLog]:
    """The org's logs a Helicone request filter selects."""
    where, _ = compile_tree(tree, request_leaf)
    qs = logs_for(org)
    return qs if where is None else qs.filter(where)


def query_logs(org, tree: Any, sort: Any, *, limit: int, offset: int, cached_only: bool = False,
               scored_only: bool = False) -> list[RequestLog]:
    """A page of the org's logs a Helicone request query selects, with their feedback and scores;
    from ClickHouse when it is configured (the same filter compiled for it)."""
    if clickhouse.enabled():
        from .clickhouse import helicone as clickhouse_helicone

        where, _ = compile_tree(tree, request_leaf)
        sort_logs(RequestLog.objects.none(), sort)  # the same checks, the same 400s
        logs = clickhouse_helicone.request_logs(org.pk, where, sort=sort or None, limit=limit, offset=offset,
                                                cached_only=bool(cached_only), scored_only=bool(scored_only))
        return clickhouse_helicone.attach_annotations(logs)
    qs = filtered_logs(org, tree)
    if cached_only:
        qs = qs.filter(cache_hit=True)
    if scored_only:
        qs = qs.filter(Exists(Score.objects.filter(request=OuterRef("pk"))))
    return list(with_annotations(sort_logs(qs, sort))[offset: offset + limit])


def logs_by_ids(org, ids: list[uuid.UUID]) -> list[RequestLog]:
    """The org's logs among `ids` (others' ids are left out), newest first, with feedback and scores."""
    if clickhouse.enabled():
        from .clickhouse import helicone as clickhouse_helicone

        return clickhouse_helicone.attach_annotations(clickhouse_helicone.logs_by_ids(org.pk, ids))
    return list(with_annotations(logs_for(org).filter(id__in=ids)).order_by("-created_at", "-id"))


# --- Request rows -------------------------------------------------------------------------------------

REQUEST_SORTS = {
    "created_at": "created_at", "cache_created_at": "created_at", "latency": "latency_ms", "cost": "cost_usd",
    "total_tokens": "total_tokens_sort", "prompt_tokens": "prompt_tokens", "completion_tokens": "completion_tokens",
    "user_id": "user_id", "body_model": "model", "is_cached": "cache_hit",
}


def _direction(value: Any, where: str) -> str:
    if value not in ("asc", "desc"):
        raise FilterError(f"{where}: expected \"asc\" or \"desc\"")
    return value


def sort_logs(qs: QuerySet[RequestLog], sort: Any) -> QuerySet[RequestLog]:
    if sort is None or sort == {}:
        return qs.order_by("-created_at", "-id")
    if not isinstance(sort, dict):
        raise FilterError("sort: expected an object such as {\"created_at\": \"desc\"}")
    order = []
    for name, direction in sort.items():
        if name == "random":
            return qs.order_by("?")
        if name == "properties":
            if not isinstance(direction, dict):
                raise FilterError("sort.properties: expected {\"<name>\": \"asc\"|\"desc\"}")
            for prop, prop_direction in direction.items():
                check_property_name(str(prop), f"sort.properties.{prop}")
                lookup = F(f"properties__{prop}")
                desc = _direction(prop_direction, f"sort.properties.{prop}") == "desc"
                order.append(lookup.desc(nulls_last=True) if desc else lookup.asc(nulls_last=True))
            continue
        column = REQUEST_SORTS.get(name)
        if column is None:
            raise FilterError(f"sort.{name}: sorting on this field is not supported "
                              f"(supported: {', '.join(sorted(REQUEST_SORTS))}, properties, random)")
        if column == "total_tokens_sort":
            qs = qs.annotate(total_tokens_sort=TOTAL_TOKENS)
        desc = _direction(direction, f"sort.{name}") == "desc"
        order.append(F(column).desc(nulls_last=True) if desc else F(column).asc(nulls_last=True))
    return qs.order_by(*order, "-id")


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(dt_timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def body_json(text: str, omitted: bool) -> Any:
    """A stored body as JSON when it was JSON, else the text; null when omitted or empty."""
    if omitted or not text:
        return None
    if text[:1] in ("{", "["):
        try:
            return orjson.loads(text)
        except ValueError:
            pass
    return text


def _score_number(value: float | bool) -> float | int:
    return int(value) if isinstance(value, bool) else value


def request_row(log: RequestLog, *, include_body: bool = True, body_url: str | None = None) -> dict[str, Any]:
    """A log as Helicone's `HeliconeRequest`; fields we do not record are null."""
    feedback = getattr(log, "feedback", None) if _has_feedback(log) else None
    scores = {score.name: _score_number(score.as_json()) for score in log.scores.all()}
    properties = dict(log.properties or {})
    for name, column in SESSION_PROPERTIES.items():
        if getattr(log, column):
            properties[name] = getattr(log, column)
    cost = None if log.cost_usd is None else float(log.cost_usd)
    answered_at = log.created_at + timedelta(milliseconds=log.latency_ms) if log.latency_ms is not None else None
    return {
        "response_id": str(log.id),
        "response_created_at": _iso(answered_at or log.created_at),
        "response_body": body_json(log.response_body, log.response_omitted) if include_body else None,
        "response_status": log.status,
        "response_model": log.model or None,
        "request_id": str(log.id),
        "request_created_at": _iso(log.created_at),
        "request_body": body_json(log.request_body, log.request_omitted) if include_body else None,
        "request_path": log.target_url or log.path,
        "request_user_id": log.user_id or None,
        "request_properties": properties,
        "request_model": log.requested_model or None,
        "model_override": None,
        "helicone_user": None,
        "provider": helicone_provider(log.provider),
        "delay_ms": log.latency_ms,
        "time_to_first_token": log.ttft_ms,
        "total_tokens": log.total_tokens,
        "prompt_tokens": log.prompt_tokens,
        "prompt_cache_write_tokens": None,
        "prompt_cache_read_tokens": log.cached_tokens,
        "completion_tokens": log.completion_tokens,
        "prompt_audio_tokens": None,
        "completion_audio_tokens": None,
        "cost": cost,
        "costUSD": cost,
        "prompt_id": log.prompt_id or None,
        "prompt_version": None if log.prompt_version is None else str(log.prompt_version),
        "feedback_created_at": _iso(feedback.created_at) if feedback else None,
        "feedback_id": str(feedback.id) if feedback else None,
        "feedback_rating": feedback.rating if feedback else None,
        "signed_body_url": body_url,
        "llmSchema": None,
        "country_code": None,
        "asset_ids": None,
        "asset_urls": None,
        "scores": scores,
        "properties": properties,
        "assets": [],
        "target_url": log.target_url,
        "model": log.model or log.requested_model,
        "cache_reference_id": None,
        "cache_enabled": log.cache_hit,
        "updated_at": None,
        "request_referrer": None,
        "ai_gateway_body_mapping": None,
        "storage_location": None,
        "cache_hit": log.cache_hit,
    }


def _has_feedback(log: RequestLog) -> bool:
    try:
        return log.feedback is not None
    except RequestLog.feedback.RelatedObjectDoesNotExist:
        return False


def with_annotations(qs: QuerySet[RequestLog]) -> QuerySet[RequestLog]:
    """The rows' feedback and scores in two queries for the whole page."""
    return qs.select_related("feedback").prefetch_related("scores")


def page(limit: Any, offset: Any) -> tuple[int, int]:
    if not isinstance(limit, int) or not 0 <= limit <= MAX_LIMIT:
        raise FilterError(f"limit: expected 0 to {MAX_LIMIT}")
    if not isinstance(offset, int) or not 0 <= offset <= MAX_OFFSET:
        raise FilterError(f"offset: expected 0 to {MAX_OFFSET}")
    return limit, offset


# --- Sessions -----------------------------------------------------------------------------------------

# Helicone's session totals -> our annotations of the grouped rows (named apart from the columns).
SESSION_AGGREGATES = {
    "session_total_cost": "s_cost", "session_total_tokens": "s_tokens", "session_prompt_tokens": "s_prompt",
    "session_completion_tokens": "s_completion", "session_total_requests": "s_requests",
}
SESSION_TIMES = {"session_created_at": "s_first", "session_latest_request_created_at": "s_latest"}


def _session_leaf(table: str, spec: Any, where: str) -> Compiled:
    if table != "sessions_request_response_rmt":
        if table != "request_response_rmt":
            raise FilterError(f"{where}: filtering on this table is not supported here "
                              f"(supported: request_response_rmt, sessions_request_response_rmt)")
        return request_leaf(table, spec, where)
    fields: dict[str, FieldFn] = {
        "session_session_id": _text_field("session_id"),
        "session_session_name": _text_field("s_name"),
        **{name: _number_field(column) for name, column in SESSION_AGGREGATES.items()},
        **{name: _time_field(column) for name, column in SESSION_TIMES.items()},
    }
    return None, _table_q(table, spec, fields, where)


def sessions(org, tree: Any, *, start: datetime, end: datetime, search: str = "", name_equals: str | None = None,
             limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    """Helicone's `SessionResult` rows: each session's totals within the time window, newest first."""
    where, having = compile_tree(tree, _session_leaf)
    if clickhouse.enabled():
        from .clickhouse import helicone as clickhouse_helicone

        rows = clickhouse_helicone.sessions(org.pk, where, having, start=start, end=end, search=search,
                                            name_equals=name_equals, limit=limit, offset=offset)
    else:
        qs = logs_for(org, {"created_after": start, "created_before": end}).exclude(session_id="")
        if where is not None:
            qs = qs.filter(where)
        if search:
            qs = qs.filter(Q(session_id__icontains=search) | Q(session_name__icontains=search))
        if name_equals is not None:
            qs = qs.filter(session_name=name_equals)
        grouped = (
            qs.values("session_id")
            .annotate(s_first=Min("created_at"), s_latest=Max("created_at"), s_name=Max("session_name"),
                      s_cost=Sum("cost_usd"), s_requests=Count("id"), s_prompt=Coalesce(Sum("prompt_tokens"), 0),
                      s_completion=Coalesce(Sum("completion_tokens"), 0), s_latency=Avg("latency_ms"))
            .annotate(s_tokens=F("s_prompt") + F("s_completion"))
        )
        if having is not None:
            grouped = grouped.filter(having)
        rows = grouped.order_by("-s_latest", "session_id")[offset: offset + limit]
    return [{
        "created_at": _iso(row["s_first"]),
        "latest_request_created_at": _iso(row["s_latest"]),
        "session_id": row["session_id"],
        "session_name": row["s_name"] or "",
        "total_cost": float(row["s_cost"] or 0),
        "total_requests": int(row["s_requests"]),
        "prompt_tokens": int(row["s_prompt"]),
        "completion_tokens": int(row["s_completion"]),
        "total_tokens": int(row["s_tokens"]),
        "avg_latency": float(row["s_latency"] or 0),
    } for row in rows]


# --- Users --------------------------------------------------------------------------------------------

USER_FIELDS = {
    "user_active_for": "active_for", "user_total_requests": "total_requests",
    "user_average_requests_per_day_active": "average_requests_per_day_active",
    "user_average_tokens_per_request": "average_tokens_per_request",
    "user_total_completion_tokens": "total_completion_tokens", "user_total_prompt_tokens": "total_prompt_tokens",
    "user_cost": "cost",
}
USER_TIMES = {"user_first_active": "first_active", "user_last_active": "last_active"}
USER_SORTS = {
    "id": "user_id", "user_id": "user_id", "active_for": "active_for", "first_active": "first_active",
    "last_active": "last_active", "total_requests": "total_requests",
    "average_requests_per_day_active": "average_requests_per_day_active",
    "average_tokens_per_request": "average_tokens_per_request", "total_prompt_tokens": "total_prompt_tokens",
    "total_completion_tokens": "total_completion_tokens", "cost": "cost",
}


def _user_leaf(table: str, spec: Any, where: str) -> Compiled:
    if table not in ("users_view", "user_metrics"):
        if table != "request_response_rmt":
            raise FilterError(f"{where}: filtering on this table is not supported here "
                              f"(supported: request_response_rmt, users_view, user_metrics)")
        return request_leaf(table, spec, where)
    fields: dict[str, FieldFn] = {
        "user_user_id": _text_field("user_id"),
        **{name: _number_field(column) for name, column in USER_FIELDS.items()},
        **{name: _time_field(column) for name, column in USER_TIMES.items()},
    }
    if table == "user_metrics":  # Helicone's older name for the view, its fields without the prefix
        fields = {name.removeprefix("user_"): field for name, field in fields.items()}
    return None, _table_q(table, spec, fields, where)


def users(org, tree: Any, *, start: datetime | None, end: datetime | None, tz_minutes: float = 0,
          sort: Any = None, limit: int = 100, offset: int = 0) -> dict[str, Any]:
    """Helicone's user metrics: `{"hasUsers", "count", "users": [UserMetricsResult]}`."""
    where, having = compile_tree(tree, _user_leaf)
    for name, direction in (sort or {}).items():
        if name not in USER_SORTS:
            raise FilterError(f"sort.{name}: sorting on this field is not supported "
                              f"(supported: {', '.join(sorted(USER_SORTS))})")
        _direction(direction, f"sort.{name}")
    if clickhouse.enabled():
        from .clickhouse import helicone as clickhouse_helicone

        has_users, count, rows = clickhouse_helicone.users(
            org.pk, where, having, start=start, end=end, tz_minutes=tz_minutes,
            sort={USER_SORTS[name]: direction for name, direction in (sort or {"last_active": "desc"}).items()},
            limit=limit, offset=offset)
        return {"hasUsers": has_users, "count": count, "users": [_user_row(row) for row in rows]}
    window = {"created_after": start, "created_before": end}
    all_users = logs_for(org).exclude(user_id="")
    qs = logs_for(org, window).exclude(user_id="")
    if where is not None:
        qs = qs.filter(where)
    # Days active counted in the caller's time zone (Helicone's timeZoneDifferenceMinutes, as
    # JavaScript's getTimezoneOffset gives it: local time is UTC minus the difference).
    local_day = TruncDate(ExpressionWrapper(F("created_at") - timedelta(minutes=tz_minutes),
                                            output_field=DateTimeField()), tzinfo=dt_timezone.utc)
    grouped = (
        qs.values("user_id")
        .annotate(active_for=Count(local_day, distinct=True), first_active=Min("created_at"),
                  last_active=Max("created_at"), total_requests=Count("id"),
                  total_prompt_tokens=Coalesce(Sum("prompt_tokens"), 0),
                  total_completion_tokens=Coalesce(Sum("completion_tokens"), 0),
                  cost=Sum("cost_usd"))
        .annotate(average_requests_per_day_active=ExpressionWrapper(
                      F("total_requests") * 1.0 / F("active_for"), output_field=FloatField()),
                  average_tokens_per_request=ExpressionWrapper(
                      (F("total_prompt_tokens") + F("total_completion_tokens")) * 1.0 / F("total_requests"),
                      output_field=FloatField()))
    )
    if having is not None:
        grouped = grouped.filter(having)
    order = []
    for name, direction in (sort or {"last_active": "desc"}).items():
        column = USER_SORTS.get(name)
        if column is None:
            raise FilterError(f"sort.{name}: sorting on this field is not supported "
                              f"(supported: {', '.join(sorted(USER_SORTS))})")
        desc = _direction(direction, f"sort.{name}") == "desc"
        order.append(F(column).desc(nulls_last=True) if desc else F(column).asc(nulls_last=True))
    rows = grouped.order_by(*order, "user_id")
    return {
        "hasUsers": all_users.exists(),
        "count": grouped.count(),
        "users": [_user_row(row) for row in rows[offset: offset + limit]],
    }


def _user_row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["user_id"],
        "user_id": row["user_id"],
        "active_for": int(row["active_for"]),
        "first_active": _iso(row["first_active"]),
        "last_active": _iso(row["last_active"]),
        "total_requests": int(row["total_requests"]),
        "average_requests_per_day_active": float(row["average_requests_per_day_active"]),
        "average_tokens_per_request": float(row["average_tokens_per_request"]),
        "total_completion_tokens": int(row["total_completion_tokens"]),
        "total_prompt_tokens": int(row["total_prompt_tokens"]),
        "cost": float(row["cost"] or 0),
    }
