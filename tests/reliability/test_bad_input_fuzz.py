"""Hypothesis fuzzing of the Helicone header parser and of the request API's query parameters.

The parser (formats/headers.py) may only ever raise HeaderError; what it accepts is typed
and within its documented bounds, and valid values round-trip. The request and metrics API
answer any query string with 200, 400 or 422, never a 500. Examples are derandomized and
no example database is kept, so CI runs the same cases every time.
"""

from __future__ import annotations

import string
import uuid
from decimal import Decimal

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase as HypothesisTestCase

from formats import headers as h
from orgs.models import ApiKey, Organization
from tests.analytics.helpers import create_log

FUZZ = settings(max_examples=300, derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
API_FUZZ = settings(max_examples=120, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

KNOWN = sorted({*h._HANDLERS, *h._DEFERRED})
# Values as the gateway receives them: bytes decoded as latin-1 (so code points up to 0xFF),
# plus arbitrary text for callers that pass str directly.
latin1 = st.text(st.characters(max_codepoint=0xFF), max_size=60)
anything = st.text(max_size=60)
json_ish = st.recursive(st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats() | st.text(max_size=8),
                        lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.sampled_from(["model", "target-url", "headers", "onCodes",
                                                          "bodyKeyOverride", "from", "to", "x"]), inner, max_size=4),
                        max_leaves=10).map(__import__("json").dumps)
policy_text = st.lists(st.sampled_from(["10", "0", "1;w=60", "5;w=1;u=user", ";w=", "3;w=9;s=Feature", "u=token",
                                        "2;w=3600;u=cents", "7;w=5;u=org;s=x", "w=5", "", " ", "1;w=60;w=6",
                                        "0.5;w=60;u=cents", "0.125;w=1;u=cents;s=user", "1.5;w=60",
                                        "0.0000001;w=60;u=cents", "2.50;w=9;u=cents"]),
                       min_size=1, max_size=4).map(",".join)
header_value = st.one_of(latin1, anything, json_ish, policy_text, st.sampled_from(
    ["true", "false", "1", "0", "yes", "no", "Bearer sk-helicone-x", "Bearer ", str(uuid.UUID(int=1)),
     "http://example.com/", "ftp://x", "1000", "1001", "10.5", "nan", "inf", "-1", "600000"]))
header_name = st.one_of(st.sampled_from(KNOWN),
                        st.text(string.ascii_letters + string.digits + "-_.!", min_size=1, max_size=12)
                        .map(lambda s: h.PROPERTY_PREFIX + s.lower()),
                        st.sampled_from(["helicone-unknown-thing", "cache-control", "content-type"]))
header_dicts = st.dictionaries(header_name, header_value, max_size=8)


def assert_typed(opts: h.GatewayOptions) -> None:
    for name, limit in (("user_id", 255), ("session_id", 255), ("session_path", 500), ("session_name", 255),
                        ("request_name", 255), ("model_override", 200), ("prompt_id", 100),
                        ("prompt_environment", 100), ("cache_seed", 255)):
        value = getattr(opts, name)
        assert isinstance(value, str) and len(value) <= limit, (name, value)
        assert not h._CONTROL.search(value), (name, value)
    assert opts.request_id is None or str(uuid.UUID(opts.request_id)) == opts.request_id
    assert len(opts.properties) <= h.MAX_PROPERTIES
    for key, value in opts.properties.items():
        assert h._PROPERTY_NAME.match(key) and isinstance(value, str) and len(value) <= h.MAX_VALUE_LENGTH
        assert not h._CONTROL.search(value)
    for url in (opts.target_url, opts.openai_api_base):
        assert url == "" or url.lower().startswith(("http://", "https://"))
    assert opts.prompt_variables is None or isinstance(opts.prompt_variables, dict)
    assert opts.prompt_version is None or (type(opts.prompt_version) is int and opts.prompt_version >= 1)
    assert type(opts.cache_bucket_size) is int and 1 <= opts.cache_bucket_size <= h.CACHE_MAX_BUCKET
    assert type(opts.cache_seconds) is int and 1 <= opts.cache_seconds <= h.CACHE_MAX_SECONDS
    assert all(isinstance(k, str) and k for k in opts.cache_ignore_keys)
    assert len(opts.rate_limits) <= h.MAX_POLICIES
    for policy in opts.rate_limits:
        # Whole numbers are ints; only u=cents has fractions, exact Decimals of at most six places.
        assert type(policy.quota) is int or (policy.unit == "cents" and isinstance(policy.quota, Decimal)
                                             and policy.quota.as_tuple().exponent >= -6)
        assert policy.quota > 0
        assert type(policy.window) is int and 1 <= policy.window <= h.CACHE_MAX_SECONDS
        assert policy.unit in h.RATE_UNITS
        # The canonical text (sent back in Helicone-RateLimit-Policy) parses to the same policy.
        assert h.parse_policies(policy.text) == (policy,)
        assert policy.segment in ("", "user") or policy.segment in opts.properties
    if opts.retry is not None:
        r = opts.retry
        assert 0 <= r.num <= h.RETRY_MAX_NUM and 1 <= r.factor <= 10 and 0 <= r.min_timeout_ms <= r.max_timeout_ms
    assert len(opts.fallbacks) <= h.MAX_FALLBACKS
    for fallback in opts.fallbacks:
        assert isinstance(fallback.body_override, dict)
        for name, value in fallback.headers:
            assert not h._CONTROL.search(name + value) and not name.startswith("helicone-")
            assert name not in ("host", "content-length")
        assert all(100 <= low <= high <= 599 for low, high in fallback.on_codes)


@FUZZ
@given(header_dicts)
@example({"helicone-retry-factor": "nan", "helicone-retry-enabled": "true"})
@example({"helicone-property-x": "\x85"})  # a latin-1 byte that is not UTF-8 by itself
@example({"helicone-fallbacks": '[{"onCodes": [true]}]'})
@example({"helicone-ratelimit-policy": "1;w=1;s=user"})
@example({"helicone-fallbacks": "[" * 5000})
@example({"helicone-prompt-variables": '{"a":' * 3000})
def test_the_parser_only_raises_header_error_and_what_it_accepts_is_typed(headers):
    try:
        opts = h.parse_options(headers)
    except h.HeaderError as error:
        assert error.header.lower().startswith("helicone-") and error.message
        return
    assert_typed(opts)


# --- Valid values round-trip --------------------------------------------------------------------------

plain_text = st.text(st.characters(blacklist_categories=["Cc", "Cs"]), max_size=50)


def as_received(text: str) -> str:
    """What the gateway gets for a UTF-8 header value: its bytes decoded as latin-1."""
    return text.encode("utf-8").decode("latin-1")


@FUZZ
@given(user=plain_text, session=plain_text, prop_name=st.from_regex(r"[A-Za-z0-9_.]{1,20}", fullmatch=True),
       prop_value=plain_text, request_id=st.uuids(), version=st.integers(1, 10**6),
       bucket=st.integers(1, h.CACHE_MAX_BUCKET), flag=st.sampled_from(["true", "TRUE", " yes", "1", "false", "no"]))
def test_valid_values_round_trip_as_typed_values(user, session, prop_name, prop_value, request_id, version, bucket,
                                                 flag):
    opts = h.parse_options({
        "helicone-user-id": as_received(user),
        "helicone-session-id": as_received(session),
        h.PROPERTY_PREFIX + prop_name.lower(): as_received(prop_value),
        "helicone-request-id": str(request_id).upper(),
        "helicone-prompt-version": str(version),
        "helicone-cache-bucket-max-size": f" {bucket} ",
        "helicone-omit-request": flag,
    })
    assert opts.user_id == user.strip() and opts.session_id == session.strip()
    assert list(opts.properties.values()) == [prop_value.strip()]
    assert opts.request_id == str(request_id)
    assert (opts.prompt_version, opts.cache_bucket_size) == (version, bucket)
    assert opts.omit_request is (flag.strip().lower() in ("true", "yes", "1"))


@FUZZ
@given(st.lists(st.tuples(st.one_of(st.integers(1, 10**9),
                                    st.decimals(Decimal("0.000001"), Decimal(10**9), places=6)),
                          st.integers(1, h.CACHE_MAX_SECONDS),
                          st.sampled_from(h.RATE_UNITS), st.sampled_from(["", "user", "Feature"])),
                min_size=1, max_size=h.MAX_POLICIES).map(
    # Fractions only for u=cents; a whole Decimal is written "3.000000" and read as 3.
    lambda policies: [(q if u == "cents" or isinstance(q, int) else max(1, int(q)), w, u, s)
                      for q, w, u, s in policies]))
def test_rate_limit_policies_round_trip(policies):
    text = ",".join(f"{q};w={w};u={u}" + (f";s={s}" if s else "") for q, w, u, s in policies)
    parsed = h.parse_options({"helicone-ratelimit-policy": text, "helicone-user-id": "u",
                              "helicone-property-feature": "f"}).rate_limits
    expected = tuple(dict.fromkeys(h.RatePolicy(q, w, u, s) for q, w, u, s in policies))
    assert parsed == expected
    assert h.parse_policies(",".join(p.text for p in parsed)) == parsed


# --- The request API ------------------------------------------------------------------------------------

PARAMS = ["user_id", "session_id", "model", "provider", "status", "cache_hit", "request_name", "prompt_id",
          "prompt_version", "created_after", "created_before", "limit", "offset", "property.Feature", "property.",
          "property.a__b", "group_by", "interval", "unknown"]
param_value = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", "0", "-1", "1e309", "999999999999999999999", "true", "null", "2026-02-30",
                     "2026-01-01T00:00:00Z", "2026-01-01T25:00:00", "0001-01-01", "9999-12-31T23:59:59+14:00",
                     "hour", "day", "minute", "model", "user", "property", "property.Feature", "\x00", "%00"]),
)
query = st.dictionaries(st.sampled_from(PARAMS), param_value, max_size=5)


class RequestApiFuzzTests(HypothesisTestCase):
    @classmethod
    def setUpTestData(cls):
        org = Organization.objects.create(name="Fuzz", slug="fuzz")
        _, raw = ApiKey.generate(org, "fuzz", ["read"])
        cls.auth = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
        create_log(org=org, provider="openai", model="gpt-4o-mini", status=200, user_id="u",
                                  properties={"Feature": "chat"})

    @API_FUZZ
    @given(path=st.sampled_from(["/api/v1/requests", "/api/v1/metrics/summary", "/api/v1/metrics/timeseries"]),
           params=query)
    @example(path="/api/v1/requests", params={"user_id": "\x00"})
    @example(path="/api/v1/requests", params={"property.Feature": "\x00"})
    @example(path="/api/v1/metrics/summary", params={"group_by": "property.\x00"})
    def test_query_parameters_never_cause_a_500(self, path, params):
        response = self.client.get(path, params, **self.auth)
        assert response.status_code in (200, 400, 422), (response.status_code, params, response.content[:300])
        if response.status_code != 200:
            assert response.json()["detail"], response.content
