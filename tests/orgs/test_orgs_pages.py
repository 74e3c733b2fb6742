from orgs.models import Membership, Organization, Role
from tests.orgs.helpers import OrgsTestCase


class OrgListTests(OrgsTestCase):
    def setUp(self):
        super().setUp()
        self.client.force_login(self.bob)

    def test_lists_my_orgs_with_my_role(self):
        response = self.client.get("/orgs/")
        self.assertContains(response, "Alice Org")
        self.assertContains(response, "Member")
        self.assertNotContains(response, "Charlie Org")

    def test_create_makes_the_creator_owner(self):
        response = self.client.post("/orgs/", {"name": "Bob Labs", "slug": "bob-labs"})
        self.assertRedirects(response, "/o/bob-labs/", fetch_redirect_response=False)
        org = Organization.objects.get(slug="bob-labs")
        self.assertEqual(Membership.objects.get(org=org, user=self.bob).role, Role.OWNER)
        event = self.assert_audited("org.create", org=org, actor_user=self.bob)
        self.assertEqual(event.changes, {"name": "Bob Labs", "slug": "bob-labs", "owner": "bob@example.org"})
        self.assertContains(self.client.get("/o/bob-labs/"), "Bob Labs")

    def test_duplicate_slug_is_an_error_on_the_slug_field(self):
        response = self.client.post("/orgs/", {"name": "Copycat", "slug": "charlie-org"})
        self.assertEqual(response.status_code, 400)
        self.assertEqual(list(response.context["form"].errors), ["slug"])
        self.assertContains(response, "Slug: An organization with this slug already exists", status_code=400)
        self.assertEqual(Organization.objects.filter(slug="charlie-org").count(), 1)

    def test_invalid_slug_and_blank_name_name_their_fields(self):
        response = self.client.post("/orgs/", {"name": "", "slug": "Not A Slug!"})
        self.assertEqual(set(response.context["form"].errors), {"name", "slug"})

    def test_needs_login(self):
        self.client.logout()
        self.assertRedirects(self.client.get("/orgs/"), "/login/?next=/orgs/")


class OrgHomeAndSettingsTests(OrgsTestCase):
    def test_home_is_a_placeholder_with_the_org_nav(self):
        self.client.force_login(self.alice)
        response = self.client.get("/o/alice-org/")
        self.assertContains(response, "Alice Org")
        for link in ("/o/alice-org/settings/members/", "/o/alice-org/settings/keys/", "/o/alice-org/settings/audit/",
                     "/o/alice-org/settings/"):
            self.assertContains(response, f'href="{link}"')

    def test_member_nav_hides_owner_links(self):
        self.client.force_login(self.bob)
        response = self.client.get("/o/alice-org/")
        self.assertNotContains(response, 'href="/o/alice-org/settings/"')
        self.assertNotContains(response, 'href="/o/alice-org/settings/audit/"')

    def test_owner_renames(self):
        self.client.force_login(self.alice)
        response = self.client.post("/o/alice-org/settings/", {"name": "Alice Industries"})
        self.assertRedirects(response, "/o/alice-org/settings/", fetch_redirect_response=False)
        self.org.refresh_from_db()
        self.assertEqual(self.org.name, "Alice Industries")
        event = self.assert_audited("org.update", org=self.org, actor_user=self.alice)
        self.assertEqual(event.changes, {"name": ["Alice Org", "Alice Industries"]})

    def test_blank_name_names_the_field(self):
        self.client.force_login(self.alice)
        response = self.client.post("/o/alice-org/settings/", {"name": "  "})
        self.assertEqual(response.status_code, 400)
        self.assertIn("name", response.context["form"].errors)
