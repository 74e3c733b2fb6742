"""Alert rules: evaluation (fire once, resolve when back), notifications, and the worker's tick.

`tick()` is what `manage.py run_alerts` runs in a loop (and, in the embedded
default, what the in-process log writer triggers at most every
ALERTS_EMBEDDED_SECONDS): it claims each due rule with a conditional UPDATE of
`next_evaluation_at`, so however many evaluators run, a rule is evaluated once
per tick; then it sends the due webhook attempts.

Values use the units of the rule's threshold: error rate in percent, cost in
USD, latencies in milliseconds. The metric is computed by `analytics.metrics`,
the same code as the dashboard's.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from . import live, metrics, webhooks
from .models import AlertComparison, AlertEvent, AlertMetric, AlertRule, RequestLog, WebhookDelivery
from .queries import Selection

log = logging.getLogger(__name__)

MIN_WINDOW = timedelta(minutes=1)
MAX_WINDOW = timedelta(days=30)
FILTER_FIELDS = {"model": "model", "provider": "provider", "user": "user_id", "prompt": "prompt_id"}
GROUP_FIELDS = ("user", "model", "property")
PERCENTILE_METRICS = {AlertMetric.LATENCY_P50, AlertMetric.LATENCY_P95, AlertMetric.LATENCY_P99, AlertMetric.TTFT}


def tick_seconds() -> float:
    return float(getattr(settings, "ALERTS_TICK_SECONDS", 30.0))


@dataclass
class Reading:
    group_key: str
    value: float
    count: int


def _value(metric: str, row: dict[str, Any]) -> float | None:
    if metric == AlertMetric.ERROR_RATE:
        return row["error_rate"] * 100
    if metric == AlertMetric.REQUEST_COUNT:
        return float(row["count"])
    return None if row.get(metric) is None else float(row[metric])


def rule_selection(rule: AlertRule, now: datetime) -> Selection:
    """The logs of the rule's window (up to and including `now`), read from the rollups when they can."""
    filters: dict[str, Any] = {}
    properties = {}
    if rule.filter_field == "property":
        properties[rule.filter_property] = rule.filter_value
    elif rule.filter_field:
        filters[FILTER_FIELDS[rule.filter_field]] = rule.filter_value
    return Selection(rule.org, now - timedelta(seconds=rule.window_seconds), now + timedelta(microseconds=1),
                     filters, properties)


def measure(rule: AlertRule, now: datetime | None = None) -> list[Reading]:
    """The rule's metric over its window, per group ("" when the rule does not group)."""
    now = now or timezone.now()
    selection = rule_selection(rule, now)
    wants_percentile = rule.metric in PERCENTILE_METRICS
    wanted = (rule.metric,) if wants_percentile else ()
    if not rule.group_by:
        # The evaluator runs in the background: no time budget on the raw rows.
        row = metrics.summary(selection, percentiles=wanted, limit_seconds=None)
        value = _value(rule.metric, row)
        return [Reading("", value, row["count"])] if value is not None else []
    spec = f"property:{rule.group_property}" if rule.group_by == "property" else rule.group_by
    rows = metrics.grouped(selection, spec, exclude_empty=True, with_percentiles=wants_percentile,
                           percentiles=wanted or None, limit_seconds=None)
    readings = []
    for row in rows:
        value = _value(rule.metric, row)
        if value is not None:
            readings.append(Reading(str(row["key"]), value, row["count"]))
    return readings


def crosses(rule: AlertRule, reading: Reading) -> bool:
    if reading.count < rule.min_requests:
        return False
    if rule.comparison == AlertComparison.BELOW:
        return reading.value < rule.threshold
    return reading.value > rule.threshold


# --- The state machine -------------------------------------------------------------------------

def evaluate_rule(rule: AlertRule, now: datetime | None = None) -> tuple[list[AlertEvent], list[AlertEvent]]:
    """Open an event for each newly offending group, resolve the open ones that recovered.

    Returns (fired, resolved); notifications go out after the transaction commits.
    """
    now = now or timezone.now()
    readings = {reading.group_key: reading for reading in measure(rule, now)}
    fired, resolved = [], []
    with transaction.atomic():
        open_events = {event.group_key: event for event in
                       AlertEvent.objects.select_for_update().filter(rule=rule, resolved_at__isnull=True)}
        for group, event in open_events.items():
            reading = readings.get(group)
            if reading is None or not crosses(rule, reading):
                event.resolved_at = now
                event.resolved_value = reading.value if reading else None
                event.save(update_fields=["resolved_at", "resolved_value"])
                resolved.append(event)
        for group, reading in readings.items():
            if group in open_events or not crosses(rule, reading):
                continue
            if rule.cooldown_seconds and AlertEvent.objects.filter(
                    rule=rule, group_key=group, fired_at__gt=now - timedelta(seconds=rule.cooldown_seconds)).exists():
                continue
            try:
                with transaction.atomic():
                    event = AlertEvent.objects.create(org_id=rule.org_id, rule=rule, group_key=group[:255],
                                                      value=reading.value, request_count=reading.count,
                                                      threshold=rule.threshold, fired_at=now)
            except IntegrityError:
                continue  # another evaluator opened it first: fire once
            fired.append(event)
        AlertRule.objects.filter(pk=rule.pk).update(last_evaluated_at=now)
        for event in fired:
            transaction.on_commit(lambda event=event: notify(event, "fired"))
        for event in resolved:
            transaction.on_commit(lambda event=event: notify(event, "resolved"))
    return fired, resolved


