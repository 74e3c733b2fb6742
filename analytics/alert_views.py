"""Alerts pages: rules (create, edit, mute, test, delete), history, webhooks and their delivery log.

Views stay thin: forms validate, `analytics.alerts` changes state (with an audit
event each). Rules and webhooks are reached only through the org of the
membership, so another org's ids are a 404.
"""

from __future__ import annotations

import json
import re

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from orgs.access import org_member_required
from orgs.models import Role, User

from . import alerts
from .models import AlertEvent, AlertMetric, AlertRule, Webhook, WebhookDelivery
from .webhooks import validate_webhook_url

WINDOW_RE = re.compile(r"^\s*(\d+)\s*(m|min|minutes?|h|hours?|d|days?)\s*$", re.IGNORECASE)
UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}


def parse_window(text: str) -> int:
    match = WINDOW_RE.match(text or "")
    if not match:
        raise forms.ValidationError("Write the window as a number and a unit: 5m, 15m, 1h, 1d, 30d.")
    seconds = int(match.group(1)) * UNIT_SECONDS[match.group(2)[0].lower()]
    if not alerts.MIN_WINDOW.total_seconds() <= seconds <= alerts.MAX_WINDOW.total_seconds():
        raise forms.ValidationError("The window must be between 1 minute and 30 days.")
    return seconds


