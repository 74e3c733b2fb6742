from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.orgs.helpers import OrgsTestCase, token_for


class OrgRequiresTwoFactorTests(OrgsTestCase):
    def setUp(self):
        super().setUp()
        self.org.require_2fa = True
        self.org.save()

    def test_member_without_a_device_is_sent_to_enrol_then_back(self):
        self.client.force_login(self.bob)
        for url in ["/o/alice-org/", "/o/alice-org/settings/keys/", "/o/alice-org/settings/members/"]:
            response = self.client.get(url)
            self.assertEqual(response.status_code, 302, url)
            self.assertTrue(response["Location"].startswith("/account/2fa/?next="), response["Location"])
        response = self.client.get("/o/alice-org/settings/keys/", follow=True)
        self.assertContains(response, "requires two-factor authentication")
        device = TOTPDevice.objects.get(user=self.bob, confirmed=False)
        response = self.client.post("/account/2fa/?next=/o/alice-org/settings/keys/",
                                    {"step": "enrol", "token": token_for(device),
                                     "next": "/o/alice-org/settings/keys/"})
        self.assertRedirects(response, "/o/alice-org/settings/keys/", fetch_redirect_response=False)
        self.assertEqual(self.client.get("/o/alice-org/settings/keys/").status_code, 200)

    def test_post_is_redirected_too_and_changes_nothing(self):
        self.client.force_login(self.alice)
        response = self.client.post("/o/alice-org/settings/keys/", {"name": "k", "scopes": ["proxy"]})
        self.assertEqual(response.status_code, 302)
        self.assertFalse(self.org.api_keys.exists())

    def test_other_orgs_are_not_affected(self):
        self.client.force_login(self.charlie)
        self.assertEqual(self.client.get("/o/charlie-org/").status_code, 200)

    def test_outsider_still_gets_404_not_a_2fa_redirect(self):
        self.client.force_login(self.charlie)
        self.assertEqual(self.client.get("/o/alice-org/").status_code, 404)

    def test_member_with_a_device_verified_at_login_gets_in(self):
        device = self.give_totp(self.bob)
        self.login_with_totp(self.bob, device)
        self.assertEqual(self.client.get("/o/alice-org/").status_code, 200)


class RequireTwoFactorSettingTests(OrgsTestCase):
    def test_owner_without_2fa_cannot_lock_themselves_out(self):
        self.client.force_login(self.alice)
        response = self.client.post("/o/alice-org/settings/", {"name": "Alice Org", "require_2fa": "on"})
        self.assertEqual(response.status_code, 400)
        self.assertIn("require_2fa", response.context["form"].errors)
        self.org.refresh_from_db()
        self.assertFalse(self.org.require_2fa)

    def test_owner_with_2fa_turns_it_on(self):
        device = self.give_totp(self.alice)
        self.login_with_totp(self.alice, device)
        response = self.client.post("/o/alice-org/settings/", {"name": "Alice Org", "require_2fa": "on"})
        self.assertRedirects(response, "/o/alice-org/settings/", fetch_redirect_response=False)
        self.org.refresh_from_db()
        self.assertTrue(self.org.require_2fa)
        event = self.assert_audited("org.update", org=self.org)
        self.assertEqual(event.changes, {"require_2fa": [False, True]})
