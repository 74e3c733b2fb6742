"""Shared test fixtures: three personas and service checks.

alice owns "alice-org", bob is a member of it, charlie is an outsider who owns
"charlie-org". Every tenant-scoped page or API is tested with charlie: 404.
"""

import os
import socket

import pytest
from django.test import TestCase

from orgs.models import ApiKey, Membership, Organization, Role, User

PASSWORD = "correct horse battery staple"


def make_personas(ns) -> None:
    ns.alice = User.objects.create_user("alice@example.org", PASSWORD)
    ns.bob = User.objects.create_user("bob@example.org", PASSWORD)
    ns.charlie = User.objects.create_user("charlie@example.org", PASSWORD)
    ns.org = Organization.objects.create(name="Alice Org", slug="alice-org")
    ns.other_org = Organization.objects.create(name="Charlie Org", slug="charlie-org")
    Membership.objects.create(org=ns.org, user=ns.alice, role=Role.OWNER)
    ns.bob_membership = Membership.objects.create(org=ns.org, user=ns.bob, role=Role.MEMBER)
    Membership.objects.create(org=ns.other_org, user=ns.charlie, role=Role.OWNER)


class BaseTestCase(TestCase):
    @classmethod
    def setUpTestData(cls):
        make_personas(cls)

    def make_key(self, org=None, scopes=("proxy", "read", "write")) -> tuple[ApiKey, str]:
        return ApiKey.generate(org or self.org, "test key", list(scopes), created_by=self.alice)

    def login_verified_staff(self) -> User:
        """A superuser signed in with a confirmed TOTP device, as the operators' admin requires."""
        from django_otp.plugins.otp_totp.models import TOTPDevice

        staff = User.objects.create_superuser("ops@example.org", "pw-ops-123456")
        device = TOTPDevice.objects.create(user=staff, name="ops", confirmed=True)
        self.client.force_login(staff)
        session = self.client.session
        session["otp_device_id"] = device.persistent_id
        session.save()
        return staff


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip when a service is down, unless REQUIRE_SERVICES=1 (CI), where that is a failure."""
    if _reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(message + " and REQUIRE_SERVICES=1")
    pytest.skip(message)


def redis_url() -> str:
    """The Redis to test against: REDIS_URL, or the local default."""
    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/15"
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    require_service("Redis", parts.hostname or "127.0.0.1", parts.port or 6379)
    return url


class ClickHouseTestCase(BaseTestCase):
    """A test class whose logs go to a real ClickHouse server (tests.servers), in a database of the
    class's own (ids of a rolled-back SQLite test come again), and whose reads come from it.

    `clickhouse_only = False` (dual write, CLICKHOUSE_ONLY=0): SQL keeps a full copy too, so a test
    can compare ClickHouse's answers with the SQL store's. `clickhouse_only = True` is what
    CLICKHOUSE_URL alone means: ClickHouse is the only log store. With `clickhouse_empty_each_test`,
    each test starts from empty tables (the SQL database is rolled back after each test; ClickHouse
    is not)."""

    clickhouse_only = False
    clickhouse_empty_each_test = False

    def setUp(self):
        super().setUp()
        if self.clickhouse_empty_each_test:
            from analytics.clickhouse import client, schema

            for table in ("request_logs", "log_rollups", "log_rollups_daily", "request_ids", "session_totals"):
                client().command(f"TRUNCATE TABLE {table}")
            schema.fill_sessions()  # no log to count: session_totals is whole again

    @classmethod
    def setUpClass(cls):
        import uuid

        from django.test import override_settings

        from analytics.clickhouse import client, schema
        from tests.servers import clickhouse_server

        cls.clickhouse_database = f"test_{uuid.uuid4().hex[:12]}"
        cls._clickhouse_settings = override_settings(
            CLICKHOUSE_URL=clickhouse_server().url(cls.clickhouse_database), CLICKHOUSE_ONLY=cls.clickhouse_only)
        cls._clickhouse_settings.enable()
        schema.migrate()
        client()  # noqa: B018  made now, while the URL is the class's
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        from analytics.clickhouse import client

        try:
            super().tearDownClass()
        finally:
            client(database=False).command(f"DROP DATABASE IF EXISTS `{cls.clickhouse_database}`")
            cls._clickhouse_settings.disable()
