"""The request query API (django-ninja), at /api/v1/, with OpenAPI docs at /api/v1/docs.

Authenticated with `Authorization: Bearer sk-helicone-…`; the org always comes
from the key, so another org's log is simply not found (404).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Annotated, Any, Literal

from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from ninja import Field, NinjaAPI, Path, Query, Schema, Status
from ninja.errors import HttpError
from ninja.security import HttpBearer
from pydantic import BeforeValidator, StrictBool, StrictFloat, StrictInt

from orgs.models import ApiKey

from . import actions, clickhouse, lifecycle, metrics, rollup_reads
from .models import Feedback, RequestLog
from .queries import FilterError, Selection, logs_for
from .writer import without_nul


class ApiKeyAuth(HttpBearer):
    def __init__(self, scope: str | tuple[str, ...]):
        super().__init__()
        self.scopes = (scope,) if isinstance(scope, str) else scope

    def authenticate(self, request: HttpRequest, token: str) -> ApiKey | None:
        key = ApiKey.find_active(token)
        if key is None:
            return None
        if not any(key.has_scope(scope) for scope in self.scopes):
            names = " or ".join(f"'{scope}'" for scope in self.scopes)
            raise HttpError(403, f"This API key lacks the {names} scope")
        request.org = key.org
        return key


read_auth = ApiKeyAuth("read")
write_auth = ApiKeyAuth("write")

api = NinjaAPI(
    title="Helicone Gateway API",
    version="1",
    description="Query request logs and metrics. Authenticate with `Authorization: Bearer <API key>`.",
    urls_namespace="api",
    docs_url="/docs",
    auth=read_auth,
)


class ErrorOut(Schema):
    detail: str


class ValidationErrorOut(Schema):
    detail: list[dict[str, Any]] = Field(description="One entry per invalid parameter or body field")


# Every operation may answer these; each names the problem in `detail`.
ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 422: ValidationErrorOut}
NOT_FOUND = {404: ErrorOut}
# A combination of filters the rollups do not keep, which the raw rows could not answer in time.
TOO_SLOW = {503: ErrorOut}


def _iso_timestamp(value: Any) -> Any:
    # pydantic would also read "0.5" as epoch seconds, which the schema (date-time) does not promise.
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            # In UTC: PostgreSQL refuses offsets past ±15:59, which ISO 8601 allows.
            return moment.astimezone(dt_timezone.utc) if moment.tzinfo else moment.replace(tzinfo=dt_timezone.utc)
        except (ValueError, OverflowError):
            raise ValueError("expected an ISO 8601 timestamp between years 1 and 9999") from None
    return value


Timestamp = Annotated[datetime, BeforeValidator(_iso_timestamp)]
# Bounded like the columns they filter, so an out-of-range number is a 422, not a database error.
Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
# PostgreSQL text and JSON cannot hold NUL characters: refused up front (422) instead of failing the query.
NO_NUL = r"^[^\x00]*$"
# A custom property name: no NUL and no "__" (Django's lookup separator); unambiguous for any regex engine.
PROPERTY_NAME = r"_(?:[^_\x00]+_)*[^_\x00]*|[^_\x00]+(?:_[^_\x00]+)*_?"
Text = Annotated[str, Field(pattern=NO_NUL)]


class RequestFilters(Schema):
    user_id: Text | None = None
    session_id: Text | None = None
    model: Text | None = None
    provider: Text | None = None
    status: Int32 | None = None
    cache_hit: bool | None = None
    request_name: Text | None = None
    prompt_id: Text | None = None
    prompt_version: Int32 | None = None
    created_after: Timestamp | None = None
    created_before: Timestamp | None = None


class RequestOut(Schema):
    id: uuid.UUID
    created_at: datetime
    provider: str
    model: str
    status: int
    error: str
    latency_ms: float | None
    ttft_ms: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    cost_usd: float | None
    user_id: str
    session_id: str
    session_path: str
    session_name: str
    properties: dict[str, Any]
    request_name: str
    cache_hit: bool
    cache_match: str = Field(description="exact or semantic on a hit, shadow for a shadow-mode semantic candidate")
    similarity: float | None = Field(None, description="Of the semantic match (served or shadow)")
    source_request_id: uuid.UUID | None = Field(None, description="The request whose cached answer was served")
    retries: int
    fallback_index: int | None
    prompt_id: str
    prompt_version: int | None
    streamed: bool

    @staticmethod
    def resolve_cost_usd(obj: RequestLog) -> float | None:
        return None if obj.cost_usd is None else float(obj.cost_usd)


class RequestDetailOut(RequestOut):
    requested_model: str
    method: str
    target_url: str
    path: str
    cancelled: bool
    cached_tokens: int | None
    request_body: Any = Field(None, description="JSON when the body was JSON, else text; null when omitted")
    response_body: Any = Field(None, description="JSON when the body was JSON, else text; null when omitted")
    request_omitted: bool
    response_omitted: bool

    feedback: dict[str, bool] | None = Field(None, description='`{"rating": true|false}` or null')
    scores: dict[str, float | bool] = Field(default_factory=dict, description="Named evaluation scores")

    @staticmethod
    def resolve_feedback(obj: RequestLog) -> dict[str, bool] | None:
        feedback = Feedback.objects.filter(request=obj).first()
        return None if feedback is None else {"rating": feedback.rating}

    @staticmethod
    def resolve_scores(obj: RequestLog) -> dict[str, float | bool]:
        return actions.scores_of(obj)

    @staticmethod
    def resolve_request_body(obj: RequestLog) -> Any:
        return None if obj.request_omitted else _maybe_json(obj.request_body)

    @staticmethod
    def resolve_response_body(obj: RequestLog) -> Any:
        return None if obj.response_omitted else _maybe_json(obj.response_body)


class RequestPage(Schema):
    items: list[RequestOut]
    count: int


def _maybe_json(text: str) -> Any:
    if text[:1] in ("{", "["):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def filter_logs(request: HttpRequest, filters: RequestFilters) -> QuerySet[RequestLog]:
    """The org's logs narrowed by the shared filters and any `property.<Name>=<value>`."""
    properties = {param[len("property."):]: value for param, value in request.GET.items()
                  if param.startswith("property.")}
    try:
        return logs_for(request.org, filters.dict(exclude_none=True), properties)
    except FilterError as exc:
        raise HttpError(400, str(exc)) from None


