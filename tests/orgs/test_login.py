from django_otp.plugins.otp_static.models import StaticToken

from orgs.models import AuditEvent
from tests.base import PASSWORD
from tests.orgs.helpers import OrgsTestCase, token_for, wrong_token_for


class LoginWithoutTwoFactorTests(OrgsTestCase):
    def test_login_with_password(self):
        response = self.client.post("/login/", {"username": "alice@example.org", "password": PASSWORD})
        self.assertRedirects(response, "/orgs/", fetch_redirect_response=False)
        self.assertEqual(self.client.get("/orgs/").status_code, 200)
        event = self.assert_audited("user.login", actor_user=self.alice)
        self.assertEqual(event.changes, {"2fa": False})

    def test_wrong_password_is_refused_and_audited_without_the_password(self):
        response = self.client.post("/login/", {"username": "alice@example.org", "password": "guess"})
        self.assertEqual(response.status_code, 200)
        self.assertIn("password", response.context["form"].errors)
        self.assertRedirects(self.client.get("/orgs/"), "/login/?next=/orgs/")
        event = self.assert_audited("user.login_failed")
        self.assertEqual(event.changes["email"], "alice@example.org")
        self.assertNotIn("guess", repr(event.changes))

    def test_login_returns_to_next(self):
        response = self.client.post("/login/?next=/o/alice-org/", {"username": "alice@example.org",
                                                                     "password": PASSWORD})
        self.assertEqual(response["Location"], "/o/alice-org/")

    def test_logout_is_post_only_and_audited(self):
        self.client.force_login(self.alice)
        self.assertEqual(self.client.get("/logout/").status_code, 405)
        response = self.client.post("/logout/")
        self.assertRedirects(response, "/login/", fetch_redirect_response=False)
        self.assert_audited("user.logout", actor_user=self.alice)
        self.assertRedirects(self.client.get("/orgs/"), "/login/?next=/orgs/")


class LoginWithTwoFactorTests(OrgsTestCase):
    def setUp(self):
        super().setUp()
        self.device = self.give_totp(self.alice)

    def test_password_alone_does_not_log_in(self):
        response = self.client.post("/login/", {"username": "alice@example.org", "password": PASSWORD})
        self.assertRedirects(response, "/login/2fa/", fetch_redirect_response=False)
        self.assertRedirects(self.client.get("/orgs/"), "/login/?next=/orgs/")
        self.assertFalse(AuditEvent.objects.filter(action="user.login").exists())

    def test_totp_token_completes_the_login_and_verifies_the_session(self):
        self.client.post("/login/?next=/o/alice-org/", {"username": "alice@example.org", "password": PASSWORD})
        response = self.client.post("/login/2fa/", {"token": token_for(self.device)})
        self.assertEqual(response["Location"], "/o/alice-org/")
        self.assertEqual(self.client.get("/orgs/").status_code, 200)
        # The session is OTP-verified: an org requiring 2FA lets alice in.
        self.org.require_2fa = True
        self.org.save()
        self.assertEqual(self.client.get("/o/alice-org/").status_code, 200)
        self.assertEqual(self.assert_audited("user.login", actor_user=self.alice).changes["2fa"], True)

    def test_wrong_token_is_a_form_error_and_does_not_log_in(self):
        self.client.post("/login/", {"username": "alice@example.org", "password": PASSWORD})
        response = self.client.post("/login/2fa/", {"token": wrong_token_for(self.device)})
        self.assertEqual(response.status_code, 200)
        self.assertIn("token", response.context["form"].errors)
        self.assertContains(response, "Authentication code: That code is not valid")
        self.assertRedirects(self.client.get("/orgs/"), "/login/?next=/orgs/")
        self.assertEqual(self.assert_audited("user.login_failed").changes["step"], "token")

    def test_token_step_without_a_password_step_goes_back_to_login(self):
        response = self.client.post("/login/2fa/", {"token": token_for(self.device)})
        self.assertRedirects(response, "/login/", fetch_redirect_response=False)
        self.assertRedirects(self.client.get("/orgs/"), "/login/?next=/orgs/")

    def test_backup_code_logs_in_once(self):
        self.give_backup_codes(self.alice, codes=["k7m2q9zx", "p3r5t6wa"])
        self.client.post("/login/", {"username": "alice@example.org", "password": PASSWORD})
        response = self.client.post("/login/2fa/", {"token": "K7M2 Q9ZX"})
        self.assertRedirects(response, "/orgs/", fetch_redirect_response=False)
        self.assertEqual(self.client.get("/orgs/").status_code, 200)
        self.assertFalse(StaticToken.objects.filter(token="k7m2q9zx").exists())
        self.assertEqual(self.assert_audited("user.login").changes["device"], "StaticDevice")

        self.client.post("/logout/")
        self.client.post("/login/", {"username": "alice@example.org", "password": PASSWORD})
        response = self.client.post("/login/2fa/", {"token": "k7m2q9zx"})
        self.assertIn("token", response.context["form"].errors)
