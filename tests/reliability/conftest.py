from types import SimpleNamespace

import pytest
from django.core import signals
from django.db import close_old_connections

from orgs.models import ApiKey
from tests.analytics.helpers import make_logs
from tests.base import make_personas


@pytest.fixture
def org_key(db):
    """For the API fuzzers: a read/write/proxy key of an org with 20 logs (and another org with 5),
    and the logs' ids."""
    # Django's test client does the same: a request must not close the test's connection.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    ns = SimpleNamespace()
    make_personas(ns)
    logs = make_logs(ns.org, n=20)
    make_logs(ns.other_org, n=5)
    _key, raw = ApiKey.generate(ns.org, "fuzz", ["proxy", "read", "write"])
    yield SimpleNamespace(raw=raw, log_ids=[str(log.id) for log in logs], org=ns.org)
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)
