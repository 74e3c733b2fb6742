"""Login throttling (per account and per address, audited, on /login/, its 2FA step and the admin)
and session expiry. The counters live in the Django cache: local memory embedded, Redis when
REDIS_URL is set, so this module runs against both."""

import subprocess
import sys
import time
import uuid
from datetime import timedelta
from unittest import mock

from django.conf import settings
from django.contrib.sessions.models import Session
from django.test import Client, override_settings
from django.utils import timezone

from orgs.models import AuditEvent, User
from tests.base import PASSWORD
from tests.orgs.helpers import USER_AGENT, OrgsTestCase, token_for, wrong_token_for
from tests.servers import ROOT


def client_from(ip: str) -> Client:
    return Client(REMOTE_ADDR=ip, headers={"user-agent": USER_AGENT})


def unique_ip() -> str:
    # Counters outlive a test in Redis: every test uses addresses and accounts of its own.
    n = uuid.uuid4().int
    return f"10.{n % 250}.{(n >> 8) % 250}.{(n >> 16) % 250 + 1}"


@override_settings(LOGIN_MAX_FAILURES=3, LOGIN_LOCKOUT_SECONDS=600)
class LoginThrottleTests(OrgsTestCase):
    def setUp(self):
        super().setUp()
        self.email = f"user-{uuid.uuid4().hex[:8]}@example.org"
        self.user = User.objects.create_user(self.email, PASSWORD)

    def login(self, client: Client, password: str, email: str | None = None):
        return client.post("/login/", {"username": email or self.email, "password": password})

    def test_the_account_is_locked_after_max_failures_even_from_another_address(self):
        attacker = client_from(unique_ip())
        for attempt in range(1, 4):
            response = self.login(attacker, f"guess-{attempt}")
        self.assertEqual(response.status_code, 429)
        self.assertContains(response, "Too many failed logins for this account", status_code=429)
        self.assertContains(response, "Try again in 10 minutes", status_code=429)

        # The right password, from elsewhere, is refused too while the lockout lasts, and says why.
        owner = client_from(unique_ip())
        response = self.login(owner, PASSWORD)
        self.assertEqual(response.status_code, 429)
        self.assertContains(response, "Too many failed logins", status_code=429)
        self.assertNotIn("_auth_user_id", owner.session)

        locked = AuditEvent.objects.get(action="user.login_locked_out", changes__scope="account")
        self.assertEqual((locked.changes["email"], locked.changes["failures"], locked.changes["seconds"]),
                         (self.email, 3, 600))
        failures = AuditEvent.objects.filter(action="user.login_failed", changes__email=self.email)
        self.assertEqual(failures.count(), 4)  # three wrong passwords and the refused right one
        self.assertEqual(failures.filter(changes__locked_out="account").count(), 2)
        for event in failures:
            self.assertNotIn("guess", repr(event.changes))
            self.assertNotIn(PASSWORD, repr(event.changes))

    def test_the_lockout_ends_when_the_window_has_passed(self):
        client = client_from(unique_ip())
        for attempt in range(3):
            self.login(client, f"guess-{attempt}")
        self.assertEqual(self.login(client_from(unique_ip()), PASSWORD).status_code, 429)
        later = time.time() + settings.LOGIN_LOCKOUT_SECONDS + 1
        with mock.patch("orgs.throttle.time.time", return_value=later):
            response = self.login(client_from(unique_ip()), PASSWORD)
        self.assertRedirects(response, "/orgs/", fetch_redirect_response=False)

    def test_an_address_guessing_many_accounts_is_locked(self):
        ip = unique_ip()
        guesser = client_from(ip)
        for n in range(3):
            self.login(guesser, "guess", email=f"nobody-{n}-{uuid.uuid4().hex[:6]}@example.org")
        response = self.login(guesser, PASSWORD)  # a real account, the right password, the same address
        self.assertContains(response, "from your network address", status_code=429)
        self.assertTrue(AuditEvent.objects.filter(action="user.login_locked_out", changes__scope="ip",
                                                  ip=ip).exists())
        # The account itself is not locked: from elsewhere it logs in.
        response = self.login(client_from(unique_ip()), PASSWORD)
        self.assertRedirects(response, "/orgs/", fetch_redirect_response=False)

    def test_a_successful_login_forgets_the_accounts_failures(self):
        for attempt in range(2):
            self.login(client_from(unique_ip()), "guess")
        self.assertEqual(self.login(client_from(unique_ip()), PASSWORD).status_code, 302)
        for attempt in range(2):
            self.assertEqual(self.login(client_from(unique_ip()), "guess").status_code, 200)
        self.assertEqual(self.login(client_from(unique_ip()), PASSWORD).status_code, 302)
        self.assertFalse(AuditEvent.objects.filter(action="user.login_locked_out").exists())

    def test_wrong_2fa_codes_count_and_lock_the_token_step(self):
        device = self.give_totp(self.user)
        client = client_from(unique_ip())
        self.assertEqual(self.login(client, PASSWORD).status_code, 302)
        for attempt in range(3):
            response = client.post("/login/2fa/", {"token": wrong_token_for(device)})
        self.assertContains(response, "Too many failed logins", status_code=429)
        response = client.post("/login/2fa/", {"token": token_for(device)})
        self.assertEqual(response.status_code, 429)
        self.assertNotIn("_auth_user_id", client.session)
        event = AuditEvent.objects.get(action="user.login_locked_out", changes__scope="account")
        self.assertEqual(event.changes["email"], self.email)
        self.assertEqual(AuditEvent.objects.filter(action="user.login_failed", changes__step="token",
                                                   changes__locked_out="account").count(), 2)

    def test_the_admin_login_is_throttled_and_audited(self):
        self.user.is_staff = True
        self.user.save(update_fields=["is_staff"])
        device = self.give_totp(self.user)
        client = client_from(unique_ip())
        for attempt in range(3):
            response = client.post("/admin/login/", {"username": self.email, "password": f"guess-{attempt}",
                                                     "otp_token": token_for(device)})
        self.assertContains(response, "Too many failed logins", status_code=429)
        response = client.post("/admin/login/", {"username": self.email, "password": PASSWORD,
                                                 "otp_token": token_for(device)})
        self.assertEqual(response.status_code, 429)
        self.assertNotIn("_auth_user_id", client.session)
        self.assertTrue(AuditEvent.objects.filter(action="user.login_locked_out", changes__email=self.email).exists())
        self.assertEqual(AuditEvent.objects.filter(action="user.login_failed", changes__via="admin",
                                                   changes__locked_out="account").count(), 2)