def claim(rule_id: int, now: datetime) -> bool:
    """True for exactly one evaluator per rule and tick."""
    return AlertRule.objects.filter(pk=rule_id, next_evaluation_at__lte=now).update(
        next_evaluation_at=now + timedelta(seconds=tick_seconds())) == 1


def evaluate_due(now: datetime | None = None) -> int:
    now = now or timezone.now()
    evaluated = 0
    for rule_id in list(AlertRule.objects.filter(next_evaluation_at__lte=now).values_list("pk", flat=True)):
        if not claim(rule_id, now):
            continue
        rule = AlertRule.objects.select_related("org").get(pk=rule_id)
        try:
            evaluate_rule(rule, now)
        except Exception:
            log.exception("alert rule %s failed to evaluate", rule_id)
        evaluated += 1
    return evaluated


def tick() -> tuple[int, int]:
    """One pass of the worker: (rules evaluated, webhook attempts sent)."""
    return evaluate_due(), webhooks.deliver_due()


# --- Notifications -----------------------------------------------------------------------------

def describe(rule: AlertRule) -> str:
    window = rule.window_seconds
    if window % 86400 == 0:
        span = f"{window // 86400} day(s)"
    elif window % 3600 == 0:
        span = f"{window // 3600} hour(s)"
    else:
        span = f"{window // 60} minute(s)"
    text = f"{AlertMetric(rule.metric).label} {rule.comparison} {rule.threshold:g} over {span}"
    if rule.min_requests:
        text += f" with at least {rule.min_requests} requests"
    if rule.filter_field:
        target = f"property {rule.filter_property}" if rule.filter_field == "property" else rule.filter_field
        text += f" for {target} {rule.filter_value}"
    if rule.group_by:
        text += f", per {rule.group_property if rule.group_by == 'property' else rule.group_by}"
    return text


def payload(event: AlertEvent, state: str, test: bool = False) -> dict[str, Any]:
    rule = event.rule
    return {
        "event": f"alert.{state}",
        "test": test,
        "alert_id": event.pk,
        "rule": {"id": rule.pk, "name": rule.name, "metric": rule.metric, "comparison": rule.comparison,
                 "threshold": rule.threshold, "window_seconds": rule.window_seconds, "description": describe(rule)},
        "org": rule.org.slug,
        "group": event.group_key,
        "value": event.resolved_value if state == "resolved" else event.value,
        "request_count": event.request_count,
        "fired_at": event.fired_at.isoformat(),
        "resolved_at": event.resolved_at.isoformat() if event.resolved_at else None,
        "open_alerts": open_count(rule.org_id),
    }


def open_count(org_id: int) -> int:
    """The org's open (unresolved) alerts: the badge in the org navigation and the live messages."""
    return AlertEvent.objects.filter(org_id=org_id, resolved_at__isnull=True).count()


def _headline(data: dict[str, Any]) -> str:
    group = f" [{data['group']}]" if data["group"] else ""
    value = "n/a" if data["value"] is None else f"{data['value']:.4g}"
    verb = "FIRING" if data["event"] == "alert.fired" else "resolved"
    prefix = "[test] " if data["test"] else ""
    return f"{prefix}{verb}: {data['rule']['name']}{group} — value {value} ({data['rule']['description']})"


def notify(event: AlertEvent, state: str, *, test: bool = False) -> None:
    """Every channel of the rule: the dashboard (always), email, Slack and webhooks (unless muted)."""
    rule = event.rule
    data = payload(event, state, test)
    live.broadcast_alert(rule.org_id, data)
    if rule.muted and not test:
        return
    headline = _headline(data)
    recipients = [user.email for user in rule.email_recipients.filter(memberships__org_id=rule.org_id)]
    if recipients:
        try:
            send_mail(headline[:200], f"{headline}\n\nOrganization: {rule.org.name}\n", None, recipients)
        except Exception:
            log.exception("alert email for rule %s failed", rule.pk)
    if rule.slack_url:
        webhooks.enqueue(rule.org_id, rule.slack_url, data["event"], {"text": headline},
                         fmt=WebhookDelivery.Format.SLACK)
    for hook in rule.webhooks.filter(enabled=True, org_id=rule.org_id):
        webhooks.enqueue(rule.org_id, hook.url, data["event"], data, webhook=hook)


