"""Schemathesis fuzzes every operation of the /api/v1 OpenAPI schema with a read/write key of an
org that has logs: no answer may be a 500, undocumented, or outside its declared schema.

Generation is deterministic (derandomized) and bounded, so a run takes the same inputs every time.
Requests go through Django's WSGI handler in process, inside the test's transaction.
"""

import zlib

import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from analytics.api import api

MAX_EXAMPLES = 25

CONFIG = SchemathesisConfig.from_dict({
    # The key is ours (sent by the test), not generated: every case is authenticated.
    "generation": {"deterministic": True, "max-examples": MAX_EXAMPLES, "with-security-parameters": False},
    "operations": [{
        # A schema-valid window can still hold more than metrics.MAX_BUCKETS buckets: that is a
        # documented 400 naming the problem, not a rejected valid request.
        "include-path": "/api/v1/metrics/timeseries",
        "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400"]}},
    }, {
        # The manual log's body is Helicone's, loosely typed (`json` or `textBody`, times as objects, numbers
        # or strings): its parser (formats/helicone_log.py) names what it refuses in a documented 400.
        "include-path": "/api/v1/log",
        "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400"]}},
    }],
})
schema = schemathesis.openapi.from_dict(api.get_openapi_schema(), config=CONFIG)
schema.app = get_wsgi_application()


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_api_answers_as_documented(case, org_key):
    # Every other valid request about one log targets a real one, so the 200 paths get fuzzed too.
    # (crc32, not hash(): str hashes change with every process.)
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    if positive and "request_id" in (case.path_parameters or {}):
        digest = zlib.crc32(repr((case.path_parameters, case.body, case.query)).encode())
        if digest % 2 == 0:
            case.path_parameters["request_id"] = org_key.log_ids[digest % len(org_key.log_ids)]
    case.call_and_validate(headers={"Authorization": f"Bearer {org_key.raw}"})
