"""Helpers shared by the orgs tests: a client with a user agent, real TOTP tokens, audit checks."""

from django.test import Client, override_settings
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from orgs.models import AuditEvent, Membership, Role, User
from tests.base import PASSWORD, BaseTestCase, make_personas

USER_AGENT = "orgs-tests/1.0"


def token_for(device: TOTPDevice) -> str:
    """The current TOTP code, computed from the device key like an authenticator app would."""
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=device.drift):0{device.digits}d}"


def wrong_token_for(device: TOTPDevice) -> str:
    right = int(token_for(device))
    return f"{(right + 500000) % 1000000:06d}"


FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


class OrgsTestCase(BaseTestCase):
    @classmethod
    def setUpTestData(cls):
        # setUpTestData runs before the conftest's fast-hasher fixture: hash the personas' passwords
        # with the fast hasher too, or every login would be slow (and fail against it).
        with override_settings(PASSWORD_HASHERS=FAST_HASHERS):
            make_personas(cls)

    def setUp(self):
        self.client = Client(headers={"user-agent": USER_AGENT})

    # --- people -------------------------------------------------------------------
    def add_member(self, email: str, role: str, org=None) -> User:
        user = User.objects.create_user(email, PASSWORD)
        Membership.objects.create(org=org or self.org, user=user, role=role)
        return user

    def make_viewer(self) -> User:
        return self.add_member("vera@example.org", Role.VIEWER)

    def make_admin(self) -> User:
        return self.add_member("adam@example.org", Role.ADMIN)

    # --- 2FA -----------------------------------------------------------------------
    def give_totp(self, user: User) -> TOTPDevice:
        return TOTPDevice.objects.create(user=user, name="phone", confirmed=True)

    def give_backup_codes(self, user: User, codes=("backup1a", "backup2b")) -> StaticDevice:
        device = StaticDevice.objects.create(user=user, name="backup codes", confirmed=True)
        for code in codes:
            StaticToken.objects.create(device=device, token=code)
        return device

    def login_with_totp(self, user: User, device: TOTPDevice, client=None):
        client = client or self.client
        response = client.post("/login/", {"username": user.email, "password": PASSWORD})
        assert response.status_code == 302 and response["Location"] == "/login/2fa/", response
        return client.post("/login/2fa/", {"token": token_for(device)})

    # --- audit ---------------------------------------------------------------------
    def assert_audited(self, action: str, **filters) -> AuditEvent:
        event = AuditEvent.objects.filter(action=action, **filters).order_by("-id").first()
        assert event is not None, f"no {action!r} audit event matching {filters}; have " + repr(
            list(AuditEvent.objects.values_list("action", flat=True))
        )
        assert event.ip == "127.0.0.1", event.ip
        assert event.user_agent == USER_AGENT, event.user_agent
        return event

    def assert_no_secret_in_audit(self, secret: str) -> None:
        for event in AuditEvent.objects.all():
            assert secret not in repr(event.changes), (event.action, event.changes)
