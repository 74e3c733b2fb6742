import csv
import io
from datetime import timedelta

from django.utils import timezone

from orgs import audit
from orgs.models import AuditEvent
from tests.orgs.helpers import OrgsTestCase

AUDIT = "/o/alice-org/settings/audit/"


class AuditLogPageTests(OrgsTestCase):
    def setUp(self):
        super().setUp()
        self.old = audit.record("apikey.create", org=self.org, user=self.bob, changes={"name": "old"})
        AuditEvent.objects.filter(pk=self.old.pk).update(created_at=timezone.now() - timedelta(days=10))
        audit.record("member.role_change", org=self.org, user=self.alice, changes={"member": "bob@example.org"})
        audit.record("apikey.revoke", org=self.org, user=self.alice, changes={"name": "=HYPERLINK(1)"})
        audit.record("org.update", org=self.other_org, user=self.charlie, changes={"name": "charlie secret"})
        self.client.force_login(self.alice)

    def test_lists_only_this_orgs_events(self):
        response = self.client.get(AUDIT)
        self.assertEqual(len(response.context["page"].object_list), 3)
        self.assertContains(response, "member.role_change")
        self.assertNotContains(response, "charlie secret")

    def test_filters_by_action_actor_and_date(self):
        page = self.client.get(AUDIT, {"action": "apikey.revoke"}).context["page"]
        self.assertEqual([e.action for e in page], ["apikey.revoke"])
        page = self.client.get(AUDIT, {"actor": "bob@"}).context["page"]
        self.assertEqual([e.pk for e in page], [self.old.pk])
        today = timezone.now().date()
        page = self.client.get(AUDIT, {"date_from": today.isoformat()}).context["page"]
        self.assertEqual(len(page.object_list), 2)
        page = self.client.get(AUDIT, {"date_to": (today - timedelta(days=5)).isoformat()}).context["page"]
        self.assertEqual([e.pk for e in page], [self.old.pk])

    def test_bad_filters_name_their_fields(self):
        response = self.client.get(AUDIT, {"date_from": "yesterday", "action": "made.up"})
        self.assertEqual(response.status_code, 400)
        self.assertEqual(set(response.context["form"].errors), {"date_from", "action"})
        response = self.client.get(AUDIT, {"date_from": "2026-02-02", "date_to": "2026-01-01"})
        self.assertIn("date_to", response.context["form"].errors)

    def test_csv_export_honours_filters_and_defuses_formulas(self):
        response = self.client.get(AUDIT + "export.csv", {"action": "apikey.revoke"})
        self.assertEqual(response.status_code, 200)
        self.assertTrue(response["Content-Type"].startswith("text/csv"))
        self.assertIn("attachment;", response["Content-Disposition"])
        rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
        self.assertEqual(rows[0], ["created_at", "action", "actor", "target_type", "target_id", "changes", "ip",
                                   "user_agent"])
        self.assertEqual(len(rows), 2)
        self.assertEqual(rows[1][1], "apikey.revoke")
        self.assertEqual(rows[1][2], "alice@example.org")

        response = self.client.get(AUDIT + "export.csv")
        body = b"".join(response.streaming_content).decode()
        self.assertEqual(len(list(csv.reader(io.StringIO(body)))), 4)
        self.assertNotIn("charlie secret", body)

    def test_formula_cells_are_prefixed(self):
        audit.record("=cmd|evil", org=self.org, user=self.alice)
        body = b"".join(self.client.get(AUDIT + "export.csv").streaming_content).decode()
        self.assertIn("'=cmd|evil", body)
