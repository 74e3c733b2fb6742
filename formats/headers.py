"""Parsing of every `Helicone-*` request header into one typed options object.

Pure Python, no Django: the hot path calls `parse_options` once per request, and a
bad value raises `HeaderError` naming the header, which becomes a 400.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

PROPERTY_PREFIX = "helicone-property-"
MAX_VALUE_LENGTH = 1000
MAX_PROPERTIES = 50
_PROPERTY_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
# Control characters (other than tab) are never legal in a value we store.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


# Caching
CACHE_DEFAULT_SECONDS = 7 * 24 * 3600
CACHE_MAX_SECONDS = 365 * 24 * 3600
CACHE_MAX_BUCKET = 1000
_MAX_AGE = re.compile(r"(?:^|[,\s])(s-maxage|max-age)\s*=\s*\"?(\d+)\"?", re.IGNORECASE)
# Rate limits
MAX_POLICIES = 10
RATE_UNITS = ("request", "token", "cents")
# Whole numbers for every unit; u=cents also takes up to six decimals (a millionth of a cent,
# the unit its counters count in, so a fractional budget is enforced exactly).
_POLICY_QUOTA = re.compile(r"^(\d{1,15})(?:\.(\d{1,6}))?$")
CENTS_DECIMALS = 6
# Retries and fallbacks
RETRY_MAX_NUM = 10
MAX_FALLBACKS = 10
FALLBACK_FIELDS = frozenset({"target-url", "headers", "onCodes", "bodyKeyOverride"})


class HeaderError(ValueError):
    """A Helicone header with a value we refuse; becomes a 400 naming the header."""

    def __init__(self, header: str, message: str):
        super().__init__(f"{header}: {message}")
        self.header = header
        self.message = message


@dataclass(frozen=True, slots=True)
class RatePolicy:
    """One `QUOTA;w=WINDOW[;u=UNIT][;s=SEGMENT]` policy.

    `segment` is "" (the whole org), "user", or a custom property name as stored
    in `GatewayOptions.properties` (e.g. "Feature"). `quota` is an int, or for
    `u=cents` a Decimal when it has a fraction (`0.5;w=60;u=cents`).
    """

    quota: int | Decimal
    window: int  # seconds
    unit: str = "request"
    segment: str = ""

    @property
    def text(self) -> str:
        """Canonical form, for `Helicone-RateLimit-Policy` on responses."""
        text = f"{quota_text(self.quota)};w={self.window};u={self.unit}"
        return text + (f";s={self.segment}" if self.segment else "")


def quota_text(quota: int | Decimal) -> str:
    """A quota as people write it: `3`, `0.5`, `0.125` (never `5E-1` or `0.50`)."""
    return str(quota) if isinstance(quota, int) else format(quota, "f")


@dataclass(frozen=True, slots=True)
class RetryOptions:
    num: int = 3
    factor: float = 2.0
    min_timeout_ms: int = 1000
    max_timeout_ms: int = 10000


@dataclass(frozen=True, slots=True)
class Fallback:
    """An alternative upstream attempt: body keys to override, and for the full
    form a different base URL, extra headers and the codes that trigger it."""

    body_override: dict[str, Any] = field(default_factory=dict)
    target_url: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    # (low, high) inclusive status ranges; empty: the default failure codes.
    on_codes: tuple[tuple[int, int], ...] = ()


@dataclass(slots=True)
class GatewayOptions:
    auth_key: str | None = None
    request_id: str | None = None
    user_id: str = ""
    session_id: str = ""
    session_path: str = ""
    session_name: str = ""
    request_name: str = ""
    properties: dict[str, str] = field(default_factory=dict)
    omit_request: bool = False
    omit_response: bool = False
    model_override: str = ""
    target_url: str = ""
    openai_api_base: str = ""
    prompt_id: str = ""
    prompt_variables: dict[str, Any] | None = None
    prompt_version: int | None = None
    prompt_environment: str = ""
    cache_read: bool = False
    cache_write: bool = False
    cache_seed: str = ""
    cache_ignore_keys: tuple[str, ...] = ()
    cache_bucket_size: int = 1
    cache_seconds: int = CACHE_DEFAULT_SECONDS
    # Helicone-Cache-Semantic: "" (off), "true" (serve semantic hits) or "shadow" (record only).
    cache_semantic: str = ""
    cache_semantic_threshold: float | None = None
    cache_semantic_scope: str = "key"
    rate_limits: tuple[RatePolicy, ...] = ()
    retry: RetryOptions | None = None
    fallbacks: tuple[Fallback, ...] = ()
    fallback_header: str = ""  # which of the two fallback headers was sent


@dataclass(slots=True)
class _Pending:
    """Raw values that are only meaningful together, checked after every header was read."""

    cache_enabled: bool | None = None
    retry_enabled: bool = False
    retry: dict[str, str] = field(default_factory=dict)
    policies: str | None = None
    fallback: str | None = None
    fallbacks: str | None = None


def _utf8(header: str, value: str) -> str:
    """Header values arrive as their bytes decoded as latin-1; text in them must be UTF-8."""
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise HeaderError(header, "value is not valid UTF-8") from None


def _text(header: str, value: str, limit: int = MAX_VALUE_LENGTH) -> str:
    value = _utf8(header, value)
    if len(value) > limit:
        raise HeaderError(header, f"value is longer than {limit} characters")
    if _CONTROL.search(value):
        raise HeaderError(header, "value contains control characters")
    return value.strip()


def parse_bool(header: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise HeaderError(header, f"expected true or false, got {value[:40]!r}")


def parse_options(headers: dict[str, str]) -> GatewayOptions:
    """Build the options from lower-cased request headers.

    Only `helicone-*` names are looked at; unknown Helicone headers are ignored
    (a newer SDK may send ones we do not know yet). An optional header sent empty
    (or only spaces) counts as not sent, as at Helicone, whose SDKs and wrappers
    send `""` for a setting left unset; a property keeps its empty value.
    """
    opts = GatewayOptions()
    pending: _Pending | None = None
    for name, value in headers.items():
        if not name.startswith("helicone-"):
            continue
        if name.startswith(PROPERTY_PREFIX):
            prop = name[len(PROPERTY_PREFIX) :]
            display = "Helicone-Property-" + prop
            if not _PROPERTY_NAME.match(prop):
                raise HeaderError(display, "property names use letters, digits, '_', '-' and '.'")
            if len(opts.properties) >= MAX_PROPERTIES:
                raise HeaderError(display, f"at most {MAX_PROPERTIES} properties per request")
            opts.properties[_property_key(prop)] = _text(display, value)
            continue
        if not value.strip(" \t"):
            continue
        handler = _HANDLERS.get(name)
        if handler is not None:
            handler(opts, value)
            continue
        deferred = _DEFERRED.get(name)
        if deferred is not None:
            if pending is None:
                pending = _Pending()
            deferred(pending, value)
    if pending is not None:
        _finish(opts, pending)
    if opts.cache_read or opts.cache_write:
        opts.cache_seconds = _cache_seconds(headers.get("cache-control", ""))
    if opts.cache_semantic and not opts.cache_read:
        raise HeaderError("Helicone-Cache-Semantic", "needs cache reads on: send Helicone-Cache-Enabled: true "
                                                     "(or Helicone-Cache-Read: true)")
    return opts


def _property_key(lowered: str) -> str:
    # Header names reach us lower-cased; store them the way people write them
    # ("feature" -> "Feature", "app-name" -> "App-Name") so pages read naturally.
    return "-".join(part[:1].upper() + part[1:] for part in lowered.split("-"))


def _auth(opts: GatewayOptions, value: str) -> None:
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HeaderError("Helicone-Auth", "expected 'Bearer <key>'")
    opts.auth_key = token.strip()


def _request_id(opts: GatewayOptions, value: str) -> None:
    try:
        opts.request_id = str(uuid.UUID(value.strip()))
    except ValueError:
        raise HeaderError("Helicone-Request-Id", "must be a UUID") from None


def _url(header: str):
    def setter(opts: GatewayOptions, value: str) -> None:
        value = _text(header, value, 2000).rstrip("/")
        if not value.lower().startswith(("http://", "https://")):
            raise HeaderError(header, "must be an http(s) URL")
        setattr(opts, "target_url" if header == "Helicone-Target-Url" else "openai_api_base", value)

    return setter


def _simple(attr: str, header: str, limit: int = MAX_VALUE_LENGTH):
    def setter(opts: GatewayOptions, value: str) -> None:
        setattr(opts, attr, _text(header, value, limit))

    return setter


def _flag(attr: str, header: str):
    def setter(opts: GatewayOptions, value: str) -> None:
        setattr(opts, attr, parse_bool(header, value))

    return setter


def _prompt_variables(opts: GatewayOptions, value: str) -> None:
    try:
        variables = json.loads(_utf8("Helicone-Prompt-Variables", value))
    except (ValueError, RecursionError):
        raise HeaderError("Helicone-Prompt-Variables", "must be a JSON object") from None
    if not isinstance(variables, dict):
        raise HeaderError("Helicone-Prompt-Variables", "must be a JSON object")
    opts.prompt_variables = variables


def _prompt_version(opts: GatewayOptions, value: str) -> None:
    if not value.strip().isdigit() or int(value) < 1:
        raise HeaderError("Helicone-Prompt-Version", "must be a positive integer")
    opts.prompt_version = int(value)


_HANDLERS = {
    "helicone-auth": _auth,
    "helicone-request-id": _request_id,
    "helicone-user-id": _simple("user_id", "Helicone-User-Id", 255),
    "helicone-session-id": _simple("session_id", "Helicone-Session-Id", 255),
    "helicone-session-path": _simple("session_path", "Helicone-Session-Path", 500),
    "helicone-session-name": _simple("session_name", "Helicone-Session-Name", 255),
    "helicone-request-name": _simple("request_name", "Helicone-Request-Name", 255),
    "helicone-model-override": _simple("model_override", "Helicone-Model-Override", 200),
    "helicone-omit-request": _flag("omit_request", "Helicone-Omit-Request"),
    "helicone-omit-response": _flag("omit_response", "Helicone-Omit-Response"),
    "helicone-target-url": _url("Helicone-Target-Url"),
    "helicone-openai-api-base": _url("Helicone-OpenAI-Api-Base"),
    "helicone-prompt-id": _simple("prompt_id", "Helicone-Prompt-Id", 100),
    "helicone-prompt-variables": _prompt_variables,
    "helicone-prompt-version": _prompt_version,
    "helicone-prompt-environment": _simple("prompt_environment", "Helicone-Prompt-Environment", 100),
}


# --- Cache, rate limits, retries and fallbacks --------------------------------------
# These headers are read into `_Pending` first: their meaning depends on each other
# (and on Helicone-User-Id / properties), so they are checked once all are known.


def _pending_flag(attr: str, header: str):
    def setter(pending: _Pending, value: str) -> None:
        setattr(pending, attr, parse_bool(header, value))

    return setter


def _pending_text(attr: str):
    def setter(pending: _Pending, value: str) -> None:
        setattr(pending, attr, value)

    return setter


def _pending_retry(name: str):
    def setter(pending: _Pending, value: str) -> None:
        pending.retry[name] = value

    return setter


_DEFERRED = {
    "helicone-cache-enabled": _pending_flag("cache_enabled", "Helicone-Cache-Enabled"),
    "helicone-retry-enabled": _pending_flag("retry_enabled", "Helicone-Retry-Enabled"),
    "helicone-retry-num": _pending_retry("Helicone-Retry-Num"),
    "helicone-retry-factor": _pending_retry("Helicone-Retry-Factor"),
    "helicone-retry-min-timeout": _pending_retry("Helicone-Retry-Min-Timeout"),
    "helicone-retry-max-timeout": _pending_retry("Helicone-Retry-Max-Timeout"),
    "helicone-ratelimit-policy": _pending_text("policies"),
    "helicone-fallback": _pending_text("fallback"),
    "helicone-fallbacks": _pending_text("fallbacks"),
}


def _finish(opts: GatewayOptions, pending: _Pending) -> None:
    if pending.cache_enabled:
        opts.cache_read = opts.cache_write = True
    if pending.policies is not None:
        opts.rate_limits = parse_policies(pending.policies, "Helicone-RateLimit-Policy")
        for policy in opts.rate_limits:
            if policy.segment == "user" and not opts.user_id:
                raise HeaderError("Helicone-RateLimit-Policy", "s=user (or u=user) needs a Helicone-User-Id header")
            if policy.segment not in ("", "user") and policy.segment not in opts.properties:
                raise HeaderError("Helicone-RateLimit-Policy",
                                  f"s={policy.segment} needs a Helicone-Property-{policy.segment} header")
    if pending.retry_enabled:
        opts.retry = _retry_options(pending.retry)
    elif pending.retry:
        _retry_options(pending.retry)  # a bad value is a 400 even while retries are off
    if pending.fallback is not None and pending.fallbacks is not None:
        raise HeaderError("Helicone-Fallbacks", "send either Helicone-Fallback or Helicone-Fallbacks, not both")
    if pending.fallback is not None:
        opts.fallbacks = _simple_fallbacks(pending.fallback)
        opts.fallback_header = "Helicone-Fallback"
    elif pending.fallbacks is not None:
        opts.fallbacks = _full_fallbacks(pending.fallbacks)
        opts.fallback_header = "Helicone-Fallbacks"


def _cache_flag(attr: str, header: str):
    def setter(opts: GatewayOptions, value: str) -> None:
        if parse_bool(header, value):
            setattr(opts, attr, True)

    return setter


def _cache_ignore_keys(opts: GatewayOptions, value: str) -> None:
    keys = tuple(dict.fromkeys(k.strip() for k in _text("Helicone-Cache-Ignore-Keys", value).split(",") if k.strip()))
    opts.cache_ignore_keys = keys


def _cache_bucket(opts: GatewayOptions, value: str) -> None:
    value = value.strip()
    if not value.isdigit() or not 1 <= int(value) <= CACHE_MAX_BUCKET:
        raise HeaderError("Helicone-Cache-Bucket-Max-Size", f"must be an integer from 1 to {CACHE_MAX_BUCKET}")
    opts.cache_bucket_size = int(value)


def _cache_semantic(opts: GatewayOptions, value: str) -> None:
    if value.strip().lower() == "shadow":
        opts.cache_semantic = "shadow"
    else:
        try:
            opts.cache_semantic = "true" if parse_bool("Helicone-Cache-Semantic", value) else ""
        except HeaderError:
            raise HeaderError("Helicone-Cache-Semantic", f"expected true, false or shadow, got {value[:40]!r}") from None


def _cache_semantic_threshold(opts: GatewayOptions, value: str) -> None:
    header = "Helicone-Cache-Semantic-Threshold"
    try:
        threshold = float(value.strip())
    except ValueError:
        raise HeaderError(header, f"expected a number from 0 to 1, got {value[:40]!r}") from None
    if not 0 <= threshold <= 1:
        raise HeaderError(header, f"expected a number from 0 to 1, got {value[:40]!r}")
    opts.cache_semantic_threshold = threshold


SEMANTIC_SCOPES = ("key", "user", "org")


def _cache_semantic_scope(opts: GatewayOptions, value: str) -> None:
    scope = value.strip().lower()
    if scope not in SEMANTIC_SCOPES:
        raise HeaderError("Helicone-Cache-Semantic-Scope", f"expected key, user or org, got {value[:40]!r}")
    opts.cache_semantic_scope = scope


def _cache_seconds(cache_control: str) -> int:
    """Lifetime from the request's Cache-Control (s-maxage wins over max-age)."""
    found = dict((name.lower(), int(seconds)) for name, seconds in _MAX_AGE.findall(cache_control))
    seconds = found.get("s-maxage", found.get("max-age", CACHE_DEFAULT_SECONDS))
    return max(1, min(seconds, CACHE_MAX_SECONDS))


