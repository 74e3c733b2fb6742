from orgs.models import ApiKey, Invitation, Membership, Role
from tests.orgs.helpers import OrgsTestCase

MEMBERS = "/o/alice-org/settings/members/"
KEYS = "/o/alice-org/settings/keys/"


class ViewerAndMemberLimitsTests(OrgsTestCase):
    def test_viewer_and_member_see_but_cannot_create_keys_or_invite(self):
        for user in (self.make_viewer(), self.bob):
            self.client.force_login(user)
            keys_page = self.client.get(KEYS)
            self.assertEqual(keys_page.status_code, 200)
            self.assertNotContains(keys_page, "Create key")
            members_page = self.client.get(MEMBERS)
            self.assertEqual(members_page.status_code, 200)
            self.assertNotContains(members_page, "Send invitation")
            self.assertContains(members_page, "alice@example.org")
            self.assertEqual(self.client.post(KEYS, {"name": "k", "scopes": ["proxy"]}).status_code, 403)
            self.assertEqual(self.client.post(MEMBERS, {"email": "x@example.org", "role": "viewer"}).status_code, 403)
        self.assertFalse(ApiKey.objects.filter(org=self.org).exists())
        self.assertFalse(Invitation.objects.exists())

    def test_member_cannot_revoke_keys_or_remove_others(self):
        key, raw = self.make_key()
        self.client.force_login(self.bob)
        self.assertNotContains(self.client.get(KEYS), "Revoke")
        self.assertEqual(self.client.post(f"{KEYS}{key.pk}/revoke/").status_code, 403)
        self.assertIsNotNone(ApiKey.find_active(raw))
        alice_m = Membership.objects.get(org=self.org, user=self.alice)
        self.assertEqual(self.client.post(f"{MEMBERS}{alice_m.pk}/remove/").status_code, 403)

    def test_admin_creates_keys_and_invites(self):
        self.client.force_login(self.make_admin())
        self.assertContains(self.client.get(KEYS), "Create key")
        self.assertEqual(self.client.post(KEYS, {"name": "k", "scopes": ["proxy"]}).status_code, 201)
        self.assertEqual(self.client.post(MEMBERS, {"email": "x@example.org", "role": "viewer"}).status_code, 302)

    def test_audit_log_and_settings_need_admin_and_owner(self):
        self.client.force_login(self.bob)
        self.assertEqual(self.client.get("/o/alice-org/settings/audit/").status_code, 403)
        self.assertEqual(self.client.get("/o/alice-org/settings/").status_code, 403)
        self.assertNotContains(self.client.get("/o/alice-org/"), "Audit log")
        admin = self.make_admin()
        self.client.force_login(admin)
        self.assertEqual(self.client.get("/o/alice-org/settings/audit/").status_code, 200)
        self.assertEqual(self.client.get("/o/alice-org/settings/").status_code, 403)
        self.assertEqual(self.client.post("/o/alice-org/settings/", {"name": "Taken over"}).status_code, 403)
        self.org.refresh_from_db()
        self.assertEqual(self.org.name, "Alice Org")


class RoleChangeTests(OrgsTestCase):
    def url(self, membership):
        return f"{MEMBERS}{membership.pk}/role/"

    def test_only_owner_changes_roles(self):
        admin = self.make_admin()
        for user in (self.bob, admin):
            self.client.force_login(user)
            self.assertNotContains(self.client.get(MEMBERS), "Change</button>")
            self.assertEqual(self.client.post(self.url(self.bob_membership), {"role": "admin"}).status_code, 403)
        self.bob_membership.refresh_from_db()
        self.assertEqual(self.bob_membership.role, Role.MEMBER)

        self.client.force_login(self.alice)
        response = self.client.post(self.url(self.bob_membership), {"role": "admin"})
        self.assertRedirects(response, MEMBERS, fetch_redirect_response=False)
        self.bob_membership.refresh_from_db()
        self.assertEqual(self.bob_membership.role, Role.ADMIN)
        event = self.assert_audited("member.role_change", org=self.org, actor_user=self.alice)
        self.assertEqual(event.changes, {"member": "bob@example.org", "role": ["member", "admin"]})

    def test_unknown_role_names_the_field(self):
        self.client.force_login(self.alice)
        response = self.client.post(self.url(self.bob_membership), {"role": "emperor"})
        self.assertContains(response, "Role:", status_code=400)

    def test_last_owner_cannot_be_demoted(self):
        self.client.force_login(self.alice)
        alice_m = Membership.objects.get(org=self.org, user=self.alice)
        response = self.client.post(self.url(alice_m), {"role": "admin"})
        self.assertContains(response, "last owner", status_code=400)
        alice_m.refresh_from_db()
        self.assertEqual(alice_m.role, Role.OWNER)

    def test_an_owner_can_step_down_when_another_owner_exists(self):
        self.client.force_login(self.alice)
        self.client.post(self.url(self.bob_membership), {"role": "owner"})
        alice_m = Membership.objects.get(org=self.org, user=self.alice)
        self.assertEqual(self.client.post(self.url(alice_m), {"role": "member"}).status_code, 302)
        alice_m.refresh_from_db()
        self.assertEqual(alice_m.role, Role.MEMBER)


class RemoveMemberTests(OrgsTestCase):
    def url(self, membership):
        return f"{MEMBERS}{membership.pk}/remove/"

    def test_owner_removes_a_member(self):
        self.client.force_login(self.alice)
        response = self.client.post(self.url(self.bob_membership))
        self.assertRedirects(response, MEMBERS, fetch_redirect_response=False)
        self.assertFalse(Membership.objects.filter(org=self.org, user=self.bob).exists())
        event = self.assert_audited("member.remove", org=self.org, actor_user=self.alice)
        self.assertEqual(event.changes, {"member": "bob@example.org", "role": "member"})
        self.client.force_login(self.bob)
        self.assertEqual(self.client.get("/o/alice-org/").status_code, 404)

    def test_last_owner_cannot_be_removed(self):
        self.client.force_login(self.alice)
        alice_m = Membership.objects.get(org=self.org, user=self.alice)
        response = self.client.post(self.url(alice_m))
        self.assertContains(response, "Member:", status_code=400)
        self.assertContains(response, "last owner", status_code=400)
        self.assertTrue(Membership.objects.filter(pk=alice_m.pk).exists())

    def test_admin_cannot_remove_an_owner(self):
        self.client.force_login(self.make_admin())
        alice_m = Membership.objects.get(org=self.org, user=self.alice)
        self.assertEqual(self.client.post(self.url(alice_m)).status_code, 400)
        self.assertTrue(Membership.objects.filter(pk=alice_m.pk).exists())

    def test_a_member_can_leave(self):
        self.client.force_login(self.bob)
        response = self.client.post(self.url(self.bob_membership))
        self.assertRedirects(response, "/orgs/", fetch_redirect_response=False)
        self.assertFalse(Membership.objects.filter(pk=self.bob_membership.pk).exists())
