"""Login throttling: after LOGIN_MAX_FAILURES failed logins within
LOGIN_LOCKOUT_SECONDS, for one account or from one IP address, further attempts
are refused for LOGIN_LOCKOUT_SECONDS without checking the password.

Counters live in the Django cache (local memory embedded, Redis when scaled, so
every web process shares them). The /login/ page, its 2FA step and the admin
login all go through here.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from . import audit

_PREFIX = "login-throttle"


@dataclass(frozen=True)
class Lockout:
    scope: str  # "account" or "ip"
    until: float

    @property
    def message(self) -> str:
        minutes = max(1, math.ceil((self.until - time.time()) / 60))
        what = "for this account" if self.scope == "account" else "from your network address"
        return (f"Too many failed logins {what}. Try again in {minutes} minute{'s' if minutes != 1 else ''}, "
                "or reset your password.")


def _subjects(request, email: str) -> list[tuple[str, str]]:
    subjects = []
    if email:
        digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
        subjects.append(("account", digest))
    ip = audit.client_ip(request)
    if ip:
        subjects.append(("ip", ip))
    return subjects


def locked_out(request, email: str) -> Lockout | None:
    """The lockout that refuses this attempt, if any."""
    now = time.time()
    keys = {f"{_PREFIX}:lock:{scope}:{value}": scope for scope, value in _subjects(request, email)}
    for key, until in cache.get_many(list(keys)).items():
        if until and until > now:
            return Lockout(keys[key], until)
    return None


def refuse(request, email: str, lockout: Lockout, **context) -> None:
    """Audit an attempt refused because of a lockout."""
    audit.record("user.login_failed", request=request, user=None,
                 changes={"email": email[:254], "reason": "locked out", "scope": lockout.scope, **context})


def failed(request, email: str, **context) -> Lockout | None:
    """Count a failed attempt; past the limit start a lockout (audited) and return it."""
    window = settings.LOGIN_LOCKOUT_SECONDS
    lockout = None
    for scope, value in _subjects(request, email):
        key = f"{_PREFIX}:fail:{scope}:{value}"
        cache.add(key, 0, timeout=window)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=window)
            count = 1
        if count >= settings.LOGIN_MAX_FAILURES:
            until = time.time() + window
            cache.set(f"{_PREFIX}:lock:{scope}:{value}", until, timeout=window)
            cache.delete(key)
            audit.record("user.login_locked_out", request=request, user=None,
                         changes={"email": email[:254], "scope": scope, "failures": count, "seconds": window,
                                  **context})
            lockout = lockout or Lockout(scope, until)
    return lockout


def succeeded(request, email: str) -> None:
    """A successful login forgets the account's failures (not the address's: one known
    account must not let an address keep guessing others)."""
    for scope, value in _subjects(request, email):
        if scope == "account":
            cache.delete(f"{_PREFIX}:fail:{scope}:{value}")
