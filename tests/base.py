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
