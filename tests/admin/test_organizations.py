"""Organizations in the console: suspension with a reason, plan limits, usage this month, members and keys."""

from datetime import timedelta

from django.utils import timezone

from analytics.models import RequestLog
from orgs.models import AuditEvent, Organization
from tests.analytics.helpers import create_log, store

from .helpers import AdminTestCase

LIST = "/admin/orgs/organization/"


def change_form(org, **overrides) -> dict:
    data = {"name": org.name, "slug": org.slug, "rate_limit_policy": org.rate_limit_policy,
            "monthly_request_limit": "", "retention_days": "", "max_api_keys": "",
            "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0",
            "api_keys-TOTAL_FORMS": "0", "api_keys-INITIAL_FORMS": "0"}
    data.update(overrides)
    return data


class SuspensionTests(AdminTestCase):
    def test_suspend_asks_for_a_reason_then_suspends_and_audits(self):
        response = self.client.post(LIST, {"action": "suspend", "_selected_action": [self.org.pk]})
        self.assertContains(response, "Reason")
        self.assertContains(response, "alice-org")
        self.org.refresh_from_db()
        self.assertIsNone(self.org.suspended_at)

        response = self.client.post(LIST, {"action": "suspend", "_selected_action": [self.org.pk], "apply": "1",
                                           "reason": "   "})
        self.assertContains(response, "This field is required", status_code=400)
        self.org.refresh_from_db()
        self.assertIsNone(self.org.suspended_at)
        self.assertFalse(AuditEvent.objects.filter(action__in=["org.suspend", "admin.action"]).exists())

        response = self.client.post(LIST, {"action": "suspend", "_selected_action": [self.org.pk], "apply": "1",
                                           "reason": "Unpaid invoice #42"})
        self.assertEqual(response.status_code, 302)
        self.org.refresh_from_db()
        self.assertTrue(self.org.is_suspended)
        self.assertEqual(self.org.suspended_reason, "Unpaid invoice #42")
        event = self.assert_audited("org.suspend", org=self.org, actor_user=self.operator)
        self.assertEqual(event.changes, {"reason": ["", "Unpaid invoice #42"], "via": "admin"})
        action = self.assert_audited("admin.action", actor_user=self.operator)
        self.assertEqual((action.changes["action"], action.changes["ids"]), ("suspend", [str(self.org.pk)]))
        self.other_org.refresh_from_db()
        self.assertFalse(self.other_org.is_suspended)

    def test_members_see_a_banner_naming_the_reason_until_reactivated(self):
        self.client.post(LIST, {"action": "suspend", "_selected_action": [self.org.pk], "apply": "1",
                                "reason": "Abuse report 7"})
        member = self.client_class(headers={"user-agent": "t"})
        member.force_login(self.bob)
        for url in ["/o/alice-org/", "/o/alice-org/settings/keys/", "/o/alice-org/requests/"]:
            response = member.get(url)
            self.assertContains(response, 'id="suspended-banner"', msg_prefix=url)
            self.assertContains(response, "Abuse report 7", msg_prefix=url)
        outsider = self.client_class()
        outsider.force_login(self.charlie)
        self.assertNotContains(outsider.get("/o/charlie-org/"), 'id="suspended-banner"')

        response = self.client.post(LIST, {"action": "reactivate", "_selected_action": [self.org.pk]})
        self.assertEqual(response.status_code, 302)
        self.org.refresh_from_db()
        self.assertEqual((self.org.suspended_at, self.org.suspended_reason), (None, ""))
        self.assertEqual(self.assert_audited("org.reactivate", org=self.org).changes["reason"], "Abuse report 7")
        self.assertNotContains(member.get("/o/alice-org/"), 'id="suspended-banner"')

    def test_change_page_buttons_post_to_the_actions(self):
        page = self.client.get(f"/admin/orgs/organization/{self.org.pk}/change/")
        self.assertContains(page, 'name="action" value="suspend"')
        self.assertContains(page, "Active.")
        self.client.post(LIST, {"action": "suspend", "_selected_action": [self.org.pk], "apply": "1",
                                "reason": "Chargeback"})
        page = self.client.get(f"/admin/orgs/organization/{self.org.pk}/change/")
        self.assertContains(page, 'name="action" value="reactivate"')
        self.assertContains(page, "Chargeback")
        self.assertContains(self.client.get(LIST + "?status=suspended"), "alice-org")
        self.assertNotContains(self.client.get(LIST + "?status=suspended"), "charlie-org")


