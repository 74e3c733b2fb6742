"""The semantic cache's entries in the database, and the version counters that keep every
process's in-memory copy of a scope exact.

A gateway process searches a scope's vectors in memory (gateway/semantic.py) and reloads them
when the scope's version counter, or its org's, moved. The counters live in Django's default
cache: Redis when REDIS_URL is set (shared by every process), local memory otherwise (one
process; other processes' changes, such as a purge from cron, reach it within the gateway's
reload interval). Every change here bumps the counters after its transaction commits.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.cache import cache
from django.db import close_old_connections, transaction
from django.utils import timezone

from .models import SemanticEntry

log = logging.getLogger(__name__)

SCOPE_CAP = 1_000  # newest entries kept per scope
ORG_CAP = 100_000  # entries kept per org, least recently hit evicted first
_ORG_CAP_CHECK = 0.02  # share of inserts that check the org cap (a count over the org's entries)
_VERSION_SECONDS = 90 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    text: str
    vector: bytes
    cache_key: str
    bucket_size: int
    source_request_id: str


def scope_version_key(org_id: int, scope: str) -> str:
    return f"sem:v:{org_id}:{scope}"


def org_version_key(org_id: int) -> str:
    return f"sem:v:{org_id}"


def load_scope(org_id: int, scope: str) -> list[Entry]:
    """The scope's live entries, newest first (at most SCOPE_CAP)."""
    close_old_connections()  # called from the gateway's threads, outside any request cycle
    rows = (SemanticEntry.objects.filter(org_id=org_id, scope=scope, expires_at__gt=timezone.now())
            .order_by("-created_at", "-id")
            .values_list("id", "text", "vector", "cache_key", "bucket_size", "source_request_id")[:SCOPE_CAP])
    return [Entry(i, text, bytes(vector), key, size, str(source)) for i, text, vector, key, size, source in rows]


def add_entry(*, org_id: int, scope: str, text: str, vector: bytes, cache_key: str, bucket_size: int,
              source_request_id: str, user_id: str, seconds: int) -> tuple[int, int]:
    """Store an entry and keep the caps; returns (its id, the scope's new version)."""
    close_old_connections()
    now = timezone.now()
    with transaction.atomic():
        entry = SemanticEntry.objects.create(
            org_id=org_id, scope=scope, text=text, vector=vector, cache_key=cache_key, bucket_size=bucket_size,
            source_request_id=source_request_id, user_id=user_id, created_at=now, last_hit_at=now,
            expires_at=now + timedelta(seconds=seconds))
        beyond = list(SemanticEntry.objects.filter(org_id=org_id, scope=scope)
                      .order_by("-created_at", "-id").values_list("id", flat=True)[SCOPE_CAP:SCOPE_CAP + 100])
        if beyond:
            SemanticEntry.objects.filter(id__in=beyond).delete()
    if random.random() < _ORG_CAP_CHECK:
        enforce_org_cap(org_id)
    return entry.id, bump(scope_version_key(org_id, scope))


def enforce_org_cap(org_id: int, cap: int = ORG_CAP) -> int:
    """Delete the org's least recently hit entries beyond the cap."""
    excess = SemanticEntry.objects.filter(org_id=org_id).count() - cap
    if excess <= 0:
        return 0
    ids = list(SemanticEntry.objects.filter(org_id=org_id).order_by("last_hit_at", "id")
               .values_list("id", flat=True)[:excess])
    return _delete_and_bump(org_id, SemanticEntry.objects.filter(id__in=ids))


def touch(entry_ids: Iterable[int]) -> None:
    """Mark entries as just served (what the org cap keeps)."""
    close_old_connections()
    SemanticEntry.objects.filter(id__in=list(entry_ids)).update(last_hit_at=timezone.now())


def evict_source(org_id: int, source_request_id: str | uuid.UUID) -> int:
    """Forget the entries whose answer came from this request (a 👎 on a semantic hit it served)."""
    with transaction.atomic():
        entries = SemanticEntry.objects.filter(org_id=org_id, source_request_id=source_request_id)
        scopes = set(entries.values_list("scope", flat=True))
        deleted = entries.delete()[0]
        transaction.on_commit(lambda: [bump(scope_version_key(org_id, scope)) for scope in scopes])
    return deleted


def delete_for_user(org_id: int, user_id: str) -> int:
    """An end user's entries (GDPR erase): their questions are prompt text."""
    return _delete_and_bump(org_id, SemanticEntry.objects.filter(org_id=org_id, user_id=user_id))


def delete_older(org_id: int, cutoff: datetime) -> int:
    """Entries created before the cutoff (retention and purge)."""
    return _delete_and_bump(org_id, SemanticEntry.objects.filter(org_id=org_id, created_at__lt=cutoff))


def delete_expired(now: datetime | None = None) -> int:
    """Entries past their time to live (never served: loads skip them), for any org."""
    return SemanticEntry.objects.filter(expires_at__lte=now or timezone.now()).delete()[0]


def _delete_and_bump(org_id: int, entries) -> int:
    deleted = entries.delete()[0]
    if deleted:
        transaction.on_commit(lambda: bump(org_version_key(org_id)))
    return deleted


def bump(key: str) -> int:
    """Move a version counter on; a process holding another value reloads. 0 when the cache is down
    (the reload interval then bounds how long a process serves what it holds)."""
    try:
        cache.add(key, 0, _VERSION_SECONDS)
        return cache.incr(key)
    except Exception as exc:  # Redis down: a cache problem, never an error of the caller
        log.warning("semantic cache version not updated (%s: %s)", exc.__class__.__name__, exc)
        return 0