@api.get("/requests", response={200: RequestPage, **ERRORS}, summary="List request logs, newest first",
         description="Filters as query parameters; custom properties as `property.<Name>=<value>`.")
def list_requests(request: HttpRequest, filters: Query[RequestFilters], limit: int = Query(50, ge=1, le=1000),
                  offset: int = Query(0, ge=0, le=2**31 - 1)):
    qs = filter_logs(request, filters).defer("request_body", "response_body", "request_headers")
    properties = {param[len("property."):]: value for param, value in request.GET.items()
                  if param.startswith("property.")}
    selection = Selection(request.org, filters=filters.dict(exclude_none=True), properties=properties)
    if clickhouse.enabled():
        from .clickhouse import rows

        return {"items": rows.page(selection, offset=offset, limit=limit), "count": rows.count(selection)}
    # The count from the rollups where one filter (or none) is asked: exact, and a few rows to read
    # rather than every matching log (10M logs: 627 ms to count them all, 6 ms from the rollups).
    counted = rollup_reads.summary(selection, ())
    count = counted["count"] if counted is not None else qs.count()
    return {"items": list(qs.order_by("-created_at")[offset : offset + limit]), "count": count}


@api.get("/requests/{request_id}", response={200: RequestDetailOut, **ERRORS, **NOT_FOUND},
         summary="One request log with its bodies")
def get_request(request: HttpRequest, request_id: uuid.UUID):
    return actions.get_log(request.org, request_id)


# --- Metrics -------------------------------------------------------------------------


class MetricsOut(Schema):
    count: int
    errors: int
    error_rate: float = Field(description="errors / count: status 4xx, 5xx or no answer")
    cost_usd: float = Field(description="Sum over priced requests; see `unpriced`")
    unpriced: int = Field(description="Successful requests with token usage whose model has no known price")
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    ttft_p50_ms: float | None
    cache_hits: int
    cache_hit_rate: float
    saved_usd: float = Field(description="Cost of the requests answered from the cache")