class SessionExpiryTests(OrgsTestCase):
    def test_an_expired_session_is_sent_to_login(self):
        self.assertEqual(self.client.post("/login/", {"username": "alice@example.org", "password": PASSWORD})
                         .status_code, 302)
        self.assertEqual(self.client.get("/o/alice-org/").status_code, 200)
        Session.objects.filter(session_key=self.client.session.session_key).update(
            expire_date=timezone.now() - timedelta(seconds=1))
        response = self.client.get("/o/alice-org/")
        self.assertRedirects(response, "/login/?next=/o/alice-org/", fetch_redirect_response=False)

    @override_settings(SESSION_COOKIE_AGE=3600)
    def test_the_session_cookie_and_the_stored_session_last_session_cookie_age(self):
        response = self.client.post("/login/", {"username": "alice@example.org", "password": PASSWORD})
        cookie = response.cookies[settings.SESSION_COOKIE_NAME]
        self.assertEqual(int(cookie["max-age"]), 3600)
        self.assertTrue(cookie["httponly"])
        expires = Session.objects.get(session_key=cookie.value).expire_date
        self.assertAlmostEqual((expires - timezone.now()).total_seconds(), 3600, delta=60)

    def test_session_cookie_age_and_throttle_limits_come_from_the_environment(self):
        code = ("from django.conf import settings as s; "
                "print(s.SESSION_COOKIE_AGE, s.LOGIN_MAX_FAILURES, s.LOGIN_LOCKOUT_SECONDS, s.SECURE_HSTS_SECONDS)")
        env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "heliconeproj.settings", "VAR_DIR": str(ROOT / "var"),
               "SESSION_COOKIE_AGE": "1800", "LOGIN_MAX_FAILURES": "7", "LOGIN_LOCKOUT_SECONDS": "60",
               "SECURE_HSTS_SECONDS": "31536000"}
        out = subprocess.run([sys.executable, "-c", "import django; django.setup(); " + code], cwd=ROOT, env=env,
                             capture_output=True, text=True, check=True).stdout.split()
        self.assertEqual(out, ["1800", "7", "60", "31536000"])
