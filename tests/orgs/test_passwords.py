import re

from django.core import mail

from orgs.models import AuditEvent
from tests.base import PASSWORD
from tests.orgs.helpers import OrgsTestCase

NEW_PASSWORD = "a different long passphrase 7"


class PasswordChangeTests(OrgsTestCase):
    def test_change_password(self):
        self.client.force_login(self.alice)
        response = self.client.post("/account/password/", {
            "old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD,
        })
        self.assertRedirects(response, "/account/password/done/", fetch_redirect_response=False)
        self.alice.refresh_from_db()
        self.assertTrue(self.alice.check_password(NEW_PASSWORD))
        event = self.assert_audited("user.password_change", actor_user=self.alice)
        self.assertNotIn(NEW_PASSWORD, repr(event.changes))

    def test_wrong_old_password_names_the_field(self):
        self.client.force_login(self.alice)
        response = self.client.post("/account/password/", {
            "old_password": "nope", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD,
        })
        self.assertIn("old_password", response.context["form"].errors)
        self.assertFalse(AuditEvent.objects.filter(action="user.password_change").exists())


class PasswordResetTests(OrgsTestCase):
    def test_reset_by_email(self):
        response = self.client.post("/password-reset/", {"email": "bob@example.org"})
        self.assertRedirects(response, "/password-reset/sent/", fetch_redirect_response=False)
        self.assertEqual(len(mail.outbox), 1)
        link = re.search(r"https?://[^/]+(/password-reset/[^\s]+/)", mail.outbox[0].body).group(1)
        response = self.client.get(link)  # redirects to the set-password URL with the token in the session
        self.assertEqual(response.status_code, 302)
        set_url = response["Location"]
        response = self.client.post(set_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
        self.assertRedirects(response, "/password-reset/done/", fetch_redirect_response=False)
        self.bob.refresh_from_db()
        self.assertTrue(self.bob.check_password(NEW_PASSWORD))
        event = self.assert_audited("user.password_reset", actor_user=self.bob)
        self.assertNotIn(NEW_PASSWORD, repr(event.changes))
        # The link works once.
        self.assertContains(self.client.get(link, follow=True), "invalid or was already used")

    def test_unknown_email_sends_nothing_but_looks_the_same(self):
        response = self.client.post("/password-reset/", {"email": "nobody@example.org"})
        self.assertRedirects(response, "/password-reset/sent/", fetch_redirect_response=False)
        self.assertEqual(mail.outbox, [])
