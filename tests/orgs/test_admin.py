from orgs.models import ApiKey, AuditEvent, Organization, User
from tests.base import PASSWORD
from tests.orgs.helpers import FAST_HASHERS, OrgsTestCase, token_for


class AdminOtpRequirementTests(OrgsTestCase):
    def setUp(self):
        super().setUp()
        self.operator = User.objects.create_superuser("ops@example.org", PASSWORD)

    def test_staff_without_a_device_cannot_use_the_admin(self):
        self.client.force_login(self.operator)
        response = self.client.get("/admin/")
        self.assertEqual(response.status_code, 302)
        self.assertTrue(response["Location"].startswith("/admin/login/"))
        self.assertEqual(self.client.get("/admin/orgs/organization/").status_code, 302)

    def test_admin_login_form_asks_for_a_token(self):
        device = self.give_totp(self.operator)
        response = self.client.get("/admin/login/")
        self.assertContains(response, 'name="otp_token"')
        response = self.client.post("/admin/login/?next=/admin/", {
            "username": "ops@example.org", "password": PASSWORD, "otp_device": device.persistent_id,
            "otp_token": token_for(device),
        })
        self.assertRedirects(response, "/admin/", fetch_redirect_response=False)
        self.assertEqual(self.client.get("/admin/").status_code, 200)
        self.assertEqual(self.assert_audited("user.login", actor_user=self.operator).changes["via"], "admin")

    def test_staff_with_an_unverified_session_cannot_use_the_admin(self):
        self.give_totp(self.operator)
        self.client.force_login(self.operator)  # logged in, but no token given this session
        self.assertEqual(self.client.get("/admin/").status_code, 302)

    def test_staff_verified_with_a_device_can_use_the_admin(self):
        device = self.give_totp(self.operator)
        self.login_with_totp(self.operator, device)
        self.assertEqual(self.client.get("/admin/").status_code, 200)
        self.assertEqual(self.client.get("/admin/orgs/organization/").status_code, 200)


class AdminPagesTests(OrgsTestCase):
    def setUp(self):
        super().setUp()
        self.operator = User.objects.create_superuser("ops@example.org", PASSWORD)
        self.login_with_totp(self.operator, self.give_totp(self.operator))

    def test_every_admin_list_and_change_page_renders(self):
        key, raw = self.make_key()
        pages = ["/admin/orgs/organization/", f"/admin/orgs/organization/{self.org.pk}/change/",
                 "/admin/orgs/user/", f"/admin/orgs/user/{self.bob.pk}/change/", "/admin/orgs/user/add/",
                 "/admin/orgs/membership/", "/admin/orgs/invitation/", "/admin/orgs/apikey/",
                 f"/admin/orgs/apikey/{key.pk}/change/", "/admin/orgs/auditevent/"]
        for url in pages:
            self.assertEqual(self.client.get(url).status_code, 200, url)

    def test_org_list_shows_member_and_key_counts(self):
        self.make_key()
        response = self.client.get("/admin/orgs/organization/")
        org = [o for o in response.context["cl"].result_list if o.slug == "alice-org"][0]
        self.assertEqual((org._members, org._keys), (2, 1))
        self.assertEqual(self.client.get("/admin/orgs/organization/?q=alice").status_code, 200)

    def test_api_key_pages_show_no_secret_or_hash(self):
        key, raw = self.make_key()
        for url in ["/admin/orgs/apikey/", f"/admin/orgs/apikey/{key.pk}/change/"]:
            response = self.client.get(url)
            self.assertNotContains(response, raw)
            self.assertNotContains(response, key.hashed_key)
            self.assertContains(response, key.masked)
        self.assertEqual(self.client.get("/admin/orgs/apikey/add/").status_code, 403)

    def test_revoke_action_revokes_and_is_audited(self):
        key, raw = self.make_key()
        response = self.client.post("/admin/orgs/apikey/", {"action": "revoke_keys", "_selected_action": [key.pk]})
        self.assertEqual(response.status_code, 302)
        key.refresh_from_db()
        self.assertIsNotNone(key.revoked_at)
        self.assertIsNone(ApiKey.find_active(raw))
        action = self.assert_audited("admin.action", actor_user=self.operator)
        self.assertEqual(action.changes["action"], "revoke_keys")
        self.assertEqual(action.changes["model"], "orgs.apikey")
        self.assertEqual(self.assert_audited("apikey.revoke", org=self.org).changes["via"], "admin")

    def test_change_is_audited_with_model_and_fields(self):
        response = self.client.post(f"/admin/orgs/organization/{self.org.pk}/change/", {
            "name": "Renamed", "slug": "alice-org", "created_at_0": "2026-01-01", "created_at_1": "00:00:00",
            "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0",
            "api_keys-TOTAL_FORMS": "0", "api_keys-INITIAL_FORMS": "0",
        })
        self.assertEqual(response.status_code, 302, getattr(response, "context", None) and
                         response.context["adminform"].form.errors)
        event = self.assert_audited("admin.change", org=self.org)
        self.assertEqual(event.changes, {"model": "orgs.organization", "fields": ["Name"],
                                         "values": {"name": ["Alice Org", "Renamed"]}})

    def test_add_and_delete_are_audited_without_passwords(self):
        with self.settings(PASSWORD_HASHERS=FAST_HASHERS):
            response = self.client.post("/admin/orgs/user/add/", {
                "email": "new@example.org", "password1": "an unusual passphrase 9", "password2": "an unusual passphrase 9",
                "usable_password": "true",
            })
        self.assertEqual(response.status_code, 302)
        user = User.objects.get(email="new@example.org")
        event = self.assert_audited("admin.add")
        self.assertEqual(event.changes["model"], "orgs.user")
        self.assertNotIn("an unusual passphrase 9", repr(event.changes))
        response = self.client.post(f"/admin/orgs/user/{user.pk}/delete/", {"post": "yes"})
        self.assertEqual(response.status_code, 302)
        event = self.assert_audited("admin.delete", target_id=str(user.pk))
        self.assertEqual(event.changes["model"], "orgs.user")

    def test_audit_events_are_read_only(self):
        self.make_key()
        event = AuditEvent.objects.create(action="test.event")
        self.assertEqual(self.client.get("/admin/orgs/auditevent/add/").status_code, 403)
        response = self.client.post(f"/admin/orgs/auditevent/{event.pk}/change/", {"action": "changed"})
        self.assertEqual(response.status_code, 403)
        self.assertEqual(self.client.post(f"/admin/orgs/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code,
                         403)
        event.refresh_from_db()
        self.assertEqual(event.action, "test.event")
        self.assertTrue(Organization.objects.filter(slug="alice-org").exists())
