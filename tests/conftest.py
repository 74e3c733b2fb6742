import pytest


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _own_login_throttle_counters(monkeypatch):
    """Each test counts failed logins apart: every test client logs in from 127.0.0.1, and the
    counters outlive a test in the cache (Redis keeps them across runs)."""
    import uuid

    from orgs import throttle

    monkeypatch.setattr(throttle, "_PREFIX", f"login-throttle-test-{uuid.uuid4().hex[:12]}")