def parse_policies(text: str, header: str = "Helicone-RateLimit-Policy") -> tuple[RatePolicy, ...]:
    """`QUOTA;w=SECONDS[;u=UNIT][;s=SEGMENT]`, comma separated. Also validates org settings.

    Shorthands: `u=user` (per user), `u=org` (whole org) and `u=request` (whole
    org, counting requests).
    """
    text = _text(header, text, 2000)
    policies: list[RatePolicy] = []
    for raw in text.split(","):
        raw = raw.strip()
        if not raw:
            raise HeaderError(header, "empty policy (expected QUOTA;w=WINDOW_SECONDS[;u=UNIT][;s=SEGMENT])")
        policies.append(_parse_policy(raw, header))
    if len(policies) > MAX_POLICIES:
        raise HeaderError(header, f"at most {MAX_POLICIES} policies")
    return tuple(dict.fromkeys(policies))


def policy_text(text: str) -> str:
    """An org-wide policy setting in its normal form (the check the gateway registers for the
    org's `rate_limit_policy`); raises ValueError with the parser's message."""
    try:
        policies = parse_policies(text, "rate_limit_policy")
    except HeaderError as error:
        raise ValueError(error.message) from None
    return ", ".join(policy.text for policy in policies)


_QUOTA_MESSAGE = ("the quota must be a positive whole number, or for u=cents a number with up to "
                  f"{CENTS_DECIMALS} decimals (QUOTA;w=WINDOW_SECONDS)")


