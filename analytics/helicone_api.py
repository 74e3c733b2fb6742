"""Helicone's own public API, so its helper libraries and scripts work here with a base URL change
(docs/helicone-compat.md): the logging endpoints (`/custom/v1/log`, `/oai/v1/log`, …), the request
query and annotation routes (`/v1/request/…`), sessions and users (`/v1/session/query`,
`/v1/user/metrics/query`) and the prompt routes `HeliconePromptManager` reads (`/v1/prompt-2025/…`).

Field names and answers are Helicone's: `{"data": …, "error": null}` envelopes (`{"data": null,
"error": "…"}` on failure); the logging endpoints answer `ok` with a `Helicone-Id` header, or
`{"error": "…"}`. A key is `Authorization: Bearer <key>` or `Helicone-Auth: Bearer <key>`; the org
is always the key's, so another org's request, session, user or prompt is simply not found.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Annotated, Any

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from ninja import Field, NinjaAPI, Query, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.security.base import AuthBase
from pydantic import StrictBool, StrictFloat, StrictInt

from formats.helicone_log import PATH_PROVIDERS, LogBodyError, parse_log
from orgs.api_auth import KeyRefused, key_for
from orgs.models import ApiKey
from prompts.helicone import router as prompt_router

from . import actions, helicone_query
from .ingest import read_limited
from .logqueue import enqueue
from .queries import FilterError
from .writer import without_nul


class HeliconeError(Exception):
    """An answer in Helicone's error shape: `{"data": null, "error": message}`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"data": None, "error": self.message}


class LogRouteError(HeliconeError):
    """The logging endpoints' error shape: `{"error": message}` (as Helicone's worker answers)."""

    def body(self) -> dict[str, Any]:
        return {"error": self.message}


class KeyAuth(AuthBase):
    """`Helicone-Auth: Bearer <key>`, else `Authorization: Bearer <key>`, with one of `scopes`."""

    openapi_type = "http"
    openapi_scheme = "bearer"

    def __init__(self, scopes: tuple[str, ...], error: type[HeliconeError] = HeliconeError):
        super().__init__()
        self.scopes = scopes
        self.error = error

    def __call__(self, request: HttpRequest) -> ApiKey:
        try:
            key = key_for(request, self.scopes)
        except KeyRefused as refused:
            raise self.error(refused.status, refused.message) from None
        request.org = key.org
        return key


read_key = KeyAuth(("read",))
write_key = KeyAuth(("write",))
# `proxy` keys log every call they proxy, `write` keys change logs: both may send logs, as `log` keys do.
log_key = KeyAuth(("log", "proxy", "write"), LogRouteError)

helicone = NinjaAPI(
    title="Helicone-compatible API",
    version="1",
    description="Helicone's public API (logging, request query and annotation, sessions, users, prompts) with "
                "Helicone's field names. Authenticate with `Authorization: Bearer <API key>`.",
    urls_namespace="helicone",
    docs_url="/v1/docs",
    openapi_url="/v1/openapi.json",
    auth=read_key,
)


@helicone.exception_handler(HeliconeError)
def _helicone_error(request: HttpRequest, exc: HeliconeError) -> HttpResponse:
    return JsonResponse(exc.body(), status=exc.status)


@helicone.exception_handler(ValidationError)
def _invalid_body(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    problems = []
    for error in exc.errors:
        where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "payload", "query"))
        problems.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    return JsonResponse({"data": None, "error": "; ".join(problems) or "invalid request"}, status=400)


@helicone.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return JsonResponse({"data": None, "error": "Missing or invalid API key"}, status=401)


@helicone.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return JsonResponse({"data": None, "error": str(exc) or "Not found"}, status=404)


@helicone.exception_handler(OperationalError)
@helicone.exception_handler(InterfaceError)
def _database_unavailable(request: HttpRequest, exc: Exception) -> HttpResponse:
    error_type = LogRouteError if request.path.endswith("/log") else HeliconeError
    response = JsonResponse(error_type(503, "The database is unavailable: retry").body(), status=503)
    response["Retry-After"] = "5"
    return response


@helicone.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return JsonResponse({"data": None, "error": str(exc)}, status=exc.status_code)


def ok(data: Any = None, status: int = 200) -> JsonResponse:
    return JsonResponse({"data": data, "error": None}, status=status)


