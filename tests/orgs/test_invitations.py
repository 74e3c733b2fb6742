import re
import time
from unittest import mock

from django.core import mail
from django.test import override_settings

from orgs.actions import invitation_token
from orgs.models import AuditEvent, Invitation, Membership, Role, User
from tests.base import PASSWORD
from tests.orgs.helpers import FAST_HASHERS, OrgsTestCase

NEW_PASSWORD = "a sturdy new passphrase 42"


@override_settings(SITE_URL="https://gateway.example.com", PASSWORD_HASHERS=FAST_HASHERS)
class InvitationTests(OrgsTestCase):
    def invite(self, email="dana@example.org", role="viewer"):
        self.client.force_login(self.alice)
        response = self.client.post("/o/alice-org/settings/members/", {"email": email, "role": role})
        self.client.logout()
        return response

    def link_from_mail(self) -> str:
        match = re.search(r"https://gateway\.example\.com(/invite/[^/\s]+/)", mail.outbox[-1].body)
        assert match, mail.outbox[-1].body
        return match.group(1)

    def test_invite_is_mailed_with_a_signed_link_and_audited(self):
        response = self.invite()
        self.assertRedirects(response, "/o/alice-org/settings/members/", fetch_redirect_response=False)
        self.assertEqual(len(mail.outbox), 1)
        self.assertEqual(mail.outbox[0].to, ["dana@example.org"])
        self.assertIn("Alice Org", mail.outbox[0].subject)
        self.link_from_mail()
        event = self.assert_audited("invite.send", org=self.org, actor_user=self.alice)
        self.assertEqual(event.changes, {"email": "dana@example.org", "role": "viewer"})

    def test_new_user_signs_up_comes_back_and_accepts(self):
        self.invite()
        link = self.link_from_mail()
        response = self.client.get(link)
        self.assertEqual(response.status_code, 200)
        signup_url = response.context["signup_url"]
        self.assertIn("next=%2Finvite%2F", signup_url)
        self.assertContains(response, "Log in")
        response = self.client.post(signup_url, {"email": "dana@example.org", "password": NEW_PASSWORD})
        self.assertEqual(response["Location"], link)
        self.assertContains(self.client.get(link), "Accept invitation")
        response = self.client.post(link)
        self.assertRedirects(response, "/o/alice-org/", fetch_redirect_response=False)
        dana = User.objects.get(email="dana@example.org")
        self.assertEqual(Membership.objects.get(org=self.org, user=dana).role, Role.VIEWER)
        invitation = Invitation.objects.get(email="dana@example.org")
        self.assertIsNotNone(invitation.accepted_at)
        self.assertEqual(invitation.accepted_by, dana)
        self.assert_audited("invite.accept", org=self.org, actor_user=dana)
        self.assertEqual(self.client.get("/o/alice-org/").status_code, 200)

    def test_existing_user_logs_in_comes_back_and_accepts(self):
        self.invite(email="charlie@example.org", role="member")
        link = self.link_from_mail()
        login_url = self.client.get(link).context["login_url"]
        response = self.client.post(login_url, {"username": "charlie@example.org", "password": PASSWORD})
        self.assertEqual(response["Location"], link)
        self.client.post(link)
        self.assertEqual(Membership.objects.get(org=self.org, user=self.charlie).role, Role.MEMBER)

    def test_reused_link_is_refused(self):
        self.invite(email="charlie@example.org")
        link = self.link_from_mail()
        self.client.force_login(self.charlie)
        self.client.post(link)
        response = self.client.post(link)
        self.assertEqual(response.status_code, 410)
        self.assertContains(response, "already been used", status_code=410)
        self.assertEqual(AuditEvent.objects.filter(action="invite.accept").count(), 1)

    def test_expired_link_is_refused_without_rows(self):
        self.client.force_login(self.alice)
        self.client.post("/o/alice-org/settings/members/", {"email": "charlie@example.org", "role": "member"})
        invitation = Invitation.objects.get(email="charlie@example.org")
        eight_days_ago = time.time() - 8 * 24 * 3600
        with mock.patch("django.core.signing.time.time", return_value=eight_days_ago):
            token = invitation_token(invitation)
        self.client.force_login(self.charlie)
        for method in (self.client.get, self.client.post):
            response = method(f"/invite/{token}/")
            self.assertEqual(response.status_code, 410)
            self.assertContains(response, "expired", status_code=410)
        self.assertFalse(Membership.objects.filter(org=self.org, user=self.charlie).exists())
        invitation.refresh_from_db()
        self.assertIsNone(invitation.accepted_at)

    def test_tampered_link_is_refused_without_rows(self):
        self.invite(email="charlie@example.org")
        link = self.link_from_mail()
        token = link.split("/")[2]
        tampered = token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb")
        self.client.force_login(self.charlie)
        for bad in (tampered, "not-a-token", token.replace(":", ":x", 1)):
            response = self.client.post(f"/invite/{bad}/")
            self.assertEqual(response.status_code, 400, bad)
            self.assertContains(response, "not valid", status_code=400)
        self.assertFalse(Membership.objects.filter(org=self.org, user=self.charlie).exists())

    def test_link_for_someone_else_is_refused(self):
        self.invite(email="dana@example.org")
        link = self.link_from_mail()
        self.client.force_login(self.charlie)
        self.assertContains(self.client.get(link), "This invitation is for dana@example.org")
        response = self.client.post(link)
        self.assertEqual(response.status_code, 403)
        self.assertFalse(Membership.objects.filter(org=self.org, user=self.charlie).exists())

    def test_inviting_an_existing_member_is_a_form_error(self):
        response = self.invite(email="BOB@example.org")
        self.assertEqual(response.status_code, 400)
        self.assertIn("email", response.context["invite_form"].errors)
        self.assertContains(response, "Email: bob@example.org is already a member", status_code=400)
        self.assertFalse(Invitation.objects.exists())
        self.assertEqual(mail.outbox, [])

    def test_invalid_email_and_role_name_their_fields(self):
        self.client.force_login(self.alice)
        response = self.client.post("/o/alice-org/settings/members/", {"email": "nope", "role": "emperor"})
        self.assertEqual(set(response.context["invite_form"].errors), {"email", "role"})

    def test_admin_cannot_invite_an_owner(self):
        admin = self.make_admin()
        self.client.force_login(admin)
        response = self.client.post("/o/alice-org/settings/members/", {"email": "d@example.org", "role": "owner"})
        self.assertEqual(response.status_code, 400)
        self.assertIn("role", response.context["invite_form"].errors)
        response = self.client.post("/o/alice-org/settings/members/", {"email": "d@example.org", "role": "admin"})
        self.assertEqual(response.status_code, 302)