def send_test(rule: AlertRule) -> AlertEvent:
    """A test notification on every channel; nothing is stored in the history."""
    event = AlertEvent(org_id=rule.org_id, rule=rule, group_key="", value=rule.threshold, request_count=0,
                       threshold=rule.threshold, fired_at=timezone.now())
    notify(event, "fired", test=True)
    return event


# --- Embedded default: the in-process log writer evaluates too --------------------------------

_embedded_lock = threading.Lock()
_embedded_last = 0.0


def embedded_listener(rows: list[RequestLog]) -> None:
    """At most once per ALERTS_EMBEDDED_SECONDS, run a tick in a background thread (never in the writer)."""
    global _embedded_last
    interval = float(getattr(settings, "ALERTS_EMBEDDED_SECONDS", 10.0))
    now = time.monotonic()
    if now - _embedded_last < interval or not _embedded_lock.acquire(blocking=False):
        return
    _embedded_last = now

    def run() -> None:
        from django.db import connection

        try:
            tick()
        except Exception:
            log.exception("embedded alert tick failed")
        finally:
            connection.close()  # this thread's own connection; it would otherwise outlive the thread
            _embedded_lock.release()

    threading.Thread(target=run, name="alerts-embedded", daemon=True).start()


def register_listeners() -> None:
    """Called at app start: request webhooks always; the evaluator too when no worker is expected."""
    if webhooks.enqueue_request_webhooks not in live.listeners:
        live.listeners.append(webhooks.enqueue_request_webhooks)
    if not settings.REDIS_URL and getattr(settings, "ALERTS_EMBEDDED", not settings.TESTING) and embedded_listener not in live.listeners:
        live.listeners.append(embedded_listener)


# --- Changes from the pages: one transaction each, one audit event each -----------------------

RULE_AUDIT_FIELDS = ("name", "metric", "comparison", "threshold", "window_seconds", "min_requests", "filter_field",
                     "filter_property", "filter_value", "group_by", "group_property", "cooldown_seconds", "slack_url")


def save_rule(form, org, *, request=None) -> AlertRule:
    """Create or update a rule from a valid AlertRuleForm."""
    from orgs import audit

    creating = form.instance.pk is None
    with transaction.atomic():
        rule = form.save(commit=False)
        rule.org = org
        if creating:
            rule.next_evaluation_at = timezone.now()
        rule.save()
        form.save_m2m()
        changes = {name: getattr(rule, name) for name in RULE_AUDIT_FIELDS if creating or name in form.changed_data}
        changes["email_recipients"] = sorted(user.email for user in rule.email_recipients.all())
        changes["webhooks"] = sorted(hook.url for hook in rule.webhooks.all())
        audit.record("alert_rule.create" if creating else "alert_rule.update", request=request, org=org,
                     target=rule, changes=changes)
    return rule


def set_muted(rule: AlertRule, muted: bool, *, request=None) -> None:
    from orgs import audit

    with transaction.atomic():
        AlertRule.objects.filter(pk=rule.pk).update(muted=muted)
        rule.muted = muted
        audit.record("alert_rule.mute" if muted else "alert_rule.unmute", request=request, org=rule.org,
                     target=rule, changes={"muted": muted})


def delete_rule(rule: AlertRule, *, request=None) -> None:
    from orgs import audit

    with transaction.atomic():
        audit.record("alert_rule.delete", request=request, org=rule.org, target=rule, changes={"name": rule.name})
        rule.delete()


def request_test_notification(rule: AlertRule, *, request=None) -> None:
    """A test notification on every channel of the rule (even when muted)."""
    from orgs import audit

    with transaction.atomic():
        audit.record("alert_rule.test", request=request, org=rule.org, target=rule)
        transaction.on_commit(lambda: send_test(rule))


def create_webhook(org, *, kind: str, url: str, sample_rate: float = 1.0, property_filters=None,
                   include_bodies: bool = False, request=None):
    from orgs import audit

    from .models import Webhook

    with transaction.atomic():
        hook = Webhook.objects.create(org=org, kind=kind, url=url, secret=webhooks.new_secret(),
                                      sample_rate=sample_rate, property_filters=property_filters or {},
                                      include_bodies=include_bodies)
        audit.record("webhook.create", request=request, org=org, target=hook,
                     changes={"kind": kind, "url": url, "sample_rate": sample_rate,
                              "property_filters": property_filters or {}, "include_bodies": include_bodies})
    return hook


def delete_webhook(hook, *, request=None) -> None:
    from orgs import audit

    with transaction.atomic():
        audit.record("webhook.delete", request=request, org=hook.org, target=hook, changes={"url": hook.url})
        hook.delete()