def _parse_policy(raw: str, header: str) -> RatePolicy:
    quota_raw, *params = [part.strip() for part in raw.split(";")]
    match = _POLICY_QUOTA.match(quota_raw)
    if not match:
        raise HeaderError(header, f"{raw!r}: {_QUOTA_MESSAGE}")
    whole, fraction = match.group(1), (match.group(2) or "").rstrip("0")
    quota: int | Decimal = Decimal(f"{whole}.{fraction}") if fraction else int(whole)
    if quota <= 0:
        raise HeaderError(header, f"{raw!r}: {_QUOTA_MESSAGE}")
    values: dict[str, str] = {}
    for param in params:
        name, sep, value = param.partition("=")
        name, value = name.strip().lower(), value.strip()
        if not sep or name not in ("w", "u", "s") or not value:
            raise HeaderError(header, f"{raw!r}: unknown parameter {param!r} (use w=, u=, s=)")
        if name in values:
            raise HeaderError(header, f"{raw!r}: {name}= given twice")
        values[name] = value
    window = values.get("w", "")
    if not window.isdigit() or not 1 <= int(window) <= CACHE_MAX_SECONDS:
        raise HeaderError(header, f"{raw!r}: w= must be a window in seconds (1 to {CACHE_MAX_SECONDS})")
    unit = values.get("u", "request").lower()
    segment = values.get("s", "")
    if unit in ("user", "org"):
        if segment:
            raise HeaderError(header, f"{raw!r}: u={unit} already names the segment; drop s=")
        segment, unit = ("user" if unit == "user" else ""), "request"
    if unit not in RATE_UNITS:
        raise HeaderError(header, f"{raw!r}: u= must be request, token or cents (or the shorthands user, org)")
    if isinstance(quota, Decimal) and unit != "cents":
        raise HeaderError(header, f"{raw!r}: a u={unit} quota is a whole number (fractions only with u=cents)")
    if segment.lower() == "user":
        segment = "user"
    elif segment:
        if not _PROPERTY_NAME.match(segment):
            raise HeaderError(header, f"{raw!r}: s= must be user or a property name")
        segment = _property_key(segment.lower())
    return RatePolicy(quota, int(window), unit, segment)


