import re

from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.base import PASSWORD
from tests.orgs.helpers import OrgsTestCase, token_for, wrong_token_for


class EnrolmentTests(OrgsTestCase):
    def setUp(self):
        super().setUp()
        self.client.force_login(self.bob)

    def test_page_shows_an_inline_svg_qr_code_for_a_pending_device(self):
        response = self.client.get("/account/2fa/")
        self.assertContains(response, "<svg")
        device = TOTPDevice.objects.get(user=self.bob)
        self.assertFalse(device.confirmed)
        # Reloading keeps the same secret, so a scanned code stays valid.
        self.client.get("/account/2fa/")
        self.assertEqual(TOTPDevice.objects.filter(user=self.bob).count(), 1)

    def test_first_token_confirms_the_device(self):
        self.client.get("/account/2fa/")
        device = TOTPDevice.objects.get(user=self.bob)
        response = self.client.post("/account/2fa/", {"step": "enrol", "token": token_for(device)})
        self.assertRedirects(response, "/account/2fa/", fetch_redirect_response=False)
        device.refresh_from_db()
        self.assertTrue(device.confirmed)
        self.assert_audited("2fa.enrol", actor_user=self.bob)

    def test_wrong_token_is_a_form_error_and_leaves_no_confirmed_device(self):
        self.client.get("/account/2fa/")
        device = TOTPDevice.objects.get(user=self.bob)
        response = self.client.post("/account/2fa/", {"step": "enrol", "token": wrong_token_for(device)})
        self.assertEqual(response.status_code, 400)
        self.assertIn("token", response.context["token_form"].errors)
        self.assertContains(response, "Authentication code: That code is not valid", status_code=400)
        self.assertFalse(TOTPDevice.objects.filter(user=self.bob, confirmed=True).exists())

    def test_ten_backup_codes_are_shown_once_and_work(self):
        self.client.get("/account/2fa/")
        device = TOTPDevice.objects.get(user=self.bob)
        self.client.post("/account/2fa/", {"step": "enrol", "token": token_for(device)})
        response = self.client.post("/account/2fa/", {"step": "backup_codes"})
        codes = response.context["backup_codes"]
        self.assertEqual(len(codes), 10)
        for code in codes:
            self.assertContains(response, code)
        self.assertNotContains(self.client.get("/account/2fa/"), codes[0])
        self.assertEqual(StaticToken.objects.filter(device__user=self.bob).count(), 10)
        self.assert_audited("2fa.backup_codes", actor_user=self.bob)
        # A backup code is a second factor at login.
        self.client.post("/logout/")
        self.client.post("/login/", {"username": "bob@example.org", "password": PASSWORD})
        response = self.client.post("/login/2fa/", {"token": codes[3]})
        self.assertRedirects(response, "/orgs/", fetch_redirect_response=False)

    def test_backup_codes_need_a_device(self):
        response = self.client.post("/account/2fa/", {"step": "backup_codes"})
        self.assertEqual(response.status_code, 400)
        self.assertFalse(StaticToken.objects.exists())


class RemovalTests(OrgsTestCase):
    def setUp(self):
        super().setUp()
        self.device = self.give_totp(self.alice)
        self.give_backup_codes(self.alice)
        self.login_with_totp(self.alice, self.device)

    def test_removal_asks_for_the_password(self):
        response = self.client.post("/account/2fa/", {"step": "remove", "password": "wrong"})
        self.assertEqual(response.status_code, 400)
        self.assertIn("password", response.context["remove_form"].errors)
        self.assertTrue(TOTPDevice.objects.filter(user=self.alice, confirmed=True).exists())

    def test_removal_with_password_deletes_every_device(self):
        response = self.client.post("/account/2fa/", {"step": "remove", "password": PASSWORD})
        self.assertRedirects(response, "/account/2fa/", fetch_redirect_response=False)
        self.assertFalse(TOTPDevice.objects.filter(user=self.alice).exists())
        self.assertFalse(StaticToken.objects.filter(device__user=self.alice).exists())
        event = self.assert_audited("2fa.remove", actor_user=self.alice)
        self.assertNotIn(PASSWORD, repr(event.changes))
        # Logging in no longer asks for a token.
        self.client.post("/logout/")
        response = self.client.post("/login/", {"username": "alice@example.org", "password": PASSWORD})
        self.assertRedirects(response, "/orgs/", fetch_redirect_response=False)

    def test_secret_is_not_shown_once_enrolled(self):
        response = self.client.get("/account/2fa/")
        self.assertNotContains(response, "<svg")
        self.assertFalse(re.search(r"secret-inline", response.content.decode()))


class ReEnrolmentTests(OrgsTestCase):
    def test_enrol_step_cannot_replace_an_existing_device(self):
        device = self.give_totp(self.alice)
        self.client.force_login(self.alice)  # an unverified session
        pending = TOTPDevice.objects.create(user=self.alice, name="attacker", confirmed=False)
        response = self.client.post("/account/2fa/", {"step": "enrol", "token": token_for(pending)})
        self.assertEqual(response.status_code, 400)
        self.assertTrue(TOTPDevice.objects.filter(pk=device.pk, confirmed=True).exists())
        self.assertFalse(TOTPDevice.objects.filter(pk=pending.pk, confirmed=True).exists())
