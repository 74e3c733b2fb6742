"""Rate limits: `Helicone-RateLimit-Policy` and the org's own policies.

Each policy counts in a window that starts with the first request it counts and
lasts `w` seconds (a fixed window per counter, so the reset time is exact and
reported). A request is checked and counted against every policy at once:

- with REDIS_URL, in one Lua script (one round trip, atomic on the server), so
  the count is exact however many gateway processes share the Redis;
- otherwise in process memory (the event loop runs one check at a time).

Why redis.asyncio and not Django's cache framework: the cache API has no
atomic multi-key check-and-increment and its Redis calls are blocking (a thread
hop each); one EVALSHA on the event loop is the cheapest exact answer.

Token and cents policies are checked before the request (refused once the
window's budget is spent) and charged after the response with the real usage
and cost, in one more fire-and-forget call.

Every counter holds an integer: requests, tokens, or for `u=cents` millionths of
a cent (micro-cents). A fractional budget (`0.125;w=3600;u=cents` is 125,000
micro-cents) is then compared and added to exactly, in Redis (INCRBY, integers
that Lua's doubles hold exactly up to 2^53, ~$90M a window) as in memory; floats
(INCRBYFLOAT) would drift with every charge and refuse or allow a request at
the budget's edge by rounding luck. A charge is rounded to the nearest
micro-cent ($0.00000001).

The org's plan limit (Organization.monthly_request_limit) is a counter per org
and calendar month (UTC), kept the same way (Redis or process memory) and
seeded from the month's request logs the first time a process (or a flushed
Redis) meets it: one indexed COUNT per org and month, never per request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from datetime import timezone as dt_timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, NamedTuple

from django.conf import settings

from formats.headers import CENTS_DECIMALS, RatePolicy, quota_text

log = logging.getLogger(__name__)

STATUS_HEADER = b"helicone-ratelimit-status"
MICRO_CENTS = 10**CENTS_DECIMALS  # a cents counter's units per cent
# After Redis failed, requests skip it for this long instead of each waiting for a timeout.
_REDIS_BACKOFF_SECONDS = 1.0

# KEYS: one counter per policy. ARGV: quota (in counter units), window in ms, cost (1 for
# request units; 0 for token and cents units, which are charged after the response).
# Refuses if any policy is over its quota; otherwise counts each distinct key once.
# Returns {blocked policy index or 0, used_1, ttl_ms_1, used_2, ttl_ms_2, ...}; every
# counter is an integer, returned as an integer reply.
_CHECK = """
local n = #KEYS
local used, ttl = {}, {}
local blocked = 0
for i = 1, n do
  local quota, cost = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i])
  used[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
  ttl[i] = redis.call('PTTL', KEYS[i])
  if blocked == 0 and ((cost > 0 and used[i] + cost > quota) or (cost == 0 and used[i] >= quota)) then
    blocked = i
  end
end
local out = {blocked}
local done = {}
for i = 1, n do
  local window, cost = tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])
  if blocked == 0 and cost > 0 then
    if not done[KEYS[i]] then
      done[KEYS[i]] = true
      redis.call('INCRBY', KEYS[i], cost)
      if ttl[i] < 0 then redis.call('PEXPIRE', KEYS[i], window) end
    end
    used[i] = used[i] + cost
  end
  if ttl[i] < 0 then ttl[i] = window end
  out[#out+1] = used[i]
  out[#out+1] = ttl[i]
end
return out
"""

# KEYS: counters to charge. ARGV: amount (an integer in counter units), window in ms per key.
_CHARGE = """
for i = 1, #KEYS do
  redis.call('INCRBY', KEYS[i], ARGV[2*i-1])
  if redis.call('PTTL', KEYS[i]) < 0 then redis.call('PEXPIRE', KEYS[i], ARGV[2*i]) end
end
return #KEYS
"""


# KEYS: the org's month counter. ARGV: the limit, the seed ('' if none yet), the key's TTL in
# seconds. Returns -1 when the counter is missing and no seed was given (count the month's logs,
# then ask again with it), else {1 if counted or 0 if refused, the count}.
_MONTHLY = """
local used = redis.call('GET', KEYS[1])
if not used then
  if ARGV[2] == '' then return -1 end
  used = ARGV[2]
  redis.call('SET', KEYS[1], used, 'EX', ARGV[3])
end
used = tonumber(used)
if used >= tonumber(ARGV[1]) then return {0, used} end
return {1, redis.call('INCR', KEYS[1])}
"""


class RateLimitUnavailable(Exception):
    """Redis could not be asked."""


def counter_quota(policy: RatePolicy) -> int:
    """The quota in the units its counter counts: micro-cents for u=cents."""
    return int(policy.quota * MICRO_CENTS) if policy.unit == "cents" else int(policy.quota)


def micro_cents(cents: float | Decimal) -> int:
    """A cost in cents as the integer a cents counter is charged, to the nearest micro-cent."""
    return int((Decimal(cents) * MICRO_CENTS).to_integral_value(ROUND_HALF_UP))


def _units_text(policy: RatePolicy, amount: int) -> str:
    if policy.unit != "cents":
        return str(amount)
    return format(Decimal(amount).scaleb(-CENTS_DECIMALS).normalize(), "f")  # 820000 -> "0.82", 10**8 -> "100"


@dataclass(slots=True)
class Counted:
    policy: RatePolicy
    key: str
    used: int  # in counter units (requests, tokens, micro-cents)
    reset_ms: int

    @property
    def remaining(self) -> int:
        """What is left, in counter units."""
        return max(0, counter_quota(self.policy) - self.used)

    @property
    def remaining_text(self) -> str:
        """What is left as the policy's unit reads: requests, tokens, or cents with their fraction."""
        return _units_text(self.policy, self.remaining)


@dataclass(slots=True)
class Decision:
    allowed: bool
    counted: list[Counted] = field(default_factory=list)
    blocked: Counted | None = None
    unavailable: bool = False

    def headers(self) -> list[tuple[bytes, bytes]]:
        if self.unavailable:
            return [(STATUS_HEADER, b"unavailable")]
        shown = self.blocked or _tightest(self.counted)
        if shown is None:
            return []
        reset = str(max(1, math.ceil(shown.reset_ms / 1000))).encode()
        headers = [
            (b"helicone-ratelimit-limit", quota_text(shown.policy.quota).encode()),
            (b"helicone-ratelimit-remaining", b"0" if self.blocked else shown.remaining_text.encode()),
            (b"helicone-ratelimit-policy", shown.policy.text.encode()),
            (b"helicone-ratelimit-reset", reset),
        ]
        if self.blocked:
            headers.append((b"retry-after", reset))
        return headers

    def charges(self) -> list[Counted]:
        """Token and cents counters to charge once the response's usage is known."""
        return [c for c in self.counted if c.policy.unit != "request"]


def _tightest(counted: list[Counted]) -> Counted | None:
    return min(counted, key=lambda c: c.remaining / counter_quota(c.policy), default=None)


# Cents counters count micro-cents under a name of their own: a counter left by an older
# version (cents as a float, from INCRBYFLOAT) is never read as micro-cents, nor INCRBY'd.
_COUNTER_UNIT = {"request": "request", "token": "token", "cents": "ucents"}


def _key(org_id: int, source: str, policy: RatePolicy, segment_value: str) -> str:
    # The org in a hash tag keeps every key of a request in one Redis Cluster slot.
    return f"hc:rl:{{{org_id}}}:{source}:{_COUNTER_UNIT[policy.unit]}:{policy.window}:{policy.segment}:{segment_value}"


def _segment_value(policy: RatePolicy, user_id: str, properties: dict[str, str]) -> str:
    if policy.segment == "user":
        return user_id
    if policy.segment:
        return properties.get(policy.segment, "")
    return ""


async def check(org_id: int, header_policies: tuple[RatePolicy, ...], org_policies: tuple[RatePolicy, ...],
                user_id: str, properties: dict[str, str]) -> Decision:
    """Check and count one request against every policy at once."""
    # Org policies whose segment the request does not carry share one bucket
    # (counted together), so leaving a header out never escapes the org's limit.
    wanted = [(p, _key(org_id, "h", p, _segment_value(p, user_id, properties))) for p in header_policies]
    wanted += [(p, _key(org_id, "o", p, _segment_value(p, user_id, properties))) for p in org_policies]
    if settings.REDIS_URL:
        try:
            results = await _redis_check(wanted)
        except RateLimitUnavailable:
            return Decision(allowed=not settings.GATEWAY_RATE_LIMIT_FAIL_CLOSED, unavailable=True)
    else:
        results = _memory.check(wanted)
    blocked_index, counted = results
    return Decision(allowed=blocked_index == 0, counted=counted,
                    blocked=counted[blocked_index - 1] if blocked_index else None)


def charge(counted: list[Counted], tokens: int, cents: float | Decimal) -> None:
    """Charge token and cents policies after the response; never waits."""
    amount = {"token": int(tokens), "cents": micro_cents(cents) if cents else 0}
    charges = [(c.key, amount[c.policy.unit], c.policy.window * 1000) for c in counted]
    charges = [item for item in charges if item[1] > 0]
    if not charges:
        return
    if settings.REDIS_URL:
        _spawn(_redis_charge(charges))
    else:
        _memory.charge(charges)


def forget_user(org_id: int, user_id: str) -> int:
    """Delete the counters of one end user's `u=user` policies (GDPR erase); returns how many.

    Blocking (a SCAN on Redis): for management commands and views, not the gateway path.
    Without REDIS_URL only this process's counters can be reached.
    """
    prefix = f"hc:rl:{{{org_id}}}:"

    def is_users(key: str) -> bool:
        # <source>:<unit>:<window>:<segment>:<value>, the value last (it may hold ':').
        parts = key[len(prefix):].split(":", 4)
        return key.startswith(prefix) and len(parts) == 5 and parts[3] == "user" and parts[4] == user_id

    if not settings.REDIS_URL:
        keys = [key for key in _memory.counters if is_users(key)]
        for key in keys:
            _memory.counters.pop(key, None)
        return len(keys)
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        pattern = _glob_escape(prefix) + "*:user:" + _glob_escape(user_id)
        keys = [key for key in client.scan_iter(match=pattern, count=1000)
                if is_users(key.decode(errors="replace"))]
        return client.delete(*keys) if keys else 0
    finally:
        client.close()


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


# --- Redis ---------------------------------------------------------------------------


class _Scripts(NamedTuple):
    client: Any
    check: Any
    charge: Any
    monthly: Any


class _RedisState:
    def __init__(self):
        self.clients: dict[asyncio.AbstractEventLoop, _Scripts] = {}
        self.down_until = 0.0

    def scripts(self) -> _Scripts:
        loop = asyncio.get_running_loop()
        entry = self.clients.get(loop)
        if entry is None:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            timeout = settings.GATEWAY_REDIS_TIMEOUT
            client = aioredis.Redis.from_url(
                settings.REDIS_URL, socket_timeout=timeout, socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0), health_check_interval=0,
            )
            entry = self.clients[loop] = _Scripts(client, client.register_script(_CHECK),
                                                  client.register_script(_CHARGE), client.register_script(_MONTHLY))
        return entry


_redis = _RedisState()
_background: set[asyncio.Task] = set()


def _spawn(coro) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


async def _run(script, keys: list[str], args: list) -> list:
    if time.monotonic() < _redis.down_until:
        raise RateLimitUnavailable()
    try:
        # wait_for bounds the whole call, whatever the socket timeouts do.
        return await asyncio.wait_for(script(keys=keys, args=args), settings.GATEWAY_REDIS_TIMEOUT * 2)
    except Exception as exc:  # refused, timed out, reset, or a Redis error
        _redis.down_until = time.monotonic() + _REDIS_BACKOFF_SECONDS
        log.warning("rate limits: Redis unavailable (%s: %s)", exc.__class__.__name__, exc)
        raise RateLimitUnavailable() from exc


async def _redis_check(wanted: list[tuple[RatePolicy, str]]) -> tuple[int, list[Counted]]:
    check_script = _redis.scripts().check
    args: list = []
    for policy, _key_ in wanted:
        args += [counter_quota(policy), policy.window * 1000, 1 if policy.unit == "request" else 0]
    reply = await _run(check_script, [key for _policy, key in wanted], args)
    counted = [Counted(policy, key, int(reply[1 + 2 * i]), int(reply[2 + 2 * i]))
               for i, (policy, key) in enumerate(wanted)]
    return int(reply[0]), counted


async def _redis_charge(charges: list[tuple[str, int, int]]) -> None:
    charge_script = _redis.scripts().charge
    args: list = []
    for _key_, amount, window_ms in charges:
        args += [amount, window_ms]
    try:
        await _run(charge_script, [key for key, _a, _w in charges], args)
    except RateLimitUnavailable:
        pass  # already logged; the usage of this response goes uncounted


# --- Process memory (no Redis) -------------------------------------------------------


class _MemoryCounters:
    """The same semantics as the Lua scripts, for one process."""

    MAX_KEYS = 100_000

    def __init__(self):
        self.counters: dict[str, list] = {}  # key -> [used (int, counter units), expires_at (monotonic)]

    def _get(self, key: str, now: float) -> list | None:
        entry = self.counters.get(key)
        if entry is not None and entry[1] <= now:
            del self.counters[key]
            return None
        return entry

    def check(self, wanted: list[tuple[RatePolicy, str]]) -> tuple[int, list[Counted]]:
        now = time.monotonic()
        blocked = 0
        entries = []
        for index, (policy, key) in enumerate(wanted, 1):
            entry = self._get(key, now)
            used = entry[0] if entry else 0
            cost = 1 if policy.unit == "request" else 0
            quota = counter_quota(policy)
            if not blocked and ((cost and used + cost > quota) or (not cost and used >= quota)):
                blocked = index
            entries.append(entry)
        counted = []
        done: set[str] = set()
        for (policy, key), entry in zip(wanted, entries):
            if not blocked and policy.unit == "request":
                if key not in done:
                    done.add(key)
                    if entry is None:
                        entry = self.counters[key] = [0, now + policy.window]
                    entry[0] += 1
                else:
                    entry = self.counters[key]
            used = entry[0] if entry else 0
            reset_ms = int(((entry[1] if entry else now + policy.window) - now) * 1000)
            counted.append(Counted(policy, key, used, reset_ms))
        if len(self.counters) > self.MAX_KEYS:
            self.counters = {k: v for k, v in self.counters.items() if v[1] > now}
        return blocked, counted

    def charge(self, charges: list[tuple[str, int, int]]) -> None:
        now = time.monotonic()
        for key, amount, window_ms in charges:
            entry = self._get(key, now)
            if entry is None:
                entry = self.counters[key] = [0, now + window_ms / 1000]
            entry[0] += amount


_memory = _MemoryCounters()


# --- The org's monthly request limit -------------------------------------------------

_MONTH_KEY_TTL = 40 * 86400  # outlives its month; the next month has its own key
_month_counts: dict[str, int] = {}  # without Redis: month key -> requests counted by this process


@dataclass(slots=True)
class MonthlyDecision:
    allowed: bool
    used: int | None = None  # None: not known (Redis or the database unavailable)
    resets_at: datetime | None = None


def _month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _next_month(start: datetime) -> datetime:
    return start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)


