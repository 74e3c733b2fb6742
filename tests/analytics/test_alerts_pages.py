"""The alerts pages: create, edit, mute, test and delete a rule, history, webhooks and their delivery log;
form errors for bad input; an audit event per change; outsiders get 404."""

from django.core import mail
from django.test import override_settings

from analytics.models import AlertEvent, AlertRule, Webhook, WebhookDelivery
from orgs.models import AuditEvent, Role
from tests.base import BaseTestCase

RULE = {"name": "Errors", "metric": "error_rate", "comparison": "above", "threshold": "10", "window": "5m",
        "min_requests": "20", "filter_field": "", "filter_property": "", "filter_value": "", "group_by": "",
        "group_property": "", "cooldown_seconds": "0", "slack_url": ""}


@override_settings(GATEWAY_ALLOW_PRIVATE_TARGETS=False, GATEWAY_ALLOWED_TARGET_HOSTS=[])
class AlertPagesTests(BaseTestCase):
    def setUp(self):
        self.client.force_login(self.alice)

    def url(self, name="", org="alice-org"):
        return f"/o/{org}/alerts/{name}"

    def test_the_three_example_rules_are_created_as_written(self):
        examples = [
            ({}, (10.0, 300, 20, "", "")),
            ({"name": "Spend", "metric": "cost_usd", "threshold": "50", "window": "1d", "min_requests": "0"},
             (50.0, 86400, 0, "", "")),
            ({"name": "Slow 4o", "metric": "latency_p95_ms", "threshold": "3000", "window": "15m",
              "min_requests": "0", "filter_field": "model", "filter_value": "gpt-4o"}, (3000.0, 900, 0, "model", "gpt-4o")),
        ]
        for extra, expected in examples:
            response = self.client.post(self.url("new/"), {**RULE, **extra})
            self.assertRedirects(response, self.url(), fetch_redirect_response=False)
            rule = AlertRule.objects.get(name={**RULE, **extra}["name"])
            self.assertEqual((rule.threshold, rule.window_seconds, rule.min_requests, rule.filter_field,
                              rule.filter_value), expected)
            self.assertEqual(rule.org, self.org)
        self.assertEqual(AuditEvent.objects.filter(org=self.org, action="alert_rule.create").count(), 3)
        page = self.client.get(self.url())
        self.assertContains(page, "Error rate (%) above 10 over 5 minute(s) with at least 20 requests")
        self.assertContains(page, "Latency P95 (ms) above 3000 over 15 minute(s) for model gpt-4o")

    def test_bad_input_is_a_clear_form_error(self):
        cases = [
            ({"threshold": "150"}, "can never be above 100%"),
            ({"threshold": "-1", "metric": "cost_usd"}, "can never be crossed"),
            ({"metric": "happiness"}, "Select a valid choice"),
            ({"window": "45d"}, "between 1 minute and 30 days"),
            ({"window": "soon"}, "number and a unit"),
            ({"slack_url": "http://127.0.0.1:9/hook"}, "private, loopback or link-local"),
            ({"group_by": "property"}, "Name the property to group by"),
        ]
        for extra, message in cases:
            response = self.client.post(self.url("new/"), {**RULE, **extra})
            self.assertEqual(response.status_code, 200, extra)
            self.assertContains(response, message)
        self.assertFalse(AlertRule.objects.exists())
        with override_settings(GATEWAY_ALLOWED_TARGET_HOSTS=["127.0.0.1"]):
            response = self.client.post(self.url("new/"), {**RULE, "slack_url": "http://127.0.0.1:9/hook"})
            self.assertEqual(response.status_code, 302)

    def test_edit_mute_test_and_delete_are_audited(self):
        rule = AlertRule.objects.create(org=self.org, name="Errors", metric="error_rate", threshold=10)
        rule.email_recipients.add(self.bob)
        response = self.client.post(self.url(f"{rule.pk}/"), {**RULE, "threshold": "25",
                                                              "email_recipients": [self.bob.pk]})
        self.assertEqual(response.status_code, 302)
        rule.refresh_from_db()
        self.assertEqual(rule.threshold, 25)
        update = AuditEvent.objects.get(action="alert_rule.update")
        self.assertEqual(update.changes["threshold"], 25.0)

        self.client.post(self.url(f"{rule.pk}/mute/"))
        rule.refresh_from_db()
        self.assertTrue(rule.muted)
        with self.captureOnCommitCallbacks(execute=True):
            self.client.post(self.url(f"{rule.pk}/test/"))
        self.assertEqual(len(mail.outbox), 1)  # a test goes out even while muted
        self.assertIn("[test]", mail.outbox[0].subject)
        self.assertFalse(AlertEvent.objects.exists())
        self.client.post(self.url(f"{rule.pk}/delete/"))
        self.assertFalse(AlertRule.objects.exists())
        self.assertEqual(
            list(AuditEvent.objects.filter(org=self.org, action__startswith="alert_rule.").order_by("id")
                 .values_list("action", flat=True)),
            ["alert_rule.update", "alert_rule.mute", "alert_rule.test", "alert_rule.delete"])

    def test_email_recipients_and_webhooks_are_limited_to_the_org(self):
        foreign_hook = Webhook.objects.create(org=self.other_org, url="https://example.com/h", secret="x")
        response = self.client.post(self.url("new/"), {**RULE, "email_recipients": [self.charlie.pk]})
        self.assertContains(response, "Select a valid choice")
        response = self.client.post(self.url("new/"), {**RULE, "webhooks": [foreign_hook.pk]})
        self.assertContains(response, "Select a valid choice")

    def test_history_and_delivery_log(self):
        rule = AlertRule.objects.create(org=self.org, name="Errors", metric="error_rate", threshold=10)
        AlertEvent.objects.create(org=self.org, rule=rule, value=42.5, threshold=10, request_count=30)
        WebhookDelivery.objects.create(org=self.org, url="https://example.com/hook", event_type="alert.fired",
                                       body="{}", status="failed", response_status=503, error="HTTP 503: down")
        self.assertContains(self.client.get(self.url("history/")), "42.500")
        self.assertContains(self.client.get(self.url("deliveries/")), "HTTP 503: down")
        self.assertEqual(self.client.get(self.url("open.json")).json(), {"open_alerts": 1})

    def test_webhooks_are_created_with_a_secret_and_validated(self):
        response = self.client.post(self.url("webhooks/"), {"kind": "requests", "url": "http://10.0.0.8/in",
                                                            "sample_rate": "1"})
        self.assertContains(response, "private, loopback or link-local")
        response = self.client.post(self.url("webhooks/"), {"kind": "requests", "url": "https://93.184.215.14/in",
                                                            "sample_rate": "0.5",
                                                            "property_filters": '{"Env": "prod"}'})
        self.assertEqual(response.status_code, 302)
        hook = Webhook.objects.get()
        self.assertTrue(hook.secret.startswith("whsec_"))
        self.assertEqual((hook.sample_rate, hook.property_filters), (0.5, {"Env": "prod"}))
        self.assertContains(self.client.get(self.url("webhooks/")), hook.secret)
        self.client.post(self.url(f"webhooks/{hook.pk}/delete/"))
        self.assertFalse(Webhook.objects.exists())
        self.assertEqual(list(AuditEvent.objects.filter(action__startswith="webhook.").values_list("action", flat=True)
                              .order_by("id")), ["webhook.create", "webhook.delete"])

    def test_outsiders_get_404_and_viewers_cannot_change_rules(self):
        rule = AlertRule.objects.create(org=self.org, name="Errors", metric="error_rate", threshold=10)
        self.client.force_login(self.charlie)
        for path in ("", "new/", f"{rule.pk}/", "history/", "deliveries/", "webhooks/", "open.json"):
            self.assertEqual(self.client.get(self.url(path)).status_code, 404, path)
        for path in (f"{rule.pk}/mute/", f"{rule.pk}/test/", f"{rule.pk}/delete/"):
            self.assertEqual(self.client.post(self.url(path)).status_code, 404, path)
        # charlie's own org cannot reach alice's rule by id either
        self.assertEqual(self.client.get(self.url(f"{rule.pk}/", org="charlie-org")).status_code, 404)
        self.assertEqual(self.client.post(self.url(f"{rule.pk}/mute/", org="charlie-org")).status_code, 404)
        self.bob_membership.role = Role.VIEWER
        self.bob_membership.save(update_fields=["role"])
        self.client.force_login(self.bob)
        self.assertEqual(self.client.get(self.url()).status_code, 200)
        self.assertEqual(self.client.post(self.url(f"{rule.pk}/mute/")).status_code, 403)
        self.assertEqual(self.client.get(self.url("webhooks/")).status_code, 403)
        self.assertFalse(AlertRule.objects.get().muted)


