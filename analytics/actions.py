"""State changes on logged requests: feedback, scores, properties, manual logs.

Each takes the org explicitly and a log already fetched through `get_log`, so
a caller cannot reach another org's request.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import Http404

from formats.helicone_log import LogBodyError, parse_log
from orgs import audit
from orgs.models import ApiKey, Organization

from . import clickhouse, rollups, semantic_store
from .models import Feedback, RequestLog, Score

MAX_SCORES = 50
MAX_NAME = 100


class ActionError(ValueError):
    """A change that cannot be made; the message is safe to show."""


def get_log(org: Organization, log_id, *, for_update: bool = False) -> RequestLog:
    """The org's log with this id; 404 for a missing id and another org's alike."""
    if clickhouse.enabled() and (not for_update or clickhouse.only()):
        from .clickhouse import rows

        log = rows.get(org.pk, log_id)
        if log is None:
            raise Http404("No request with this id in your organization")
        return log
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
    with transaction.atomic():
        feedback, _ = Feedback.objects.update_or_create(request=log, defaults={"org": org, "rating": rating})
        if not rating and log.cache_match == "semantic" and log.source_request_id:
            # A 👎 on a semantic hit says the cached answer did not fit this question: the entry
            # that matched is evicted, so no later paraphrase is served it either.
            semantic_store.evict_source(org.id, log.source_request_id)
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
        if not clickhouse.only():
            rollups.subtract([log])  # with the properties it had
        log.properties = {**log.properties, key: value}
        if not clickhouse.only():
            RequestLog.objects.filter(pk=log.pk).update(properties=log.properties)
            rollups.add([log])
        if clickhouse.enabled():
            from .clickhouse import changes

            changes.update(org.pk, log.id, {"properties": log.properties})
        audit.record("request.property_set", request=request, org=org, user=user, api_key=api_key, target=log,
                     changes={"key": key, "from": before, "to": value})
    return log


# --- Manual logging (POST /api/v1/log) -------------------------------------------------


def manual_log_record(org: Organization, api_key: ApiKey | None, body: dict[str, Any]) -> dict[str, Any]:
    """A log-writer record for a call made without the proxy (Helicone's manual-logger body); the
    provider is the host of `providerRequest.url`."""
    try:
        record = parse_log(body, now=time.time(), max_body_chars=settings.GATEWAY_MAX_LOGGED_BODY_BYTES)
    except LogBodyError as exc:
        raise ActionError(str(exc)) from None
    record["org_id"] = org.id
    record["api_key_id"] = api_key.id if api_key else None
    return record


def stored_log_org(log_id: str) -> int | None:
    """The org of the stored log with this id, if any: a log sent again with the id it was stored
    under adds nothing, and another org's id is refused rather than silently not written."""
    if clickhouse.only():
        from .clickhouse import rows

        return rows.org_of(log_id)
    return RequestLog.objects.filter(id=log_id).values_list("org_id", flat=True).first()


def log_manual(org: Organization, api_key: ApiKey | None, body: dict[str, Any]) -> RequestLog:
    """Price, store and publish a manually logged call through the log writer's own path."""
    from .writer import write_batch

    record = manual_log_record(org, api_key, body)
    if stored_log_org(record["id"]) not in (None, org.id):
        raise ActionError("Helicone-Request-Id is already used")
    write_batch([record])
    return get_log(org, record["id"])
