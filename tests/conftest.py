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


@pytest.fixture(autouse=True, scope="session")
def _own_journal_directory(tmp_path_factory):
    """Log journals of this run's processes (the test process and the daphne processes tests
    start, which copy os.environ) in a directory of the run's own: a journal left by a process
    of another run is never recovered into this run's database."""
    import os

    from django.conf import settings

    directory = str(tmp_path_factory.mktemp("journal"))
    previous = os.environ.get("LOG_JOURNAL_DIR")
    os.environ["LOG_JOURNAL_DIR"] = directory
    if settings.configured:  # tests/test_mock_provider.py also runs without Django (-p no:django)
        settings.LOG_JOURNAL_DIR = directory
    yield
    if previous is None:
        os.environ.pop("LOG_JOURNAL_DIR", None)
    else:
        os.environ["LOG_JOURNAL_DIR"] = previous
