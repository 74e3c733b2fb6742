"""Gateway authentication: `Helicone-Auth: Bearer sk-helicone-…`.

Lookups are cached in process for GATEWAY_AUTH_CACHE_SECONDS, so steady
traffic costs no database query, and a revoked key stops working within that
time. While the database is unreachable, the last known answer keeps serving.
The answer carries the org's suspension and monthly request limit, so an
operator's change reaches the gateway by the same path, within
GATEWAY_AUTH_CACHE_SECONDS + _STALE_LIMIT at worst.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import close_old_connections

from formats.headers import HeaderError, RatePolicy, parse_policies
from orgs.models import KEY_PREFIX, ApiKey, hash_api_key

from .memo import RefreshingCache
from .memo import Unavailable as AuthUnavailable  # noqa: F401  (the proxy answers 503 on it)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: int
    org_id: int
    org_slug: str
    scopes: frozenset[str]
    # The org's own rate-limit policies (Organization.rate_limit_policy), parsed once here.
    rate_limits: tuple[RatePolicy, ...] = ()
    # Organization.suspended_reason when the org is suspended (its keys get 403), else None.
    suspended: str | None = None
    monthly_request_limit: int | None = None
    # The org's semantic cache settings (Organization.semantic_cache_*).
    semantic_floor: float = 0.9
    semantic_org_scope: bool = False


def _lookup(digest: str) -> KeyInfo | None:
    close_old_connections()  # no request_started signal on the raw gateway path
    key = (
        ApiKey.objects.select_related("org")
        .only("id", "scopes", "org__id", "org__slug", "org__rate_limit_policy", "org__suspended_at",
              "org__suspended_reason", "org__monthly_request_limit",
              "org__semantic_cache_threshold", "org__semantic_cache_org_scope")
        .filter(hashed_key=digest, revoked_at__isnull=True)
        .first()
    )
    if key is None:
        return None
    org = key.org
    return KeyInfo(key.id, key.org_id, org.slug, frozenset(key.scopes), _org_policies(org),
                   suspended=org.suspended_reason if org.is_suspended else None,
                   monthly_request_limit=org.monthly_request_limit, semantic_floor=org.semantic_cache_threshold,
                   semantic_org_scope=org.semantic_cache_org_scope)


def _org_policies(org) -> tuple[RatePolicy, ...]:
    if not org.rate_limit_policy.strip():
        return ()
    try:
        return parse_policies(org.rate_limit_policy, "rate_limit_policy")
    except HeaderError as exc:  # validated on save; only a hand-edited row gets here
        log.error("ignoring the invalid rate limit policy of org %s: %s", org.slug, exc.message)
        return ()


# An answer stale for longer than this is checked before use, not in the background:
# with the 3 s cache, no answer older than 5 s is served while the database answers, so a
# revoked key or a suspended org is refused within 5 s even on a key used only now and then.
_STALE_LIMIT = 2.0

# digest -> KeyInfo, or None for an unknown or revoked key.
_keys = RefreshingCache("API key", _lookup, lambda: settings.GATEWAY_AUTH_CACHE_SECONDS, _STALE_LIMIT)


async def authenticate(raw_key: str) -> KeyInfo | None:
    """The key's identity, or None for an unknown or revoked key."""
    if not raw_key.startswith(KEY_PREFIX):
        return None
    return await _keys.get(hash_api_key(raw_key))
