"""State changes on logged requests: feedback, scores, properties, manual logs.

Each takes the org explicitly and a log already fetched through `get_log`, so
a caller cannot reach another org's request.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
from django.db import transaction
from django.http import Http404

from formats.headers import HeaderError, parse_options
from formats.providers import provider_from_host
from formats.usage import usage_from_body
from orgs import audit
from orgs.models import ApiKey, Organization

from .models import Feedback, RequestLog, Score

MAX_SCORES = 50
MAX_NAME = 100


class ActionError(ValueError):
    """A change that cannot be made; the message is safe to show."""


def get_log(org: Organization, log_id, *, for_update: bool = False) -> RequestLog:
    """The org's log with this id; 404 for a missing id and another org's alike."""
    qs = RequestLog.objects.filter(org=org, id=log_id)
    if for_update:
        qs = qs.select_for_update()
    log = qs.first()
    if log is None:
        raise Http404("No request with this id in your organization")
    return log


def set_feedback(org: Organization, log: RequestLog, rating: bool) -> Feedback:
    # Feedback and scores are end-user data sent by programs at request volume:
    # they are not audited (the audit log is for who changed the org's setup).
    feedback, _ = Feedback.objects.update_or_create(request=log, defaults={"org": org, "rating": rating})
    return feedback


def set_scores(org: Organization, log: RequestLog, scores: dict[str, Any]) -> dict[str, float | bool]:
    if not scores or len(scores) > MAX_SCORES:
        raise ActionError(f"scores: give 1 to {MAX_SCORES} named values")
    cleaned: dict[str, tuple[float, bool]] = {}
    for name, value in scores.items():
        if not name or len(name) > MAX_NAME:
            raise ActionError(f"scores: names are 1 to {MAX_NAME} characters")
        if isinstance(value, bool):
            cleaned[name] = (float(value), True)
        elif isinstance(value, (int, float)) and value == value and abs(value) != float("inf"):
            cleaned[name] = (float(value), False)
        else:
            raise ActionError(f"scores.{name}: must be a number or a boolean")
    with transaction.atomic():
        for name, (value, is_boolean) in cleaned.items():
            Score.objects.update_or_create(request=log, name=name,
                                           defaults={"org": org, "value": value, "is_boolean": is_boolean})
    return scores_of(log)


def scores_of(log: RequestLog) -> dict[str, float | bool]:
    return {score.name: score.as_json() for score in log.scores.all()}


def set_property(org: Organization, log_id, key: str, value: str, *, api_key: ApiKey | None = None,
                 user=None, request=None) -> RequestLog:
    """Set one custom property on a stored log (audited: it changes what filters and metrics see)."""
    if not key or len(key) > 200 or "__" in key:
        raise ActionError("key: 1 to 200 characters, without '__'")
    if len(value) > 1000:
        raise ActionError("value: at most 1000 characters")
    with transaction.atomic():
        log = get_log(org, log_id, for_update=True)
        before = log.properties.get(key)
        log.properties = {**log.properties, key: value}
        log.save(update_fields=["properties"])
        audit.record("request.property_set", request=request, org=org, user=user, api_key=api_key, target=log,
                     changes={"key": key, "from": before, "to": value})
    return log


# --- Manual logging (POST /api/v1/log) -------------------------------------------------


def _epoch(value: Any, field: str) -> float:
    """Helicone's {seconds, milliseconds}, epoch seconds or milliseconds, or an ISO 8601 string."""
    if isinstance(value, dict) and "seconds" in value:
        return float(value["seconds"]) + float(value.get("milliseconds") or 0) / 1000
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value / 1000 if value > 1e11 else float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    raise ActionError(f"timing.{field}: expected {{seconds, milliseconds}}, epoch seconds or ISO 8601")


def manual_log_record(org: Organization, api_key: ApiKey | None, body: dict[str, Any]) -> dict[str, Any]:
    """A log-writer record for a call made without the proxy (Helicone's manual-logger body)."""
    provider_request = body.get("providerRequest") or {}
    provider_response = body.get("providerResponse") or {}
    timing = body.get("timing") or {}
    if not isinstance(provider_request, dict) or not isinstance(provider_response, dict) or not isinstance(timing, dict):
        raise ActionError("providerRequest, providerResponse and timing must be objects")
    meta = provider_request.get("meta") or {}
    if not isinstance(meta, dict):
        raise ActionError("providerRequest.meta must be an object of Helicone-* headers")
    try:
        opts = parse_options({str(k).lower(): str(v) for k, v in meta.items()})
    except HeaderError as exc:
        raise ActionError(f"providerRequest.meta: {exc}") from None
    start = _epoch(timing.get("startTime", time.time()), "startTime")
    end = _epoch(timing.get("endTime", start), "endTime")
    ttft = timing.get("timeToFirstToken")
    request_json = provider_request.get("json")
    response_json = provider_response.get("json")
    status = provider_response.get("status", 200)
    if not isinstance(status, int) or isinstance(status, bool):
        raise ActionError("providerResponse.status must be an integer")
    url = str(provider_request.get("url") or "")
    requested_model = request_json.get("model", "") if isinstance(request_json, dict) else ""
    served_model = response_json.get("model", "") if isinstance(response_json, dict) else ""
    usage = usage_from_body(response_json)
    error = ""
    if status >= 400:
        error = orjson.dumps(response_json).decode()[:5000] if response_json is not None else f"HTTP {status}"
    log_id = opts.request_id or str(uuid.uuid4())
    return {
        "id": log_id,
        "org_id": org.id,
        "api_key_id": api_key.id if api_key else None,
        "created_at": start,
        "provider": (provider_from_host(url) if url else "custom")[:32],
        "method": "POST",
        "target_url": url,
        "path": urlsplit(url).path,
        "requested_model": str(requested_model)[:200],
        "model": (opts.model_override or str(served_model or requested_model))[:200],
        "status": status,
        "error": error,
        "request_body": "" if opts.omit_request or request_json is None else orjson.dumps(request_json).decode(),
        "response_body": "" if opts.omit_response or response_json is None else orjson.dumps(response_json).decode(),
        "request_omitted": opts.omit_request,
        "response_omitted": opts.omit_response,
        "latency_ms": round(max(end - start, 0) * 1000, 3),
        "ttft_ms": float(ttft) if isinstance(ttft, (int, float)) and not isinstance(ttft, bool) else None,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cached_tokens": usage.cached_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "user_id": opts.user_id or (str(request_json.get("user"))[:255]
                                    if isinstance(request_json, dict) and isinstance(request_json.get("user"), str)
                                    else ""),
        "session_id": opts.session_id,
        "session_path": opts.session_path,
        "session_name": opts.session_name,
        "properties": opts.properties,
        "request_name": opts.request_name,
        "prompt_id": opts.prompt_id,
    }


def log_manual(org: Organization, api_key: ApiKey | None, body: dict[str, Any]) -> RequestLog:
    """Price, store and publish a manually logged call through the log writer's own path."""
    from .writer import write_batch

    record = manual_log_record(org, api_key, body)
    if RequestLog.objects.filter(id=record["id"]).exclude(org=org).exists():
        raise ActionError("Helicone-Request-Id is already used")
    write_batch([record])
    return get_log(org, record["id"])