def _retry_options(raw: dict[str, str]) -> RetryOptions:
    def integer(header: str, default: int, low: int, high: int) -> int:
        value = raw.get(header)
        if value is None:
            return default
        value = value.strip()
        if not value.isdigit() or not low <= int(value) <= high:
            raise HeaderError(header, f"must be an integer from {low} to {high}")
        return int(value)

    num = integer("Helicone-Retry-Num", 3, 0, RETRY_MAX_NUM)
    factor = 2.0
    if "Helicone-Retry-Factor" in raw:
        try:
            factor = float(raw["Helicone-Retry-Factor"])
        except ValueError:
            factor = math.nan
        if not 1 <= factor <= 10:
            raise HeaderError("Helicone-Retry-Factor", "must be a number from 1 to 10")
    low = integer("Helicone-Retry-Min-Timeout", 1000, 0, 600_000)
    high = integer("Helicone-Retry-Max-Timeout", max(10000, low), 0, 600_000)
    if low > high:
        raise HeaderError("Helicone-Retry-Max-Timeout", "must not be below Helicone-Retry-Min-Timeout")
    return RetryOptions(num, factor, low, high)


def _json_list(header: str, value: str) -> list:
    try:
        items = json.loads(_utf8(header, value))
    except (ValueError, RecursionError):  # RecursionError: nested past the parser's depth
        raise HeaderError(header, "must be a JSON list of objects") from None
    if not isinstance(items, list) or not items or not all(isinstance(item, dict) for item in items):
        raise HeaderError(header, "must be a non-empty JSON list of objects")
    if len(items) > MAX_FALLBACKS:
        raise HeaderError(header, f"at most {MAX_FALLBACKS} fallbacks")
    return items


