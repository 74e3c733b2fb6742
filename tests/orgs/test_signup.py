from orgs.models import AuditEvent, User
from tests.orgs.helpers import OrgsTestCase

NEW_PASSWORD = "a sturdy new passphrase 42"


class SignupTests(OrgsTestCase):
    def test_signup_creates_user_logs_in_and_is_audited(self):
        response = self.client.post("/signup/", {"email": "Dana@Example.org", "password": NEW_PASSWORD})
        self.assertRedirects(response, "/orgs/", fetch_redirect_response=False)
        user = User.objects.get(email="dana@example.org")
        self.assertTrue(user.check_password(NEW_PASSWORD))
        self.assertEqual(self.client.get("/orgs/").status_code, 200)
        event = self.assert_audited("user.signup", actor_user=user)
        self.assertNotIn(NEW_PASSWORD, repr(event.changes))

    def test_duplicate_email_is_an_error_on_the_email_field(self):
        response = self.client.post("/signup/", {"email": "alice@example.org", "password": NEW_PASSWORD})
        self.assertEqual(response.status_code, 200)
        self.assertIn("email", response.context["form"].errors)
        self.assertContains(response, "Email: An account with this email already exists")
        self.assertFalse(AuditEvent.objects.filter(action="user.signup").exists())

    def test_weak_password_is_an_error_on_the_password_field(self):
        response = self.client.post("/signup/", {"email": "dana@example.org", "password": "123"})
        self.assertIn("password", response.context["form"].errors)
        self.assertFalse(User.objects.filter(email="dana@example.org").exists())

    def test_invalid_email_names_the_field(self):
        response = self.client.post("/signup/", {"email": "not-an-email", "password": NEW_PASSWORD})
        self.assertIn("email", response.context["form"].errors)

    def test_signup_follows_a_safe_next_only(self):
        response = self.client.post("/signup/?next=/invite/abc/", {"email": "d1@example.org", "password": NEW_PASSWORD})
        self.assertEqual(response["Location"], "/invite/abc/")
        self.client.logout()
        response = self.client.post("/signup/?next=https://evil.example/", {"email": "d2@example.org",
                                                                             "password": NEW_PASSWORD})
        self.assertEqual(response["Location"], "/orgs/")
