"""The request query API (django-ninja), at /api/v1/, with OpenAPI docs at /api/v1/docs.

Authenticated with `Authorization: Bearer sk-helicone-…`; the org always comes
from the key, so another org's log is simply not found (404).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.http import Http404, HttpRequest
from ninja import Field, NinjaAPI, Query, Schema
from ninja.errors import HttpError
from ninja.security import HttpBearer

from orgs.models import ApiKey

from .models import RequestLog


class ApiKeyAuth(HttpBearer):
    def __init__(self, scope: str):
        super().__init__()
        self.scope = scope

    def authenticate(self, request: HttpRequest, token: str) -> ApiKey | None:
        key = ApiKey.find_active(token)
        if key is None:
            return None
        if not key.has_scope(self.scope):
            raise HttpError(403, f"This API key lacks the '{self.scope}' scope")
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


class RequestFilters(Schema):
    user_id: str | None = None
    session_id: str | None = None
    model: str | None = None
    provider: str | None = None
    status: int | None = None
    cache_hit: bool | None = None
    request_name: str | None = None
    prompt_id: str | None = None
    prompt_version: int | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


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
    qs = RequestLog.objects.filter(org=request.org)
    for name, value in filters.dict(exclude_none=True).items():
        if name == "created_after":
            qs = qs.filter(created_at__gte=value)
        elif name == "created_before":
            qs = qs.filter(created_at__lt=value)
        else:
            qs = qs.filter(**{name: value})
    for param, value in request.GET.items():
        if param.startswith("property."):
            name = param[len("property.") :]
            if not name or "__" in name:
                raise HttpError(400, f"Invalid property filter {param!r}: name it as property.<Name>")
            qs = qs.filter(**{f"properties__{name}": value})
    return qs


@api.get("/requests", response=RequestPage, summary="List request logs, newest first",
         description="Filters as query parameters; custom properties as `property.<Name>=<value>`.")
def list_requests(request: HttpRequest, filters: Query[RequestFilters], limit: int = Query(50, ge=1, le=1000),
                  offset: int = Query(0, ge=0)):
    qs = filter_logs(request, filters).defer("request_body", "response_body", "request_headers")
    return {"items": list(qs.order_by("-created_at")[offset : offset + limit]), "count": qs.count()}


@api.get("/requests/{request_id}", response=RequestDetailOut, summary="One request log with its bodies")
def get_request(request: HttpRequest, request_id: uuid.UUID):
    log = RequestLog.objects.filter(org=request.org, id=request_id).first()
    if log is None:
        raise Http404("No request with this id in your organization")
    return log