def _simple_fallbacks(value: str) -> tuple[Fallback, ...]:
    header = "Helicone-Fallback"
    out = []
    for item in _json_list(header, value):
        unknown = set(item) - {"model"}
        if unknown:
            raise HeaderError(header, f"unknown field {sorted(unknown)[0]!r}: entries are {{\"model\": \"…\"}} "
                                      "(use Helicone-Fallbacks for other changes)")
        if not isinstance(item.get("model"), str) or not item["model"].strip():
            raise HeaderError(header, "each entry needs a \"model\" string")
        out.append(Fallback(body_override={"model": item["model"].strip()}))
    return tuple(out)


def _full_fallbacks(value: str) -> tuple[Fallback, ...]:
    header = "Helicone-Fallbacks"
    out = []
    for item in _json_list(header, value):
        unknown = set(item) - FALLBACK_FIELDS
        if unknown:
            raise HeaderError(header, f"unknown field {sorted(unknown)[0]!r} (fields: target-url, headers, onCodes, "
                                      "bodyKeyOverride)")
        target = item.get("target-url", "")
        if not isinstance(target, str) or (target and not target.lower().startswith(("http://", "https://"))):
            raise HeaderError(header, "\"target-url\" must be an http(s) URL")
        headers = item.get("headers", {})
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and not _CONTROL.search(k + v) for k, v in headers.items()
        ):
            raise HeaderError(header, "\"headers\" must be an object of strings")
        if any(k.lower().startswith("helicone-") or k.lower() in ("host", "content-length") for k in headers):
            raise HeaderError(header, "\"headers\" may not set Host, Content-Length or Helicone-* headers")
        override = item.get("bodyKeyOverride", {})
        if not isinstance(override, dict):
            raise HeaderError(header, "\"bodyKeyOverride\" must be an object")
        out.append(Fallback(override, target.rstrip("/"), tuple((k.lower(), v) for k, v in headers.items()),
                            _on_codes(header, item.get("onCodes"))))
    return tuple(out)