class PlanLimitTests(AdminTestCase):
    def test_usage_this_month_is_shown_next_to_the_limit(self):
        now = timezone.now()
        month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        store(
            [RequestLog(org=self.org, provider="openai", status=200, created_at=now) for _ in range(3)]
            + [RequestLog(org=self.org, provider="openai", status=200, created_at=month_start - timedelta(seconds=1)),
               RequestLog(org=self.other_org, provider="openai", status=200, created_at=now)]
        )
        self.org.monthly_request_limit = 4
        self.org.max_api_keys = 2
        self.org.retention_days = 30
        self.org.save()
        self.make_key()
        response = self.client.get(LIST)
        self.assertContains(response, "3 / 4 (75%)")
        self.assertContains(response, "1 / unlimited")  # charlie-org
        self.assertContains(response, "1 / 2")  # active keys of alice-org
        self.assertContains(response, "30 days")
        detail = self.client.get(f"/admin/orgs/organization/{self.org.pk}/change/")
        self.assertContains(detail, "3 / 4 (75%)")
        create_log(org=self.org, provider="openai", status=200)
        self.assertContains(self.client.get(LIST), "3 / 4 (75%)")  # the list counts at most once a minute
        self.assertContains(self.client.get(f"/admin/orgs/organization/{self.org.pk}/change/"), "4 / 4 (100%)")

    def test_limits_are_edited_and_audited_with_old_and_new_values(self):
        response = self.client.post(f"/admin/orgs/organization/{self.org.pk}/change/",
                                    change_form(self.org, monthly_request_limit="1000", retention_days="90",
                                                max_api_keys="3"))
        self.assertEqual(response.status_code, 302)
        self.org.refresh_from_db()
        self.assertEqual((self.org.monthly_request_limit, self.org.retention_days, self.org.max_api_keys),
                         (1000, 90, 3))
        event = self.assert_audited("admin.change", org=self.org, actor_user=self.operator)
        self.assertEqual(event.changes["values"], {"monthly_request_limit": [None, 1000], "retention_days": [None, 90],
                                                   "max_api_keys": [None, 3]})

    def test_an_invalid_rate_limit_policy_is_refused_naming_the_problem(self):
        response = self.client.post(f"/admin/orgs/organization/{self.org.pk}/change/",
                                    change_form(self.org, rate_limit_policy="10;w=60;u=bytes"))
        self.assertContains(response, "u= must be request, token or cents")
        self.org.refresh_from_db()
        self.assertEqual(self.org.rate_limit_policy, "")
        self.assertFalse(AuditEvent.objects.filter(action="admin.change").exists())

    def test_members_and_keys_are_inline_with_links(self):
        key, raw = self.make_key()
        response = self.client.get(f"/admin/orgs/organization/{self.org.pk}/change/")
        self.assertContains(response, "bob@example.org")
        self.assertContains(response, key.masked)
        self.assertNotContains(response, raw)
        self.assertNotContains(response, key.hashed_key)
        self.assertContains(response, 'href="/o/alice-org/"')
        self.assertContains(response, 'href="/admin/analytics/requestlog/?org=alice-org"')
        self.assertContains(response, 'href="/admin/analytics/requestlog/figures/?org=alice-org"')
        self.assertEqual(self.client.get(f"/admin/orgs/auditevent/?org__id__exact={self.org.pk}").status_code, 200)


class DeletionTests(AdminTestCase):
    def test_an_org_with_request_logs_cannot_be_deleted_one_without_can(self):
        create_log(org=self.org, provider="openai", status=200)
        self.assertEqual(self.client.post(f"{LIST}{self.org.pk}/delete/", {"post": "yes"}).status_code, 403)
        self.assertNotContains(self.client.get(LIST), 'value="delete_selected"')
        self.assertEqual(self.client.post(f"{LIST}{self.other_org.pk}/delete/", {"post": "yes"}).status_code, 302)
        self.assertEqual(list(Organization.objects.values_list("slug", flat=True)), ["alice-org"])
        self.assert_audited("admin.delete", target_id=str(self.other_org.pk))