class GroupOut(MetricsOut):
    key: Any


class GroupsOut(Schema):
    groups: list[GroupOut]


class BucketOut(MetricsOut):
    time: datetime


class TimeseriesOut(Schema):
    interval: str
    buckets: list[BucketOut]


METRICS_WINDOW = "Without `created_after` the metrics cover the last 24 hours."


def _metrics_logs(request: HttpRequest, filters: RequestFilters) -> Selection:
    # Bounded by default: the last 24 hours, as the dashboard shows.
    if filters.created_after is None:
        filters.created_after = timezone.now() - timedelta(hours=24)
    properties = {param[len("property."):]: value for param, value in request.GET.items()
                  if param.startswith("property.")}
    try:
        return Selection(request.org, filters=filters.dict(exclude_none=True), properties=properties)
    except FilterError as exc:
        raise HttpError(400, str(exc)) from None


@api.get("/metrics/summary", response={200: GroupsOut | MetricsOut, **ERRORS, **TOO_SLOW}, summary="Totals, rates and percentiles",
         description="The same filters as `/requests`. " + METRICS_WINDOW
         + " With `group_by=model|provider|user|prompt|cache_match|shadow_similarity|property:<Name>` the metrics"
         " per value, most requests first (`cache_match`: exact, semantic, shadow or empty; `shadow_similarity`:"
         " the similarity bands of shadow-mode semantic candidates, e.g. 0.93).")
def metrics_summary(request: HttpRequest, filters: Query[RequestFilters],
                    group_by: str | None = Query(
                        None, pattern=rf"^(?:model|provider|user|prompt|cache_match|shadow_similarity|property:(?:{PROPERTY_NAME}))$"),
                    limit: int = Query(100, ge=1, le=1000)):
    qs = _metrics_logs(request, filters)
    try:
        if group_by:
            return {"groups": metrics.group_by(qs, group_by, limit=limit)}
        return metrics.summary(qs)
    except FilterError as exc:
        raise HttpError(400, str(exc)) from None
    except metrics.TooSlow as exc:
        raise HttpError(503, str(exc)) from None


@api.get("/metrics/timeseries", response={200: TimeseriesOut, **ERRORS, **TOO_SLOW}, summary="The summary metrics per time bucket",
         description="`interval=minute|hour|day`; buckets with no requests are left out, oldest first. "
         + METRICS_WINDOW)
def metrics_timeseries(request: HttpRequest, filters: Query[RequestFilters],
                       interval: Literal["minute", "hour", "day"] = "hour"):
    qs = _metrics_logs(request, filters)
    end = filters.created_before or timezone.now()
    try:
        return {"interval": interval, "buckets": metrics.timeseries(qs, interval, filters.created_after, end)}
    except FilterError as exc:
        raise HttpError(400, str(exc)) from None
    except metrics.TooSlow as exc:
        raise HttpError(503, str(exc)) from None


# --- Feedback, scores, properties ----------------------------------------------------


class FeedbackIn(Schema):
    rating: StrictBool


class FeedbackOut(Schema):
    id: uuid.UUID
    rating: bool


class ScoresIn(Schema):
    scores: dict[Annotated[str, Field(min_length=1, max_length=actions.MAX_NAME, pattern=NO_NUL)],
                 StrictBool | StrictInt | StrictFloat] = Field(
        min_length=1, max_length=actions.MAX_SCORES,
        # pydantic documents the key pattern as patternProperties: only this makes other keys invalid.
        json_schema_extra={"additionalProperties": False})


class ScoresOut(Schema):
    id: uuid.UUID
    scores: dict[str, bool | float]


class PropertyIn(Schema):
    key: str = Field(min_length=1, max_length=200, pattern=rf"^(?:{PROPERTY_NAME})$", description="Without '__'")
    value: str = Field(max_length=1000, pattern=NO_NUL)