# --- Logging endpoints ------------------------------------------------------------------------
# Each log goes the proxied logs' way (journal on disk, queue, writer in batches) rather than being
# written before the answer: a log answered `ok` survives a crash or a database outage during the
# write like a proxied one, and logs arriving together are written together. Before answering only
# the key (and a chosen id) is looked up.

LOG_ROUTES = {
    "/custom/v1/log": "custom",
    "/oai/v1/log": "oai",
    "/anthropic/v1/log": "anthropic",
    "/googleapis/v1/log": "googleapis",
    "/v1/trace/custom/v1/log": "custom",
    "/v1/trace/custom/log": "custom",
}


def _read_body(request: HttpRequest) -> bytes:
    limit = settings.MANUAL_LOG_MAX_BYTES
    raw = read_limited(request, limit)
    if raw is None:
        raise LogRouteError(413, f"The log body exceeds the limit of {limit} bytes (MANUAL_LOG_MAX_BYTES)")
    return raw


def _parse(raw: bytes, headers: dict[str, str], provider: str) -> tuple[dict[str, Any], bool]:
    """(the record, whether the caller chose its id)."""
    try:
        body = orjson.loads(raw)
    except ValueError:
        raise LogRouteError(400, "body: not valid JSON") from None
    body = without_nul(body)
    try:
        record = parse_log(body, headers=headers, provider=PATH_PROVIDERS[provider], now=time.time(),
                           max_body_chars=settings.GATEWAY_MAX_LOGGED_BODY_BYTES)
    except LogBodyError as exc:
        raise LogRouteError(400, str(exc)) from None
    meta = body["providerRequest"].get("meta") or {}
    chosen = "helicone-request-id" in headers or any(str(name).lower() == "helicone-request-id" for name in meta)
    return record, chosen


def _log_view(provider: str):
    async def log_call(request: HttpRequest) -> HttpResponse:
        key: ApiKey = request.auth
        raw = _read_body(request)
        headers = {name.lower(): value for name, value in request.headers.items()}
        # Parsing (a long stream to assemble) runs off the event loop the proxy shares.
        record, chosen = await asyncio.to_thread(_parse, raw, headers, provider)
        record["org_id"] = key.org_id
        record["api_key_id"] = key.id
        if chosen:
            owner = await sync_to_async(actions.stored_log_org)(record["id"])
            if owner is not None and owner != key.org_id:
                raise LogRouteError(409, f"Helicone-Request-Id: {record['id']} is already the id of another log")
            if owner is None:
                enqueue(record)
            # else: the same log sent again, already stored: nothing to add.
        else:
            enqueue(record)
        return HttpResponse("ok", content_type="text/plain", headers={"Helicone-Id": record["id"]})

    log_call.__name__ = f"log_{provider}"
    return log_call


_TIME = {"oneOf": [{"type": "object", "properties": {"seconds": {"type": "number"},
                                                      "milliseconds": {"type": "number"}}},
                    {"type": "number"}, {"type": "string"}]}
LOG_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["providerRequest", "providerResponse"],
    "properties": {
        "providerRequest": {"type": "object", "required": ["json"], "properties": {
            "url": {"type": "string"}, "json": {"description": "The request body sent to the provider"},
            "meta": {"type": "object", "description": "Helicone-* headers", "additionalProperties": {}}}},
        "providerResponse": {"type": "object", "required": ["status"], "properties": {
            "json": {"description": "The response body"},
            "textBody": {"type": "string", "description": "Wins over json: a JSON document, an SSE stream or JSON "
                                                          "chunks one per line"},
            "status": {"type": "integer"}, "headers": {"type": "object"},
            "cost": {"type": "number", "description": "USD; priced from the tokens when absent"}}},
        "timing": {"type": "object", "required": ["startTime", "endTime"], "properties": {
            "startTime": _TIME, "endTime": _TIME, "timeToFirstToken": {"type": "number"}}},
    }}}}}

for _path, _provider in LOG_ROUTES.items():
    helicone.post(
        _path, auth=log_key, operation_id=f"log{_path.replace('/', '_').replace('-', '_')}", tags=["Logging"],
        summary="Log a call made without the proxy (Helicone's async log body)",
        description="Answers `ok` (text) with a `Helicone-Id` header once the log is journaled; 400 "
                    "`{\"error\"}` naming a bad field, 401 without a valid key, 403 without the `log`, `proxy` "
                    "or `write` scope, 409 for a `Helicone-Request-Id` another log has, 413 past "
                    "`MANUAL_LOG_MAX_BYTES`.",
        openapi_extra={"requestBody": LOG_BODY},
    )(_log_view(_provider))


