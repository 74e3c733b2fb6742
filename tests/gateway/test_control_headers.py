"""The cache, rate-limit, retry and fallback headers: parsed into GatewayOptions, refused by name.

The same through a real daphne, where Helicone's behaviour is the reference: test_helicone_headers.py."""

from decimal import Decimal

import pytest

from formats import headers as h
from formats.headers import (
    CACHE_DEFAULT_SECONDS,
    CACHE_MAX_SECONDS,
    Fallback,
    GatewayOptions,
    HeaderError,
    RatePolicy,
    RetryOptions,
    parse_options,
    parse_policies,
    policy_text,
)


def refused(headers: dict[str, str]) -> HeaderError:
    with pytest.raises(HeaderError) as info:
        parse_options(headers)
    return info.value


def test_no_control_headers_means_no_features():
    opts = parse_options({"helicone-auth": "Bearer sk-helicone-x", "content-type": "application/json"})
    assert not (opts.cache_read or opts.cache_write or opts.rate_limits or opts.retry or opts.fallbacks)


def test_cache_enabled_save_and_read():
    assert (lambda o: (o.cache_read, o.cache_write))(parse_options({"helicone-cache-enabled": "true"})) == (True, True)
    assert (lambda o: (o.cache_read, o.cache_write))(parse_options({"helicone-cache-save": "true"})) == (False, True)
    assert (lambda o: (o.cache_read, o.cache_write))(parse_options({"helicone-cache-read": "true"})) == (True, False)
    assert not parse_options({"helicone-cache-enabled": "false"}).cache_write


def test_cache_lifetime_from_cache_control():
    assert parse_options({"helicone-cache-enabled": "1"}).cache_seconds == CACHE_DEFAULT_SECONDS
    assert parse_options({"helicone-cache-enabled": "1", "cache-control": "max-age=60"}).cache_seconds == 60
    both = {"helicone-cache-enabled": "1", "cache-control": "public, max-age=60, s-maxage=120"}
    assert parse_options(both).cache_seconds == 120
    huge = {"helicone-cache-enabled": "1", "cache-control": "max-age=99999999999"}
    assert parse_options(huge).cache_seconds == CACHE_MAX_SECONDS


def test_cache_bucket_ignore_keys_and_seed():
    opts = parse_options({"helicone-cache-enabled": "1", "helicone-cache-bucket-max-size": "5",
                          "helicone-cache-ignore-keys": "user, metadata,,user", "helicone-cache-seed": "s1"})
    assert (opts.cache_bucket_size, opts.cache_ignore_keys, opts.cache_seed) == (5, ("user", "metadata"), "s1")
    for bad in ("0", "1001", "x", "-1"):
        assert refused({"helicone-cache-bucket-max-size": bad}).header == "Helicone-Cache-Bucket-Max-Size"
    assert refused({"helicone-cache-enabled": "maybe"}).header == "Helicone-Cache-Enabled"


def test_rate_limit_policies_and_shorthands():
    assert parse_policies("100;w=3600") == (RatePolicy(100, 3600),)
    assert parse_policies("100;w=3600;u=user") == (RatePolicy(100, 3600, "request", "user"),)
    assert parse_policies("100;w=3600;u=org") == (RatePolicy(100, 3600),)
    assert parse_policies("100;w=3600;u=request") == (RatePolicy(100, 3600),)
    assert parse_policies("5000;w=60;u=token;s=feature, 50;w=86400;u=cents") == (
        RatePolicy(5000, 60, "token", "Feature"), RatePolicy(50, 86400, "cents"))
    assert RatePolicy(10, 60, "token", "user").text == "10;w=60;u=token;s=user"


def test_fractional_quotas_in_cents():
    assert parse_policies("0.5;w=60;u=cents, 0.125;w=3600;u=cents") == (
        RatePolicy(Decimal("0.5"), 60, "cents"), RatePolicy(Decimal("0.125"), 3600, "cents"))
    # A whole number stays an int, however it is written; the text keeps a fraction readable.
    assert parse_policies("2.000;w=60;u=cents") == (RatePolicy(2, 60, "cents"),)
    assert type(parse_policies("2.0;w=60")[0].quota) is int
    assert [p.text for p in parse_policies("0.50;w=60;u=cents, 0.000001;w=1;u=cents;s=user")] == [
        "0.5;w=60;u=cents", "0.000001;w=1;u=cents;s=user"]
    # The org-wide setting takes the same grammar and is stored in the same normal form.
    assert policy_text("0.250;w=3600;u=cents") == "0.25;w=3600;u=cents"


