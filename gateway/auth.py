"""Gateway authentication: `Helicone-Auth: Bearer sk-helicone-…`.

Lookups are cached in process for GATEWAY_AUTH_CACHE_SECONDS, so steady
traffic costs no database query, and a revoked key stops working within that
time. While the database is unreachable, the last known answer keeps serving.
The answer carries the org's suspension and monthly request limit, so an
operator's change reaches the gateway by the same path, within
GATEWAY_AUTH_CACHE_SECONDS + _STALE_LIMIT at worst.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, close_old_connections

from orgs.models import KEY_PREFIX, ApiKey, hash_api_key

from .headers import HeaderError, RatePolicy, parse_policies

log = logging.getLogger(__name__)
_MAX_ENTRIES = 50_000


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


class AuthUnavailable(Exception):
    """The key is not cached and the database cannot be asked."""


# digest -> (fresh_until, KeyInfo or None for an unknown or revoked key)
_cache: dict[str, tuple[float, KeyInfo | None]] = {}


def _lookup(digest: str) -> KeyInfo | None:
    close_old_connections()  # no request_started signal on the raw gateway path
    key = (
        ApiKey.objects.select_related("org")
        .only("id", "scopes", "org__id", "org__slug", "org__rate_limit_policy", "org__suspended_at",
              "org__suspended_reason", "org__monthly_request_limit")
        .filter(hashed_key=digest, revoked_at__isnull=True)
        .first()
    )
    if key is None:
        return None
    org = key.org
    return KeyInfo(key.id, key.org_id, org.slug, frozenset(key.scopes), _org_policies(org),
                   suspended=org.suspended_reason if org.is_suspended else None,
                   monthly_request_limit=org.monthly_request_limit)


def _org_policies(org) -> tuple[RatePolicy, ...]:
    if not org.rate_limit_policy.strip():
        return ()
    try:
        return parse_policies(org.rate_limit_policy, "rate_limit_policy")
    except HeaderError as exc:  # validated on save; only a hand-edited row gets here
        log.error("ignoring the invalid rate limit policy of org %s: %s", org.slug, exc.message)
        return ()


_refreshing: set[str] = set()
# A cached answer stale for longer than this is checked before use, not in the background:
# with the 3 s cache, no answer older than 5 s is served while the database answers, so a
# revoked key or a suspended org is refused within 5 s even on a key used only now and then.
_STALE_LIMIT = 2.0


async def _fetch(digest: str) -> KeyInfo | None:
    info = await sync_to_async(_lookup)(digest)
    if len(_cache) >= _MAX_ENTRIES:
        _cache.clear()
    _cache[digest] = (time.monotonic() + settings.GATEWAY_AUTH_CACHE_SECONDS, info)
    return info


async def _refresh(digest: str) -> None:
    try:
        await _fetch(digest)
    except DatabaseError as exc:
        log.warning("API key lookup failed (%s); serving the last known answer", exc.__class__.__name__)
    finally:
        _refreshing.discard(digest)


async def authenticate(raw_key: str) -> KeyInfo | None:
    """The key's identity, or None for an unknown or revoked key."""
    if not raw_key.startswith(KEY_PREFIX):
        return None
    digest = hash_api_key(raw_key)
    cached = _cache.get(digest)
    now = time.monotonic()
    if cached is None or cached[0] + _STALE_LIMIT < now:
        # Unknown, or not seen for long: ask the database before answering.
        try:
            return await _fetch(digest)
        except DatabaseError as exc:
            if cached is None:
                raise AuthUnavailable() from exc
            log.warning("API key lookup failed (%s); serving the last known answer", exc.__class__.__name__)
            return cached[1]
    if cached[0] <= now and digest not in _refreshing:
        # Stale: answer from memory now and refresh in the background, so a
        # slow or unreachable database never stalls requests of a known key.
        _refreshing.add(digest)
        asyncio.get_running_loop().create_task(_refresh(digest))
    return cached[1]
