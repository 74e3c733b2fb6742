"""Who gets into the operators' console: staff with a verified OTP device; view-only staff change nothing."""

from decimal import Decimal

from analytics.models import AlertEvent, AlertRule, ModelPrice, Webhook, WebhookDelivery
from orgs.models import AuditEvent, Organization, User
from prompts.models import Prompt, PromptEnvironment, PromptVersion
from tests.analytics.helpers import create_log
from tests.base import PASSWORD

from .helpers import AdminTestCase


class ConsoleFixtures(AdminTestCase):
    def setUp(self):
        super().setUp()
        self.key, _raw = self.make_key()
        self.log = create_log(org=self.org, provider="openai", model="gpt-4o", status=200,
                                             request_body='{"messages": []}', response_body="plain text")
        self.price = ModelPrice.objects.create(model="house-model", input_per_mtok=Decimal("1"),
                                               output_per_mtok=Decimal("2"))
        self.prompt = Prompt.objects.create(org=self.org, slug="greeting", name="Greeting")
        self.version = PromptVersion.objects.create(org=self.org, prompt=self.prompt, version=1,
                                                    messages=[{"role": "user", "content": "hi"}], template_hash="x")
        self.environment = PromptEnvironment.objects.create(org=self.org, prompt=self.prompt, name="production",
                                                            version=self.version)
        self.rule = AlertRule.objects.create(org=self.org, name="errors", metric="error_rate", threshold=5)
        self.event = AlertEvent.objects.create(org=self.org, rule=self.rule, value=9, threshold=5)
        self.webhook = Webhook.objects.create(org=self.org, url="https://hooks.example.org/x", secret="s3cret")
        self.delivery = WebhookDelivery.objects.create(org=self.org, webhook=self.webhook, event_type="alert.fired",
                                                       url=self.webhook.url, body="{}")

    def pages(self) -> list[str]:
        return [
            "/admin/", "/admin/orgs/organization/", f"/admin/orgs/organization/{self.org.pk}/change/",
            f"/admin/analytics/webhook/{self.webhook.pk}/change/",
            "/admin/orgs/apikey/", "/admin/orgs/auditevent/",
            "/admin/analytics/requestlog/", f"/admin/analytics/requestlog/{self.log.pk}/change/",
            "/admin/analytics/requestlog/figures/", "/admin/analytics/requestlog/figures/?window=30d",
            "/admin/analytics/modelprice/", "/admin/analytics/modelprice/unpriced/",
            f"/admin/analytics/modelprice/{self.price.pk}/change/",
            "/admin/prompts/prompt/", f"/admin/prompts/prompt/{self.prompt.pk}/change/",
            "/admin/prompts/promptversion/", f"/admin/prompts/promptversion/{self.version.pk}/change/",
            "/admin/prompts/promptenvironment/",
            "/admin/analytics/alertrule/", f"/admin/analytics/alertrule/{self.rule.pk}/change/",
            "/admin/analytics/alertevent/", f"/admin/analytics/alertevent/{self.event.pk}/change/",
            "/admin/analytics/webhookdelivery/", f"/admin/analytics/webhookdelivery/{self.delivery.pk}/change/",
        ]


class StaffWithDeviceTests(ConsoleFixtures):
    def test_every_console_page_loads(self):
        for url in self.pages():
            self.assertEqual(self.client.get(url).status_code, 200, url)

    def test_the_add_organization_page_loads_and_webhook_secrets_stay_hidden(self):
        self.assertEqual(self.client.get("/admin/orgs/organization/add/").status_code, 200)
        page = self.client.get(f"/admin/analytics/webhook/{self.webhook.pk}/change/")
        self.assertContains(page, "…cret")
        self.assertNotContains(page, "s3cret")

    def test_index_links_the_operator_pages(self):
        response = self.client.get("/admin/")
        self.assertContains(response, 'href="/admin/analytics/requestlog/figures/"')
        self.assertContains(response, 'href="/admin/analytics/modelprice/unpriced/"')

    def test_history_is_read_only(self):
        for url in [f"/admin/analytics/alertevent/{self.event.pk}/delete/",
                    f"/admin/analytics/webhookdelivery/{self.delivery.pk}/delete/",
                    f"/admin/prompts/promptversion/{self.version.pk}/delete/",
                    f"/admin/analytics/requestlog/{self.log.pk}/delete/"]:
            self.assertEqual(self.client.post(url, {"post": "yes"}).status_code, 403, url)
        self.assertEqual(self.client.post(f"/admin/analytics/alertevent/{self.event.pk}/change/",
                                          {"value": 1}).status_code, 403)
        self.assertTrue(AlertEvent.objects.filter(pk=self.event.pk, value=9).exists())
        self.assertTrue(PromptVersion.objects.filter(pk=self.version.pk).exists())