@pytest.mark.parametrize("policy", [
    "abc", "0;w=60", "10", "10;w=0", "10;w=x", "10;w=60;u=bytes", "10;w=60;x=1", "10;w=60;w=30",
    "10;w=60;u=user;s=user", "10;w=60;s=bad name", "10;w=60,", ",".join(["1;w=1"] * 11), ",",
    "0.5;w=60", "0.5;w=60;u=user", "1.5;w=60;u=token", "0.0;w=60;u=cents", "0.0000001;w=60;u=cents",
    ".5;w=60;u=cents", "5.;w=60;u=cents", "1e3;w=60;u=cents", "-1;w=60;u=cents",
])
def test_invalid_policies_are_refused_naming_the_header(policy):
    error = refused({"helicone-ratelimit-policy": policy})
    assert error.header == "Helicone-RateLimit-Policy"


@pytest.mark.parametrize("value", ["", " ", "\t  "])
def test_an_empty_optional_header_is_not_set(value):
    every_optional = [name for name in (*h._HANDLERS, *h._DEFERRED) if name != "helicone-auth"]
    opts = parse_options({name: value for name in every_optional})
    assert opts == GatewayOptions(), "as if none of them was sent"
    # A property keeps its empty value, as at Helicone; a malformed value is still refused.
    assert parse_options({"helicone-property-team": value}).properties == {"Team": ""}
    assert refused({"helicone-cache-bucket-max-size": "x"}).header == "Helicone-Cache-Bucket-Max-Size"


def test_segments_need_their_header():
    assert "Helicone-User-Id" in refused({"helicone-ratelimit-policy": "3;w=60;s=user"}).message
    assert "Helicone-Property-Feature" in refused({"helicone-ratelimit-policy": "3;w=60;s=Feature"}).message
    opts = parse_options({"helicone-ratelimit-policy": "3;w=60;s=feature", "helicone-property-feature": "chat",
                          "helicone-user-id": "u1"})
    assert opts.rate_limits == (RatePolicy(3, 60, "request", "Feature"),)


def test_retry_options_only_when_enabled():
    assert parse_options({"helicone-retry-num": "5"}).retry is None
    assert parse_options({"helicone-retry-enabled": "true"}).retry == RetryOptions(3, 2.0, 1000, 10000)
    opts = parse_options({"helicone-retry-enabled": "true", "helicone-retry-num": "10", "helicone-retry-factor": "1.5",
                          "helicone-retry-min-timeout": "10", "helicone-retry-max-timeout": "50"})
    assert opts.retry == RetryOptions(10, 1.5, 10, 50)
    for name, value in (("helicone-retry-num", "11"), ("helicone-retry-factor", "x"),
                        ("helicone-retry-min-timeout", "-5"), ("helicone-retry-max-timeout", "soon")):
        error = refused({"helicone-retry-enabled": "true", name: value})
        assert error.header.lower() == name
    error = refused({"helicone-retry-enabled": "true", "helicone-retry-min-timeout": "500",
                     "helicone-retry-max-timeout": "100"})
    assert error.header == "Helicone-Retry-Max-Timeout"


def test_fallback_forms():
    opts = parse_options({"helicone-fallback": '[{"model": "gpt-4o-mini"}, {"model": "gpt-4o"}]'})
    assert [f.body_override for f in opts.fallbacks] == [{"model": "gpt-4o-mini"}, {"model": "gpt-4o"}]
    opts = parse_options({"helicone-fallbacks": '[{"target-url": "https://api.example.com/", '
                          '"headers": {"Authorization": "Bearer b"}, "onCodes": [429, {"from": 500, "to": 599}], '
                          '"bodyKeyOverride": {"model": "m", "temperature": 0}}]'})
    assert opts.fallbacks == (Fallback({"model": "m", "temperature": 0}, "https://api.example.com",
                                       (("authorization", "Bearer b"),), ((429, 429), (500, 599))),)


@pytest.mark.parametrize("header,value", [
    ("helicone-fallback", "[{"),
    ("helicone-fallback", '{"model": "x"}'),
    ("helicone-fallback", "[]"),
    ("helicone-fallback", '[{"model": "x", "temperature": 1}]'),
    ("helicone-fallback", '[{"model": 3}]'),
    ("helicone-fallbacks", "not json"),
    ("helicone-fallbacks", '[{"target-url": "https://x.example", "retries": 2}]'),
    ("helicone-fallbacks", '[{"target-url": "ftp://x.example"}]'),
    ("helicone-fallbacks", '[{"onCodes": [999]}]'),
    ("helicone-fallbacks", '[{"onCodes": [{"from": 500}]}]'),
    ("helicone-fallbacks", '[{"headers": {"Helicone-Auth": "x"}}]'),
    ("helicone-fallbacks", '[{"bodyKeyOverride": []}]'),
])
def test_malformed_fallbacks_are_refused_naming_the_header(header, value):
    error = refused({header: value})
    assert error.header.lower() == header
