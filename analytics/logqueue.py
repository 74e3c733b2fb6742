"""The log queue: the hot path hands over one record per request and moves on.

Embedded default: an in-process queue drained by a writer thread in batches.
With REDIS_URL: records are appended to a Redis Stream (pipelined by a
background task, so a request never waits for Redis) and written by
`manage.py run_log_writer` workers, or by a writer thread in this process.
When Redis cannot be reached, records go to a spool file on disk and are
replayed into the stream once it is back. At exit whatever is pending is
flushed, so a graceful restart loses nothing.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import queue
import threading
import uuid
from typing import Any

from django.conf import settings

from .spool import Spool, dumps
from .writer import BACKLOG_FOR_HELPER, QueueWriter, StreamWriter

log = logging.getLogger(__name__)
# Seconds records wait in memory before they are appended to the Redis stream.
FLUSH_DELAY = 0.005


class InProcessQueue:
    """Embedded default: a thread-safe queue and a writer thread (in the background,
    at idle priority), with a helper at normal priority while a backlog builds up."""

    def __init__(self):
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.writer = None
        self.helper = None
        self.lock = threading.Lock()
        self.backlog_for_helper = 0

    def put(self, record: dict[str, Any]) -> None:
        self.queue.put(record)
        if self.writer is None:
            self._start_writer()
        elif self.queue.qsize() > self.backlog_for_helper and not (self.helper and self.helper.is_alive()):
            self._start_helper()

    def _start_writer(self) -> None:
        with self.lock:
            if self.writer is None:
                self.backlog_for_helper = BACKLOG_FOR_HELPER * settings.LOG_WRITER_BATCH_SIZE
                self.writer = QueueWriter(self.queue)
                self.writer.start()

    def _start_helper(self) -> None:
        # Started from the thread that enqueues (the event loop's), so at its priority.
        with self.lock:
            if not (self.helper and self.helper.is_alive()):
                log.info("log queue holds %d records: starting a helper writer", self.queue.qsize())
                self.helper = QueueWriter(self.queue, background=False)
                self.helper.start()

    def pending(self) -> int:
        return self.queue.qsize()

    def flush(self, timeout: float = 30.0) -> None:
        if self.helper is not None:
            self.helper.stop(timeout)
        if self.writer is not None:
            self.writer.stop(timeout)


class RedisStreamQueue:
    """REDIS_URL: records are appended to the log stream, one entry per few-millisecond
    batch (field "b": a JSON list of records; field "r", one record, is read too)."""

    def __init__(self, url: str, stream: str):
        self.url = url
        self.stream = stream
        self.buffer: list[dict[str, Any]] = []
        self.spool = Spool(settings.LOG_SPOOL_DIR)
        self._client = None
        self._client_loop = None
        self._flush_scheduled = False
        # Batches handed to Redis but not confirmed; re-sent at exit if the loop
        # stopped mid-flight (a duplicate is harmless: writes are idempotent).
        self.in_flight: dict[int, list[dict[str, Any]]] = {}
        self._consumer = None

    def _async_client(self):
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            import redis.asyncio as aioredis

            self._client = aioredis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)
            self._client_loop = loop
        return self._client

    def put(self, record: dict[str, Any]) -> None:
        self.buffer.append(record)
        if settings.LOG_WRITER_IN_PROCESS and self._consumer is None:
            self._start_consumer()
        if not self._flush_scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush_sync()
                return
            self._flush_scheduled = True
            # Gather the records of the next few milliseconds into one pipeline:
            # one Redis round trip per request would cost more than the proxying.
            loop.call_later(FLUSH_DELAY, self._start_flush, loop)

    def _start_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._flush_scheduled = False
        batch, self.buffer = self.buffer, []
        if batch:
            self.in_flight[id(batch)] = batch
            loop.create_task(self._flush(batch))

    async def _flush(self, batch: list[dict[str, Any]]) -> None:
        try:
            await self._async_client().xadd(self.stream, {"b": dumps(batch)})
        except Exception as exc:  # Redis down or failing: never drop, spool to disk
            log.warning("log stream unavailable (%s)", exc)
            await asyncio.to_thread(self.spool.write, batch)
        finally:
            self.in_flight.pop(id(batch), None)

    def _start_consumer(self) -> None:
        self._consumer = StreamWriter(consumer=f"inproc-{os.getpid()}-{uuid.uuid4().hex[:6]}")
        self._consumer.start_thread()

    def pending(self) -> int:
        return len(self.buffer) + sum(len(b) for b in self.in_flight.values())

    def flush_sync(self) -> None:
        """Flush without an event loop (at exit, or from sync code)."""
        batch, self.buffer = [r for b in self.in_flight.values() for r in b] + self.buffer, []
        self.in_flight = {}
        if batch:
            try:
                import redis

                client = redis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)
                client.xadd(self.stream, {"b": dumps(batch)})
            except Exception as exc:
                log.warning("log stream unavailable at flush (%s)", exc)
                self.spool.write(batch)

    def flush(self, timeout: float = 30.0) -> None:
        self.flush_sync()
        if self._consumer is not None:
            self._consumer.stop(timeout)


_queue: InProcessQueue | RedisStreamQueue | None = None


def get_queue() -> InProcessQueue | RedisStreamQueue:
    global _queue
    if _queue is None:
        if settings.REDIS_URL:
            _queue = RedisStreamQueue(settings.REDIS_URL, settings.LOG_STREAM_KEY)
        else:
            _queue = InProcessQueue()
        atexit.register(_queue.flush)
    return _queue


def enqueue(record: dict[str, Any]) -> None:
    """Hand one log record over. Never blocks on the database or the network."""
    get_queue().put(record)
