import time

import pytest

from analytics.models import RequestLog
from orgs.models import ApiKey, Membership, Organization, Role, User
from tests.servers import Daphne, unique_stream_key


@pytest.fixture(scope="session")
def mock_provider():
    from bench.mock_provider import MockProvider

    provider = MockProvider()
    provider.start()
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def gateway(django_db_setup, django_db_blocker, mock_provider):
    """One daphne process serving the project, its upstreams pointed at the mock."""
    server = Daphne(
        UPSTREAM_OPENAI_URL=mock_provider.url,
        UPSTREAM_ANTHROPIC_URL=mock_provider.url,
        UPSTREAM_GROQ_URL=mock_provider.url,
        LOG_STREAM_KEY=unique_stream_key(),
        LOG_SPOOL_DIR=f"var/spool-test-{time.time_ns()}",
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def tenant(transactional_db):
    """An org with a proxy key, and an outsider org with its own key."""

    class Tenant:
        pass

    t = Tenant()
    t.user = User.objects.create_user("owner@example.org", "pw-123456789")
    t.org = Organization.objects.create(name="Acme", slug="acme")
    Membership.objects.create(org=t.org, user=t.user, role=Role.OWNER)
    t.key, t.raw_key = ApiKey.generate(t.org, "gateway", ["proxy", "read", "write"], created_by=t.user)
    t.other_org = Organization.objects.create(name="Other", slug="other")
    t.other_key, t.other_raw_key = ApiKey.generate(t.other_org, "other", ["proxy", "read"])
    yield t
    _settle_logs()


def _settle_logs(quiet: float = 0.3, timeout: float = 5.0) -> None:
    """Wait until the gateways' log writers are idle: the flush after a test racing an
    insert of a late log is a deadlock on PostgreSQL (TRUNCATE against INSERT)."""
    deadline = time.monotonic() + timeout
    last, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = RequestLog.objects.count()
        if count != last:
            last, quiet_since = count, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet:
            return
        time.sleep(0.05)


def wait_for_log(log_id: str, timeout: float = 10.0) -> RequestLog:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = RequestLog.objects.filter(id=log_id).first()
        if log is not None:
            return log
        time.sleep(0.05)
    raise AssertionError(f"request log {log_id} was not written within {timeout}s")
