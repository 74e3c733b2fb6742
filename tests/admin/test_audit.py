"""Every change and action made in the console is an audit event, whichever app's admin made it."""

from datetime import datetime

from django.contrib import admin
from django.contrib.auth.models import Group

from analytics.models import AlertRule
from orgs.admin_site import AuditMixin
from orgs.models import AuditEvent
from prompts.models import Prompt
from tests.base import PASSWORD

from .helpers import AdminTestCase


class ConsoleAuditTests(AdminTestCase):
    def test_every_registered_admin_is_audited(self):
        self.assertTrue(admin.site._registry)
        for model, model_admin in admin.site._registry.items():
            self.assertIsInstance(model_admin, AuditMixin, model._meta.label)

    def test_a_change_in_another_apps_admin_is_audited_with_its_org(self):
        rule = AlertRule.objects.create(org=self.org, name="errors", metric="error_rate", threshold=5)
        page = self.client.get(f"/admin/analytics/alertrule/{rule.pk}/change/")
        data = {}
        for field in page.context["adminform"].form:  # the form as the page shows it
            value = field.value()
            if isinstance(value, datetime):
                data[field.html_name + "_0"], data[field.html_name + "_1"] = value.date(), value.time()
            elif value not in (None, []):
                data[field.html_name] = value
        data["name"] = "error spike"
        response = self.client.post(f"/admin/analytics/alertrule/{rule.pk}/change/", data)
        self.assertEqual(response.status_code, 302, response.context and response.context["adminform"].form.errors)
        event = self.assert_audited("admin.change", org=self.org, target_id=str(rule.pk))
        self.assertEqual((event.changes["model"], event.changes["fields"]), ("analytics.alertrule", ["Name"]))

    def test_third_party_admins_and_confirmed_deletions(self):
        self.assertEqual(self.client.post("/admin/auth/group/add/", {"name": "support"}).status_code, 302)
        group = Group.objects.get(name="support")
        self.assertEqual(self.assert_audited("admin.add", target_id=str(group.pk)).changes["model"], "auth.group")

        prompt = Prompt.objects.create(org=self.org, slug="p", name="P")
        confirm = self.client.post("/admin/prompts/prompt/", {"action": "delete_selected",
                                                              "_selected_action": [prompt.pk]})
        self.assertEqual(confirm.status_code, 200)
        self.assertFalse(AuditEvent.objects.filter(action__in=["admin.action", "admin.delete"]).exists())
        self.client.post("/admin/prompts/prompt/", {"action": "delete_selected", "_selected_action": [prompt.pk],
                                                    "post": "yes"})
        self.assertFalse(Prompt.objects.filter(pk=prompt.pk).exists())
        self.assertEqual(self.assert_audited("admin.delete", org=self.org).changes["model"], "prompts.prompt")
        self.assertEqual(self.assert_audited("admin.action").changes["action"], "delete_selected")

    def test_an_inline_change_is_named_in_the_parents_event(self):
        membership = self.bob_membership
        response = self.client.post(f"/admin/orgs/organization/{self.org.pk}/change/", {
            "name": self.org.name, "slug": self.org.slug, "rate_limit_policy": "",
            "monthly_request_limit": "", "retention_days": "", "max_api_keys": "",
            "memberships-TOTAL_FORMS": "1", "memberships-INITIAL_FORMS": "1",
            "memberships-0-id": membership.pk, "memberships-0-org": self.org.pk, "memberships-0-user": self.bob.pk,
            "memberships-0-role": "admin",
            "api_keys-TOTAL_FORMS": "0", "api_keys-INITIAL_FORMS": "0",
        })
        self.assertEqual(response.status_code, 302)
        membership.refresh_from_db()
        self.assertEqual(membership.role, "admin")
        event = self.assert_audited("admin.change", org=self.org)
        self.assertEqual(event.changes["inlines"][0]["changed"], "membership")
        self.assertEqual(event.changes["inlines"][0]["fields"], ["Role"])

    def test_the_admins_own_password_change_and_logout_are_audited(self):
        response = self.client.post("/admin/password_change/", {
            "old_password": PASSWORD, "new_password1": "another long passphrase 7",
            "new_password2": "another long passphrase 7"})
        self.assertEqual(response.status_code, 302)
        event = self.assert_audited("user.password_change", actor_user=self.operator)
        self.assertEqual(event.changes, {"via": "admin"})
        self.assertNotIn("another long passphrase", repr(list(AuditEvent.objects.values_list("changes", flat=True))))
        self.client.post("/admin/logout/")
        self.assertEqual(self.assert_audited("user.logout", actor_user=self.operator).changes, {"via": "admin"})