# --- Requests: query, one request, feedback, scores, properties -----------------------------------


class RequestQueryIn(Schema):
    filter: Any = Field("all", description='"all", a leaf such as {"request_response_rmt": {"model": {"equals": '
                                           '"gpt-4o"}}}, or {"left", "operator": "and"|"or", "right"}')
    offset: int = 0
    limit: int = Field(100, description=f"0 to {helicone_query.MAX_LIMIT}")
    sort: dict[str, Any] | None = Field(None, description='e.g. {"created_at": "desc"} (the default)')
    isCached: bool | None = Field(None, description="true: only requests answered from the cache")
    includeInputs: bool | None = None
    isPartOfExperiment: bool | None = None
    isScored: bool | None = Field(None, description="true: only requests with a score")


def query_rows(request: HttpRequest, body: RequestQueryIn) -> list[dict[str, Any]]:
    try:
        limit, offset = helicone_query.page(body.limit, body.offset)
        logs = helicone_query.query_logs(request.org, body.filter, body.sort, limit=limit, offset=offset,
                                         cached_only=bool(body.isCached), scored_only=bool(body.isScored))
    except FilterError as exc:
        raise HeliconeError(400, str(exc)) from None
    return [helicone_query.request_row(log) for log in logs]


QUERY_HELP = ("Helicone's request query: `filter`, `limit`, `offset`, `sort`, `isCached`. Rows are Helicone's "
              "`HeliconeRequest` with the bodies inline; fields we do not record are null.")


@helicone.post("/v1/request/query", tags=["Request"], summary="Query requests", description=QUERY_HELP)
def query_requests(request: HttpRequest, body: RequestQueryIn):
    return ok(query_rows(request, body))


@helicone.post("/v1/request/query-clickhouse", tags=["Request"], summary="Query requests (Helicone's bulk route)",
               description=QUERY_HELP + " The same answer as /v1/request/query.")
def query_requests_clickhouse(request: HttpRequest, body: RequestQueryIn):
    return ok(query_rows(request, body))


class RequestIdsIn(Schema):
    requestIds: list[str] = Field(max_length=helicone_query.MAX_LIMIT)


@helicone.post("/v1/request/query-ids", tags=["Request"], summary="Requests by their ids",
               description="The org's requests among `requestIds` (ids of other orgs, or of nothing, are left out), "
                           "newest first, with their bodies.")
def query_request_ids(request: HttpRequest, body: RequestIdsIn):
    ids = []
    for position, value in enumerate(body.requestIds):
        try:
            ids.append(uuid.UUID(value))
        except ValueError:
            raise HeliconeError(400, f"requestIds.{position}: not a request id (a UUID)") from None
    logs = helicone_query.logs_by_ids(request.org, ids)
    return ok([helicone_query.request_row(log) for log in logs])


def _request_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise HeliconeError(404, "No request with this id in your organization") from None


@helicone.get("/v1/request/{request_id}", tags=["Request"], summary="One request",
              description="With `includeBody=true` the request and response bodies; null without.")
def get_request(request: HttpRequest, request_id: str, includeBody: bool = Query(False)):
    logs = helicone_query.logs_by_ids(request.org, [_request_id(request_id)])
    log = logs[0] if logs else None
    if log is None:
        raise HeliconeError(404, "No request with this id in your organization")
    return ok(helicone_query.request_row(log, include_body=includeBody))


class FeedbackIn(Schema):
    rating: StrictBool


@helicone.post("/v1/request/{request_id}/feedback", auth=write_key, tags=["Request"],
               summary="Rate a request (thumbs up or down); the last rating wins")
def request_feedback(request: HttpRequest, request_id: str, body: FeedbackIn):
    log = actions.get_log(request.org, _request_id(request_id))
    actions.set_feedback(request.org, log, body.rating)
    return ok()


NoNul = Annotated[str, Field(pattern=r"^[^\x00]*$")]


class ScoreIn(Schema):
    scores: dict[Annotated[str, Field(min_length=1, max_length=actions.MAX_NAME, pattern=r"^[^\x00]*$")],
                 StrictBool | StrictInt | StrictFloat] = Field(min_length=1, max_length=actions.MAX_SCORES)