class StaffWithoutDeviceTests(ConsoleFixtures):
    def test_every_console_page_sends_to_the_login(self):
        no_device = User.objects.create_superuser("nodevice@example.org", PASSWORD)
        self.client.logout()
        self.client.force_login(no_device)
        for url in self.pages():
            response = self.client.get(url)
            self.assertEqual(response.status_code, 302, url)
            self.assertTrue(response["Location"].startswith("/admin/login/"), url)

    def test_a_member_with_a_device_but_no_staff_flag_gets_nothing(self):
        self.client.logout()
        self.login_with_totp(self.alice, self.give_totp(self.alice))
        response = self.client.get("/admin/orgs/organization/")
        self.assertEqual(response.status_code, 302)
        self.assertTrue(response["Location"].startswith("/admin/login/"))


class ViewOnlyStaffTests(ConsoleFixtures):
    def setUp(self):
        super().setUp()
        self.viewer = self.view_only_client()

    def test_sees_every_page(self):
        for url in self.pages():
            self.assertEqual(self.viewer.get(url).status_code, 200, url)

    def test_can_change_nothing(self):
        attempts = [
            (f"/admin/orgs/organization/{self.org.pk}/change/", {"name": "Hijacked", "slug": "alice-org"}),
            ("/admin/orgs/organization/add/", {"name": "New", "slug": "new"}),
            (f"/admin/orgs/organization/{self.org.pk}/delete/", {"post": "yes"}),
            (f"/admin/analytics/modelprice/{self.price.pk}/change/",
             {"model": "house-model", "input_per_mtok": "9", "output_per_mtok": "9"}),
            ("/admin/analytics/modelprice/add/", {"model": "m", "input_per_mtok": "1", "output_per_mtok": "1"}),
            (f"/admin/analytics/alertrule/{self.rule.pk}/change/", {"name": "renamed"}),
            (f"/admin/prompts/prompt/{self.prompt.pk}/change/", {"name": "renamed"}),
        ]
        for url, data in attempts:
            self.assertEqual(self.viewer.post(url, data).status_code, 403, url)
        self.org.refresh_from_db()
        self.price.refresh_from_db()
        self.assertEqual((self.org.name, self.price.input_per_mtok), ("Alice Org", Decimal("1")))
        self.assertEqual(Organization.objects.count(), 2)

    def test_offers_and_runs_no_action(self):
        response = self.viewer.get("/admin/orgs/organization/")
        self.assertNotContains(response, 'value="suspend"')
        for url, action, pk in [("/admin/orgs/organization/", "suspend", self.org.pk),
                                ("/admin/orgs/organization/", "reactivate", self.org.pk),
                                ("/admin/orgs/apikey/", "revoke_keys", self.key.pk),
                                ("/admin/analytics/alertrule/", "mute", self.rule.pk)]:
            self.viewer.post(url, {"action": action, "_selected_action": [pk], "apply": "1", "reason": "x"})
        self.org.refresh_from_db()
        self.key.refresh_from_db()
        self.rule.refresh_from_db()
        self.assertEqual((self.org.suspended_at, self.key.revoked_at, self.rule.muted), (None, None, False))
        self.assertFalse(AuditEvent.objects.filter(action__in=["admin.action", "org.suspend", "apikey.revoke",
                                                                "alert_rule.mute"]).exists())

    def test_the_org_page_has_no_suspend_button(self):
        response = self.viewer.get(f"/admin/orgs/organization/{self.org.pk}/change/")
        self.assertNotContains(response, 'name="action" value="suspend"')
        self.assertContains(self.client.get(f"/admin/orgs/organization/{self.org.pk}/change/"),
                            'name="action" value="suspend"')
