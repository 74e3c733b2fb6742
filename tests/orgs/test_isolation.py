"""Every /o/<slug>/ page answers 404 to an outsider, for GET and POST, and for a slug that does not exist."""

from orgs.models import ApiKey, AuditEvent, Invitation, Membership
from tests.orgs.helpers import OrgsTestCase


class OutsiderIsolationTests(OrgsTestCase):
    def setUp(self):
        super().setUp()
        self.key, self.raw = self.make_key()
        alice_m = Membership.objects.get(org=self.org, user=self.alice)
        self.pages = [
            "/o/{slug}/",
            "/o/{slug}/settings/",
            "/o/{slug}/settings/members/",
            f"/o/{{slug}}/settings/members/{self.bob_membership.pk}/role/",
            f"/o/{{slug}}/settings/members/{alice_m.pk}/remove/",
            "/o/{slug}/settings/keys/",
            f"/o/{{slug}}/settings/keys/{self.key.pk}/revoke/",
            "/o/{slug}/settings/audit/",
            "/o/{slug}/settings/audit/export.csv",
        ]
        self.bodies = {"role": "owner", "email": "charlie@example.org", "name": "pwned", "scopes": ["proxy"],
                       "require_2fa": ""}

    def test_outsider_gets_404_everywhere_for_get_and_post(self):
        self.client.force_login(self.charlie)
        events_before = AuditEvent.objects.count()
        for page in self.pages:
            url = page.format(slug="alice-org")
            for method in ("get", "post"):
                with self.subTest(method=method, url=url):
                    response = getattr(self.client, method)(url, self.bodies if method == "post" else None)
                    self.assertEqual(response.status_code, 404)
        self.assertEqual(AuditEvent.objects.count(), events_before)
        self.assertIsNotNone(ApiKey.find_active(self.raw))
        self.assertEqual(ApiKey.objects.filter(org=self.org).count(), 1)
        self.assertFalse(Invitation.objects.exists())
        self.bob_membership.refresh_from_db()
        self.assertEqual(self.bob_membership.role, "member")
        self.org.refresh_from_db()
        self.assertEqual(self.org.name, "Alice Org")

    def test_missing_org_looks_the_same_as_someone_elses(self):
        self.client.force_login(self.alice)
        for page in self.pages:
            url = page.format(slug="no-such-org")
            for method in ("get", "post"):
                with self.subTest(method=method, url=url):
                    self.assertEqual(getattr(self.client, method)(url).status_code, 404)

    def test_ids_from_another_org_are_404_under_your_own_org(self):
        # charlie owns charlie-org; alice's rows must not be reachable through it.
        self.client.force_login(self.charlie)
        base = "/o/charlie-org/settings"
        self.assertEqual(self.client.post(f"{base}/keys/{self.key.pk}/revoke/").status_code, 404)
        self.assertEqual(self.client.post(f"{base}/members/{self.bob_membership.pk}/role/",
                                          {"role": "viewer"}).status_code, 404)
        self.assertEqual(self.client.post(f"{base}/members/{self.bob_membership.pk}/remove/").status_code, 404)
        self.assertIsNotNone(ApiKey.find_active(self.raw))
        self.assertTrue(Membership.objects.filter(pk=self.bob_membership.pk, role="member").exists())

    def test_anonymous_visitors_are_sent_to_login(self):
        for page in self.pages[:1] + self.pages[5:6]:
            url = page.format(slug="alice-org")
            response = self.client.get(url)
            self.assertEqual(response.status_code, 302)
            self.assertTrue(response["Location"].startswith("/login/?next="))

    def test_outsiders_orgs_page_lists_only_their_orgs(self):
        self.client.force_login(self.charlie)
        response = self.client.get("/orgs/")
        self.assertContains(response, "Charlie Org")
        self.assertNotContains(response, "Alice Org")