class AlertPagesRenderTests(BaseTestCase):
    def test_pages_render_with_the_nav_badge(self):
        self.client.force_login(self.alice)
        rule = AlertRule.objects.create(org=self.org, name="Errors", metric="error_rate", threshold=10)
        for path in ("", "new/", f"{rule.pk}/", "history/", "deliveries/", "webhooks/"):
            response = self.client.get(f"/o/alice-org/alerts/{path}")
            self.assertContains(response, 'id="alerts-badge"', msg_prefix=path)
        # The count is rendered with the page (no open alert: the badge is hidden); the socket updates it.
        self.assertContains(self.client.get("/o/alice-org/"), '<span id="alerts-badge" class="badge danger" hidden>')


class AlertAdminTests(BaseTestCase):
    def test_operators_see_rules_history_and_deliveries_and_can_mute(self):
        self.login_verified_staff()
        rule = AlertRule.objects.create(org=self.org, name="Errors", metric="error_rate", threshold=10)
        AlertEvent.objects.create(org=self.org, rule=rule, value=42.5, threshold=10)
        WebhookDelivery.objects.create(org=self.org, url="https://example.com/h", event_type="alert.fired", body="{}")
        for model in ("alertrule", "alertevent", "webhook", "webhookdelivery"):
            self.assertEqual(self.client.get(f"/admin/analytics/{model}/").status_code, 200, model)
        self.client.post("/admin/analytics/alertrule/", {"action": "mute", "_selected_action": [rule.pk]})
        rule.refresh_from_db()
        self.assertTrue(rule.muted)
        self.assertTrue(AuditEvent.objects.filter(action="alert_rule.mute", target_id=str(rule.pk)).exists())
