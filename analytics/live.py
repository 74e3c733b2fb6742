"""Live events for logged requests: the log writer publishes, org members' sockets receive.

`publish_logged(rows)` runs in the log writer after each committed batch. It
sends one channel-layer message per org and batch (the consumer unpacks it into
one WebSocket message per request), without waiting for the send:

- InMemoryChannelLayer (embedded default): the layer's queues belong to
  daphne's event loop, so the send is scheduled onto that loop, which the
  consumer records when a socket connects. No loop recorded means no socket
  ever connected to this process: there is nobody to tell.
- channels-redis (REDIS_URL): sent from a private event-loop thread, so the
  writer never waits for Redis and the connection pool lives on one loop.
- The embedded writer process (analytics/writer_process.py): its layer would be
  its own memory, where no socket listens. `forward_to` makes every send go back
  to the web process over a pipe instead; the web process, on its event loop,
  hands the messages to its own layer with `send_to_groups`.

A failed send is logged with the number of requests it carried.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from .models import RequestLog

log = logging.getLogger(__name__)

# Callables run after each committed batch; alerts hook in here as well.
# They receive a sequence of the batch's RequestLogs (a ClickHouse writer's builds each when read)
# and read every log's org with org_ids().
listeners: list[Callable[[Sequence[RequestLog]], None]] = []

EVENT_TYPE = "requests.logged"  # -> LiveConsumer.requests_logged
ALERT_EVENT_TYPE = "alert.fired"  # -> LiveConsumer.alert_fired

_daphne_loop: asyncio.AbstractEventLoop | None = None
# In the embedded writer process: where group messages go instead of a channel layer.
_forward: Callable[[list[tuple[str, dict[str, Any]]]], None] | None = None


def group_name(org_id: int) -> str:
    return f"org-{org_id}-live"


def publish_logged(rows: Sequence[RequestLog]) -> None:
    for listener in listeners:
        try:
            listener(rows)
        except Exception:  # a broken listener must never make the writer retry a committed batch
            log.exception("live listener %r failed for a batch of %d", listener, len(rows))


def remember_loop() -> None:
    """Called from async code in the serving process (the consumer's connect)."""
    global _daphne_loop
    _daphne_loop = asyncio.get_running_loop()


def forward_to(send: Callable[[list[tuple[str, dict[str, Any]]]], None] | None) -> None:
    """Hand every group message to `send` (the writer process's pipe) instead of a layer."""
    global _forward
    _forward = send


def summary(row: RequestLog) -> dict[str, Any]:
    """The fields a live event carries: what the explorer's row and the dashboard need."""
    values = row.__dict__  # not the attributes: a writer makes one of these for every log it writes
    cost = values["cost_usd"]
    return {
        "id": str(values["id"]),
        "created_at": values["created_at"].isoformat(),
        "provider": values["provider"],
        "model": values["model"],
        "status": values["status"],
        "error": (values["error"] or "")[:300],
        "latency_ms": values["latency_ms"],
        "ttft_ms": values["ttft_ms"],
        "prompt_tokens": values["prompt_tokens"],
        "completion_tokens": values["completion_tokens"],
        "total_tokens": row.total_tokens,
        "cost_usd": None if cost is None else float(cost),
        "user_id": values["user_id"],
        "session_id": values["session_id"],
        "session_path": values["session_path"],
        "request_name": values["request_name"],
        "properties": values["properties"],
        "cache_hit": values["cache_hit"],
        "streamed": values["streamed"],
        "prompt_id": values["prompt_id"],
    }


# The newest logs of a batch an org's sockets hear of: a page shows tens of them (the dashboard
# ten, the explorer its page), and a writer's batch under load holds thousands, whose events
# cost the writer as much as their insert and every socket a message each.
EVENTS_PER_BATCH = 500


def org_ids(rows: Sequence[RequestLog]) -> list[int]:
    """Each row's org, in order (a ClickHouse writer's batch knows them without building its logs)."""
    known = getattr(rows, "org_ids", None)
    return known if known is not None else [row.__dict__["org_id"] for row in rows]


def broadcast_logged(rows: Sequence[RequestLog]) -> None:
    """One message per org of the batch, with its newest EVENTS_PER_BATCH logs, oldest first."""
    orgs = org_ids(rows)
    by_org: dict[int, list[dict[str, Any]]] = defaultdict(list)
    left = len(set(orgs))  # orgs whose message is not full yet
    for index in range(len(orgs) - 1, -1, -1):
        items = by_org[orgs[index]]
        if len(items) < EVENTS_PER_BATCH:
            items.append(summary(rows[index]))
            if len(items) == EVENTS_PER_BATCH:
                left -= 1
                if not left:
                    break
    send_to_groups([(group_name(org_id), {"type": EVENT_TYPE, "requests": items[::-1]})
                    for org_id, items in by_org.items()])


def broadcast_alert(org_id: int, alert: dict[str, Any]) -> None:
    """For the alerts issue: `{"type": "alert", **alert}` reaches the org's live sockets."""
    send_to_groups([(group_name(org_id), {"type": ALERT_EVENT_TYPE, "alert": alert})])


def send_to_groups(messages: list[tuple[str, dict[str, Any]]]) -> Future | asyncio.Future | None:
    """Hand the messages to the channel layer without waiting; returns the pending send."""
    from channels.layers import InMemoryChannelLayer, get_channel_layer

    if _forward is not None and messages:
        _forward(messages)
        return None
    layer = get_channel_layer()
    if layer is None or not messages:
        return None
    count = sum(len(message.get("requests", ())) or 1 for _, message in messages)

    async def send_all() -> None:
        for group, message in messages:
            await layer.group_send(group, message)

    if isinstance(layer, InMemoryChannelLayer):
        loop = _daphne_loop
        if loop is None or loop.is_closed():
            return None
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:  # relayed from the writer process, on the loop already
            future = loop.create_task(send_all())
        else:
            future = asyncio.run_coroutine_threadsafe(send_all(), loop)
    else:
        future = _publisher().submit(send_all())
    future.add_done_callback(lambda f: _report(f, count))
    return future


def _report(future: Future, count: int) -> None:
    if future.cancelled():
        log.error("live events for %d requests were not sent: the send was cancelled", count)
    elif future.exception() is not None:
        log.error("live events for %d requests were not sent: %r", count, future.exception())


class _LoopThread:
    """One event loop in a daemon thread for a networked channel layer."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.pending: set[Future] = set()
        self.thread = threading.Thread(target=self.loop.run_forever, name="live-publisher", daemon=True)
        self.thread.start()
        atexit.register(self.drain)

    def submit(self, coroutine) -> Future:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        self.pending.add(future)
        future.add_done_callback(self.pending.discard)
        return future

    def drain(self, timeout: float = 5.0) -> None:
        """At exit: let the sends in flight finish (a worker stopping gracefully loses none)."""
        for future in list(self.pending):
            try:
                future.result(timeout)
            except Exception:
                pass


_publisher_thread: _LoopThread | None = None
_publisher_lock = threading.Lock()


def _publisher() -> _LoopThread:
    global _publisher_thread
    with _publisher_lock:
        if _publisher_thread is None:
            _publisher_thread = _LoopThread()
        return _publisher_thread


listeners.append(broadcast_logged)
