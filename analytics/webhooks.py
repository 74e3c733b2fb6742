"""Outgoing webhooks: signed JSON (and Slack messages), retried with backoff by the alerts worker.

A message is enqueued as a WebhookDelivery row (attempt 1, pending). `deliver_due`
claims due rows with a conditional UPDATE (so concurrent workers send each attempt
once), POSTs them, records the outcome on the row, and on failure adds the next
attempt as a new row due after an exponential backoff. Nothing here sleeps.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import secrets
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import httpx
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from formats.providers import target_problem

from .models import RequestLog, Webhook, WebhookDelivery

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Helicone-Signature"
MAX_ATTEMPTS = 6
TIMEOUT_SECONDS = 10.0


def backoff_seconds(attempt: int) -> float:
    """Wait before attempt `attempt + 1`: base, 2×base, 4×base... (base from ALERTS_RETRY_BASE_SECONDS)."""
    base = float(getattr(settings, "ALERTS_RETRY_BASE_SECONDS", 30.0))
    return base * (2 ** (attempt - 1))


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(24)


def sign(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def url_problem(url: str) -> str | None:
    """Why a webhook URL may not be used, or None (the gateway's own SSRF rules)."""
    return target_problem(url)


def validate_webhook_url(url: str) -> None:
    """Form validator."""
    problem = url_problem(url)
    if problem:
        raise ValidationError(f"This URL {problem}.")


def enqueue(org_id: int, url: str, event_type: str, payload: dict[str, Any], *,
            webhook: Webhook | None = None, fmt: str = WebhookDelivery.Format.JSON) -> WebhookDelivery:
    body = json.dumps(payload, cls=DjangoJSONEncoder, separators=(",", ":"))
    return WebhookDelivery.objects.create(org_id=org_id, webhook=webhook, url=url, event_type=event_type,
                                          format=fmt, body=body)


def deliver_due(limit: int = 100) -> int:
    """Send the due attempts; returns how many were sent (successfully or not)."""
    now = timezone.now()
    sent = 0
    due = list(WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now)
               .order_by("next_attempt_at").values_list("pk", flat=True)[:limit])
    for pk in due:
        claimed = WebhookDelivery.objects.filter(pk=pk, status=WebhookDelivery.Status.PENDING).update(
            status=WebhookDelivery.Status.SENDING, attempted_at=timezone.now())
        if not claimed:
            continue  # another worker has it
        delivery = WebhookDelivery.objects.select_related("webhook").get(pk=pk)
        _attempt(delivery)
        sent += 1
    return sent


def _attempt(delivery: WebhookDelivery) -> None:
    body = delivery.body.encode()
    headers = {"Content-Type": "application/json", "User-Agent": "helicone-gateway-webhooks"}
    if delivery.format == WebhookDelivery.Format.JSON:
        headers["Helicone-Webhook-Id"] = str(delivery.message_id)
        if delivery.webhook is not None:
            headers[SIGNATURE_HEADER] = sign(body, delivery.webhook.secret)
    status_code, error = None, ""
    problem = url_problem(delivery.url)  # again at send time: DNS may have changed since the form
    if delivery.format == WebhookDelivery.Format.JSON and delivery.webhook is None:
        # Deleted since it was queued: never send its payload unsigned, and stop retrying.
        WebhookDelivery.objects.filter(pk=delivery.pk).update(status=WebhookDelivery.Status.FAILED,
                                                              error="The webhook was deleted")
        return
    if problem:
        error = f"URL {problem}"
    else:
        try:
            response = httpx.post(delivery.url, content=body, headers=headers, timeout=TIMEOUT_SECONDS,
                                  follow_redirects=False)
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
    ok = not error
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=WebhookDelivery.Status.SUCCEEDED if ok else WebhookDelivery.Status.FAILED,
        response_status=status_code, error=error)
    if not ok and delivery.attempt < MAX_ATTEMPTS:
        WebhookDelivery.objects.create(
            org_id=delivery.org_id, webhook=delivery.webhook, message_id=delivery.message_id,
            event_type=delivery.event_type, url=delivery.url, format=delivery.format, body=delivery.body,
            attempt=delivery.attempt + 1,
            next_attempt_at=timezone.now() + timedelta(seconds=backoff_seconds(delivery.attempt)))
    elif not ok:
        log.warning("webhook %s to %s gave up after %d attempts: %s", delivery.message_id, delivery.url,
                    delivery.attempt, error)


# --- Request webhooks: every logged request, sampled and filtered ------------------------------

def request_payload(row: RequestLog, include_bodies: bool) -> dict[str, Any]:
    from .live import summary

    payload = {"type": "request.logged", "request": summary(row)}
    if include_bodies:
        payload["request"]["request_body"] = row.request_body
        payload["request"]["response_body"] = row.response_body
    return payload


def _matches(webhook: Webhook, row: RequestLog) -> bool:
    props = row.properties or {}
    if any(str(props.get(name)) != str(value) for name, value in (webhook.property_filters or {}).items()):
        return False
    return webhook.sample_rate >= 1 or random.random() < webhook.sample_rate


def enqueue_request_webhooks(rows: Sequence[RequestLog]) -> None:
    """A log-writer listener: one delivery per request and matching request webhook."""
    from .live import org_ids

    orgs = org_ids(rows)
    hooks = list(Webhook.objects.filter(org_id__in=set(orgs), kind=Webhook.Kind.REQUESTS, enabled=True))
    if not hooks:
        return
    hooked = {hook.org_id for hook in hooks}
    deliveries = []
    for index, org_id in enumerate(orgs):
        if org_id not in hooked:
            continue  # not even built
        row = rows[index]
        for hook in hooks:
            if hook.org_id == org_id and _matches(hook, row):
                body = json.dumps(request_payload(row, hook.include_bodies), cls=DjangoJSONEncoder,
                                  separators=(",", ":"))
                deliveries.append(WebhookDelivery(org_id=org_id, webhook=hook, url=hook.url,
                                                  event_type="request.logged", body=body))
    WebhookDelivery.objects.bulk_create(deliveries)