@helicone.post("/v1/request/{request_id}/score", auth=write_key, tags=["Request"],
               summary="Attach named scores (numbers or booleans); a name sent again is replaced")
def request_score(request: HttpRequest, request_id: str, body: ScoreIn):
    log = actions.get_log(request.org, _request_id(request_id))
    try:
        actions.set_scores(request.org, log, body.scores)
    except actions.ActionError as exc:
        raise HeliconeError(400, str(exc)) from None
    return ok(status=201)


class PropertyIn(Schema):
    key: NoNul = Field(min_length=1, max_length=200)
    value: NoNul = Field(max_length=1000)


@helicone.put("/v1/request/{request_id}/property", auth=write_key, tags=["Request"],
              summary="Set one custom property on a logged request (audited)")
def request_property(request: HttpRequest, request_id: str, body: PropertyIn):
    try:
        actions.set_property(request.org, _request_id(request_id), body.key, body.value, api_key=request.auth,
                             request=request)
    except actions.ActionError as exc:
        raise HeliconeError(400, str(exc)) from None
    return ok()


# --- Sessions and users ------------------------------------------------------------------------------


def _moment(seconds: float, field: str) -> datetime:
    if not 0 <= seconds <= 253402300799:
        raise HeliconeError(400, f"{field}: out of range")
    return datetime.fromtimestamp(seconds, tz=dt_timezone.utc)


class MillisecondWindow(Schema):
    startTimeUnixMs: float
    endTimeUnixMs: float


class SessionQueryIn(Schema):
    search: str = Field("", description="Part of a session id or name")
    timeFilter: MillisecondWindow
    nameEquals: str | None = None
    timezoneDifference: float = 0
    filter: Any = "all"
    offset: int = 0
    limit: int = 100


@helicone.post("/v1/session/query", tags=["Session"], summary="Query sessions",
               description="Helicone's `SessionResult` rows (totals per session in the time window), newest first.")
def query_sessions(request: HttpRequest, body: SessionQueryIn):
    start = _moment(body.timeFilter.startTimeUnixMs / 1000, "timeFilter.startTimeUnixMs")
    end = _moment(body.timeFilter.endTimeUnixMs / 1000, "timeFilter.endTimeUnixMs")
    try:
        limit, offset = helicone_query.page(body.limit, body.offset)
        rows = helicone_query.sessions(request.org, body.filter, start=start, end=end, search=body.search.strip(),
                                       name_equals=body.nameEquals, limit=limit, offset=offset)
    except FilterError as exc:
        raise HeliconeError(400, str(exc)) from None
    return ok(rows)


class SecondWindow(Schema):
    startTimeUnixSeconds: float
    endTimeUnixSeconds: float


class UserMetricsIn(Schema):
    filter: Any = "all"
    offset: int = 0
    limit: int = 100
    timeFilter: SecondWindow | None = None
    timeZoneDifferenceMinutes: float = 0
    sort: dict[str, Any] | None = None


@helicone.post("/v1/user/metrics/query", tags=["User"], summary="Query user metrics",
               description="Helicone's `{hasUsers, count, users: [UserMetricsResult]}`, last active first.")
def query_user_metrics(request: HttpRequest, body: UserMetricsIn):
    start = end = None
    if body.timeFilter is not None:
        start = _moment(body.timeFilter.startTimeUnixSeconds, "timeFilter.startTimeUnixSeconds")
        end = _moment(body.timeFilter.endTimeUnixSeconds, "timeFilter.endTimeUnixSeconds")
    if abs(body.timeZoneDifferenceMinutes) > 24 * 60:
        raise HeliconeError(400, "timeZoneDifferenceMinutes: at most a day either way")
    try:
        limit, offset = helicone_query.page(body.limit, body.offset)
        data = helicone_query.users(request.org, body.filter, start=start, end=end,
                                    tz_minutes=body.timeZoneDifferenceMinutes, sort=body.sort, limit=limit,
                                    offset=offset)
    except FilterError as exc:
        raise HeliconeError(400, str(exc)) from None
    return ok(data)


# --- Prompts (prompts/helicone.py) ----------------------------------------------------------------

helicone.add_router("/v1/prompt-2025", prompt_router)