def _month_key(org_id: int, start: datetime) -> str:
    return f"hc:month:{{{org_id}}}:{start:%Y-%m}"


def _logged_this_month(org_id: int, start: datetime) -> int:
    from django.db import close_old_connections

    from analytics import clickhouse
    from analytics.models import RequestLog

    close_old_connections()  # no request_started signal on the raw gateway path
    if clickhouse.enabled():
        from analytics.clickhouse import reads

        return reads.requests_since([org_id], start).get(org_id, 0)
    # Served by the (org, created_at) index.
    return RequestLog.objects.filter(org_id=org_id, created_at__gte=start).count()


async def check_monthly(org_id: int, limit: int) -> MonthlyDecision:
    """Count one request against the org's monthly limit, or refuse it once the month's count
    has reached the limit. Redis or database trouble fails open (or closed, by setting)."""
    from asgiref.sync import sync_to_async
    from django.db import DatabaseError

    start = _month_start(datetime.now(dt_timezone.utc))
    resets_at = _next_month(start)
    key = _month_key(org_id, start)
    fail = MonthlyDecision(allowed=not settings.GATEWAY_RATE_LIMIT_FAIL_CLOSED, resets_at=resets_at)
    try:
        if settings.REDIS_URL:
            monthly_script = _redis.scripts().monthly
            reply = await _run(monthly_script, [key], [limit, "", _MONTH_KEY_TTL])
            if reply == -1:
                seeded = await sync_to_async(_logged_this_month)(org_id, start)
                reply = await _run(monthly_script, [key], [limit, seeded, _MONTH_KEY_TTL])
            counted, used = int(reply[0]), int(reply[1])
        else:
            if key not in _month_counts:
                seeded = await sync_to_async(_logged_this_month)(org_id, start)
                _month_counts.setdefault(key, seeded)  # another request may have seeded it meanwhile
            used = _month_counts[key]
            counted = used < limit
            if counted:
                used = _month_counts[key] = used + 1
    except (RateLimitUnavailable, DatabaseError) as exc:
        if isinstance(exc, DatabaseError):
            log.warning("monthly limit: the month's count cannot be read (%s)", exc.__class__.__name__)
        return fail
    return MonthlyDecision(allowed=bool(counted), used=used, resets_at=resets_at)