def _on_codes(header: str, value: Any) -> tuple[tuple[int, int], ...]:
    if value is None:
        return ()
    message = "\"onCodes\" must be a list of status codes or {\"from\": N, \"to\": M} ranges"
    if not isinstance(value, list):
        raise HeaderError(header, message)
    ranges = []
    for code in value:
        if isinstance(code, int) and not isinstance(code, bool) and 100 <= code <= 599:
            ranges.append((code, code))
        elif (isinstance(code, dict) and set(code) == {"from", "to"}
              and all(isinstance(code[k], int) and 100 <= code[k] <= 599 for k in ("from", "to"))
              and code["from"] <= code["to"]):
            ranges.append((code["from"], code["to"]))
        else:
            raise HeaderError(header, message)
    return tuple(ranges)


_HANDLERS.update({
    "helicone-cache-save": _cache_flag("cache_write", "Helicone-Cache-Save"),
    "helicone-cache-read": _cache_flag("cache_read", "Helicone-Cache-Read"),
    "helicone-cache-seed": _simple("cache_seed", "Helicone-Cache-Seed", 255),
    "helicone-cache-ignore-keys": _cache_ignore_keys,
    "helicone-cache-bucket-max-size": _cache_bucket,
    "helicone-cache-semantic": _cache_semantic,
    "helicone-cache-semantic-threshold": _cache_semantic_threshold,
    "helicone-cache-semantic-scope": _cache_semantic_scope,
})