class PropertyOut(Schema):
    id: uuid.UUID
    properties: dict[str, Any]


@api.post("/requests/{request_id}/feedback", auth=write_auth, response={200: FeedbackOut, **ERRORS, **NOT_FOUND},
          summary="Rate a request (thumbs up or down); the last rating wins")
def post_feedback(request: HttpRequest, request_id: uuid.UUID, body: FeedbackIn):
    log = actions.get_log(request.org, request_id)
    feedback = actions.set_feedback(request.org, log, body.rating)
    return {"id": log.id, "rating": feedback.rating}


@api.post("/requests/{request_id}/scores", auth=write_auth, response={200: ScoresOut, **ERRORS, **NOT_FOUND},
          summary="Attach named scores (numbers or booleans); a name sent again is replaced")
def post_scores(request: HttpRequest, request_id: uuid.UUID, body: ScoresIn):
    log = actions.get_log(request.org, request_id)
    try:
        scores = actions.set_scores(request.org, log, body.scores)
    except actions.ActionError as exc:
        raise HttpError(400, str(exc)) from None
    return {"id": log.id, "scores": scores}


@api.put("/requests/{request_id}/property", auth=write_auth, response={200: PropertyOut, **ERRORS, **NOT_FOUND},
         summary="Set one custom property on a logged request (audited)")
def put_property(request: HttpRequest, request_id: uuid.UUID, body: PropertyIn):
    try:
        log = actions.set_property(request.org, request_id, body.key, body.value, api_key=request.auth,
                                   request=request)
    except actions.ActionError as exc:
        raise HttpError(400, str(exc)) from None
    return {"id": log.id, "properties": log.properties}


# --- Manual logging ------------------------------------------------------------------


class ManualLogIn(Schema):
    providerRequest: dict[str, Any] = Field(description="{url, json, meta}: meta holds Helicone-* headers")
    providerResponse: dict[str, Any] = Field(description="{status, headers, json}")
    timing: dict[str, Any] | None = Field(
        None, description="{startTime, endTime, timeToFirstToken?}: {seconds, milliseconds}, epoch or ISO 8601")


class ManualLogOut(Schema):
    id: uuid.UUID
    cost_usd: float | None


log_auth = ApiKeyAuth(("proxy", "write", "log"))


@api.post("/log", auth=log_auth, response={201: ManualLogOut, **ERRORS},
          summary="Log a call made without the proxy (Helicone's manual-logger body)",
          description="Priced, stored and streamed live like a proxied call. Needs the `proxy`, `write` or `log` "
          "scope.")
def post_log(request: HttpRequest, body: ManualLogIn):
    data = without_nul(body.dict())
    try:
        log = actions.log_manual(request.org, request.auth, data)
    except actions.ActionError as exc:
        raise HttpError(400, str(exc)) from None
    return Status(201, {"id": log.id, "cost_usd": None if log.cost_usd is None else float(log.cost_usd)})


# --- Data lifecycle ------------------------------------------------------------------


class ErasedOut(Schema):
    user_id: str
    requests: int = Field(description="Request logs deleted")
    feedback: int
    scores: int
    webhook_deliveries: int = Field(description="Request-webhook messages that carried the user's requests")
    alert_events: int = Field(description="Alert firings grouped by this user")
    semantic_cache_entries: int = Field(description="The user's questions kept by the semantic cache")
    rate_limit_counters: int


@api.delete("/users/{path:user_id}", auth=write_auth, response={200: ErasedOut, **ERRORS},
            summary="Erase everything stored about one end user (GDPR); audited",
            description="The user is the `Helicone-User-Id` value (URL-encoded). Deletes the org's logs of the "
            "user with their feedback and scores, the user's semantic cache entries, request-webhook deliveries "
            "carrying them, alert events grouped by the user and the user's rate-limit counters. Erasing a user with no data answers zeros.")
def erase_user(request: HttpRequest, user_id: str = Path(..., min_length=1, max_length=255, pattern=NO_NUL)):
    counts = lifecycle.erase_user(request.org, user_id, via="api", api_key=request.auth, request=request)
    return {"user_id": user_id, **counts}