def format_window(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds // 60}m"


class AlertRuleForm(forms.ModelForm):
    window = forms.CharField(initial="5m", help_text="From 1m to 30d, e.g. 5m, 15m, 1h, 1d.")
    filter_field = forms.ChoiceField(required=False, choices=[("", "All requests"), ("model", "Model"),
                                                             ("provider", "Provider"), ("user", "User"),
                                                             ("prompt", "Prompt id"), ("property", "Property")])
    group_by = forms.ChoiceField(required=False, choices=[("", "No grouping"), ("user", "Per user"),
                                                         ("model", "Per model"), ("property", "Per property value")])
    slack_url = forms.URLField(required=False, max_length=2000, assume_scheme="https",
                               label="Slack incoming-webhook URL", validators=[validate_webhook_url])

    class Meta:
        model = AlertRule
        fields = ["name", "metric", "comparison", "threshold", "window", "min_requests", "filter_field",
                  "filter_property", "filter_value", "group_by", "group_property", "cooldown_seconds",
                  "email_recipients", "slack_url", "webhooks"]
        widgets = {"email_recipients": forms.CheckboxSelectMultiple, "webhooks": forms.CheckboxSelectMultiple}
        labels = {"min_requests": "Minimum requests"}

    def __init__(self, *args, org, **kwargs):
        super().__init__(*args, **kwargs)
        self.org = org
        if self.instance.pk:
            self.initial.setdefault("window", format_window(self.instance.window_seconds))
        self.fields["email_recipients"].queryset = User.objects.filter(memberships__org=org).order_by("email")
        self.fields["email_recipients"].label_from_instance = lambda user: user.email
        self.fields["webhooks"].queryset = Webhook.objects.filter(org=org, kind=Webhook.Kind.ALERTS)

    def clean_window(self) -> int:
        return parse_window(self.cleaned_data["window"])

    def clean(self):
        data = super().clean()
        metric, comparison, threshold = data.get("metric"), data.get("comparison"), data.get("threshold")
        if threshold is not None and metric:
            if threshold < 0 or (comparison == "below" and threshold == 0):
                self.add_error("threshold", "This threshold can never be crossed: metrics are never negative.")
            elif metric == AlertMetric.ERROR_RATE and (threshold > 100 or (comparison == "above" and threshold == 100)):
                self.add_error("threshold", "The error rate is a percentage: it can never be above 100%.")
        if data.get("min_requests") is not None and data["min_requests"] < 0:
            self.add_error("min_requests", "Must be 0 or more.")
        if data.get("cooldown_seconds") is not None and data["cooldown_seconds"] < 0:
            self.add_error("cooldown_seconds", "Must be 0 or more.")
        if data.get("filter_field"):
            if not data.get("filter_value"):
                self.add_error("filter_value", "Give the value to filter on.")
            if data["filter_field"] == "property" and not _property_name_ok(data.get("filter_property")):
                self.add_error("filter_property", "Name the property to filter on.")
        if data.get("group_by") == "property" and not _property_name_ok(data.get("group_property")):
            self.add_error("group_property", "Name the property to group by.")
        return data

    def _post_clean(self):
        super()._post_clean()
        if "window" in self.cleaned_data:
            self.instance.window_seconds = self.cleaned_data["window"]


def _property_name_ok(name: str | None) -> bool:
    return bool(name) and "__" not in name and len(name) <= 200


class WebhookForm(forms.Form):
    kind = forms.ChoiceField(choices=Webhook.Kind.choices)
    url = forms.URLField(max_length=2000, validators=[validate_webhook_url], assume_scheme="https")
    sample_rate = forms.FloatField(initial=1.0, min_value=0.0, max_value=1.0,
                                   help_text="Request webhooks: the share of requests sent (0 to 1).")
    property_filters = forms.CharField(required=False, help_text='Request webhooks: JSON, e.g. {"Env": "prod"}.')
    include_bodies = forms.BooleanField(required=False, help_text="Request webhooks: send the bodies too.")

    def clean_property_filters(self) -> dict:
        text = self.cleaned_data["property_filters"].strip()
        if not text:
            return {}
        try:
            value = json.loads(text)
        except ValueError:
            raise forms.ValidationError("Must be a JSON object of property names and values.")
        if not isinstance(value, dict) or not all(isinstance(v, (str, int, float)) for v in value.values()):
            raise forms.ValidationError("Must be a JSON object of property names and values.")
        return {str(k): str(v) for k, v in value.items()}


def _rule(org, rule_id: int) -> AlertRule:
    return get_object_or_404(AlertRule, org=org, pk=rule_id)


@org_member_required()
def alert_list(request: HttpRequest, org, membership) -> HttpResponse:
    rules = list(AlertRule.objects.filter(org=org))
    open_by_rule: dict[int, int] = {}
    for event in AlertEvent.objects.filter(org=org, resolved_at__isnull=True).only("rule_id"):
        open_by_rule[event.rule_id] = open_by_rule.get(event.rule_id, 0) + 1
    for rule in rules:
        rule.description = alerts.describe(rule)
        rule.open_count = open_by_rule.get(rule.pk, 0)
    open_events = AlertEvent.objects.filter(org=org, resolved_at__isnull=True).select_related("rule")[:100]
    return render(request, "analytics/alerts.html", {
        "org": org, "membership": membership, "rules": rules, "open_events": open_events,
        "can_edit": membership.has_role(Role.MEMBER)})


@org_member_required(Role.MEMBER)
def alert_rule_edit(request: HttpRequest, org, membership, rule_id: int | None = None) -> HttpResponse:
    rule = _rule(org, rule_id) if rule_id else AlertRule(org=org)
    form = AlertRuleForm(request.POST or None, instance=rule, org=org)
    if request.method == "POST" and form.is_valid():
        rule = alerts.save_rule(form, org, request=request)
        messages.success(request, f"Saved the rule “{rule.name}”.")
        return redirect("alert_list", slug=org.slug)
    return render(request, "analytics/alerts_rule_form.html",
                  {"org": org, "membership": membership, "form": form, "rule": rule if rule.pk else None})


@require_POST
@org_member_required(Role.MEMBER)
def alert_rule_mute(request: HttpRequest, org, membership, rule_id: int) -> HttpResponse:
    rule = _rule(org, rule_id)
    alerts.set_muted(rule, not rule.muted, request=request)
    messages.success(request, f"{'Muted' if rule.muted else 'Unmuted'} “{rule.name}”.")
    return redirect("alert_list", slug=org.slug)


@require_POST
@org_member_required(Role.MEMBER)
def alert_rule_test(request: HttpRequest, org, membership, rule_id: int) -> HttpResponse:
    rule = _rule(org, rule_id)
    alerts.request_test_notification(rule, request=request)
    messages.success(request, f"Sent a test notification for “{rule.name}” on every channel; "
                              "webhooks are delivered by the alerts worker within seconds.")
    return redirect("alert_list", slug=org.slug)


@require_POST
@org_member_required(Role.MEMBER)
def alert_rule_delete(request: HttpRequest, org, membership, rule_id: int) -> HttpResponse:
    rule = _rule(org, rule_id)
    alerts.delete_rule(rule, request=request)
    messages.success(request, f"Deleted “{rule.name}”.")
    return redirect("alert_list", slug=org.slug)


@org_member_required()
def alert_history(request: HttpRequest, org, membership) -> HttpResponse:
    events = AlertEvent.objects.filter(org=org).select_related("rule")
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    return render(request, "analytics/alerts_history.html", {"org": org, "membership": membership, "page": page})


@org_member_required()
def alert_open_count(request: HttpRequest, org, membership) -> JsonResponse:
    return JsonResponse({"open_alerts": alerts.open_count(org.pk)})


@org_member_required(Role.ADMIN)
def webhook_list(request: HttpRequest, org, membership) -> HttpResponse:
    form = WebhookForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        alerts.create_webhook(org, request=request, **form.cleaned_data)
        messages.success(request, "Added the webhook. Verify its Helicone-Signature with the secret shown.")
        return redirect("webhook_list", slug=org.slug)
    hooks = Webhook.objects.filter(org=org)
    return render(request, "analytics/alerts_webhooks.html",
                  {"org": org, "membership": membership, "form": form, "hooks": hooks})


@require_POST
@org_member_required(Role.ADMIN)
def webhook_delete(request: HttpRequest, org, membership, webhook_id: int) -> HttpResponse:
    hook = get_object_or_404(Webhook, org=org, pk=webhook_id)
    alerts.delete_webhook(hook, request=request)
    messages.success(request, f"Deleted the webhook to {hook.url}.")
    return redirect("webhook_list", slug=org.slug)


@org_member_required()
def webhook_deliveries(request: HttpRequest, org, membership) -> HttpResponse:
    deliveries = WebhookDelivery.objects.filter(org=org).defer("body").order_by("-created_at", "-attempt")
    page = Paginator(deliveries, 50).get_page(request.GET.get("page"))
    return render(request, "analytics/alerts_deliveries.html", {"org": org, "membership": membership, "page": page})
