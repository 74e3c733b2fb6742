"""Schemathesis fuzzes every query, annotation, session, user and prompt operation of the Helicone-compatible
API (analytics/helicone_api.py) with a read/write key of an org that has logs: whatever the filter tree,
sort or body, no answer may be a server error (bad input is a 400 naming the problem).

The logging endpoints are left out: they journal logs for the writer of the process serving them, which
a test client in the test's transaction is not (tests/analytics/test_helicone_log.py drives them).
Generation is deterministic and bounded; requests go through Django's WSGI handler in process.
"""

import zlib

import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from analytics.helicone_api import helicone

MAX_EXAMPLES = 60

CONFIG = SchemathesisConfig.from_dict({
    # The key is ours (sent by the test), not generated: every case is authenticated.
    "generation": {"deterministic": True, "max-examples": MAX_EXAMPLES, "with-security-parameters": False},
    # Helicone's routes declare no answer schemas (their bodies are Helicone's envelopes): only server errors
    # are checked.
    "checks": {"enabled": False, "not_a_server_error": {"enabled": True}},
})
schema = schemathesis.openapi.from_dict(helicone.get_openapi_schema(), config=CONFIG)
schema.app = get_wsgi_application()


@schema.exclude(path_regex="/log$").parametrize()
@settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_input_is_a_server_error(case, org_key):
    # Every other valid request about one log targets a real one, so the paths past the lookup get fuzzed too.
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    if positive and "request_id" in (case.path_parameters or {}):
        digest = zlib.crc32(repr((case.path_parameters, case.body, case.query)).encode())
        if digest % 2 == 0:
            case.path_parameters["request_id"] = org_key.log_ids[digest % len(org_key.log_ids)]
    case.call_and_validate(headers={"Authorization": f"Bearer {org_key.raw}"})
