"""The log queue: the hot path hands over one record per request and moves on.

Every record is first appended to this process's journal (journal.py), so a process that
dies abruptly loses none of the logs its clients were answered for. Then:

- Embedded default served by daphne: the journal is the queue, written by a writer
  process of its own (writer_process.py), so no batch ever holds the event loop's
  interpreter lock.
- Embedded elsewhere (tests, management commands, another ASGI server, or the journal off):
  an in-process queue drained by a writer thread in batches.
- With REDIS_URL: records are appended to a Redis Stream (pipelined by a background task,
  so a request never waits for Redis) and written by `manage.py run_log_writer` workers, or
  by a writer thread in this process. When Redis cannot be reached, records go to a spool
  file on disk and are replayed into the stream once it is back.

A record is marked done in the journal once it is in the database, the stream or the spool.
At exit whatever is pending is flushed, so a graceful restart loses nothing either.
`start` runs the writer as the process starts, so records a dead process left in its
journal (or in the stream) are written without waiting for the first request.
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

import orjson
from django.conf import settings

from .journal import Journal
from .spool import Spool
from .writer import QueueWriter, StreamWriter, recover_journals
from .writer_process import WriterProcess

log = logging.getLogger(__name__)
# Seconds records wait in memory before they are appended to the Redis stream.
FLUSH_DELAY = 0.005


class InProcessQueue:
    """Embedded default: a thread-safe queue of (journal segment, record) and a writer thread."""

    def __init__(self, journal: Journal | None = None):
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.journal = journal
        self.writer: QueueWriter | None = None
        self.lock = threading.Lock()

    def put(self, record: dict[str, Any]) -> None:
        segment = self.journal.append(record)[0] if self.journal is not None else None
        self.queue.put((segment, record))
        if self.writer is None:
            self.start()

    def start(self) -> None:
        with self.lock:
            if self.writer is None:
                self.writer = QueueWriter(self.queue, self.journal)
                self.writer.start()

    def pending(self) -> int:
        return self.queue.qsize()

    def flush(self, timeout: float = 30.0) -> None:
        if self.writer is not None:
            self.writer.stop(timeout)


class JournalQueue:
    """Embedded, served by daphne: each record is appended to the journal, and that is all the
    web process does; a writer process tails the journal (writer_process.py)."""

    def __init__(self, journal: Journal, loop: asyncio.AbstractEventLoop):
        self.journal = journal
        self.writer = WriterProcess(journal, loop)
        self.started = False

    def put(self, record: dict[str, Any]) -> None:
        self.journal.append(record)
        if not self.started:
            self.start()

    def start(self) -> None:
        if not self.started:
            self.started = True
            self.writer.start()

    def pending(self) -> int:
        return self.journal.pending()

    def flush(self, timeout: float = 30.0) -> None:
        if self.started:
            self.writer.stop(timeout)


class RedisStreamQueue:
    """REDIS_URL: records are appended to the log stream, one entry per few-millisecond
    batch (field "b": a JSON list of records; field "r", one record, is read too)."""

    def __init__(self, url: str, stream: str, journal: Journal | None = None):
        self.url = url
        self.stream = stream
        self.journal = journal
        # (journal segment, the record as JSON): serialised once, for the journal and the stream.
        self.buffer: list[tuple[int | None, bytes]] = []
        self.spool = Spool(settings.LOG_SPOOL_DIR)
        self._client = None
        self._client_loop = None
        self._flush_scheduled = False
        # Batches handed to Redis but not confirmed; re-sent at exit if the loop
        # stopped mid-flight (a duplicate is harmless: writes are idempotent).
        self.in_flight: dict[int, list[tuple[int | None, bytes]]] = {}
        self._consumer: StreamWriter | None = None
        self._recovery: threading.Thread | None = None

    def _async_client(self):
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            import redis.asyncio as aioredis

            self._client = aioredis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)
            self._client_loop = loop
        return self._client

    def put(self, record: dict[str, Any]) -> None:
        if self.journal is not None:
            self.buffer.append(self.journal.append(record))
        else:
            self.buffer.append((None, orjson.dumps(record)))
        if self._consumer is None and self._recovery is None:
            self.start()
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

    async def _flush(self, batch: list[tuple[int | None, bytes]]) -> None:
        try:
            try:
                await self._async_client().xadd(self.stream, {"b": _json_list(batch)})
            except Exception as exc:  # Redis down or failing: never drop, spool to disk
                log.warning("log stream unavailable (%s)", exc)
                await asyncio.to_thread(self.spool.write_lines, [data for _, data in batch])
            self._done(batch)
        finally:
            self.in_flight.pop(id(batch), None)

    def _done(self, batch: list[tuple[int | None, bytes]]) -> None:
        if self.journal is not None:
            self.journal.done(segment for segment, _ in batch)

    def start(self) -> None:
        """The in-process stream writer when configured; else one pass over the journals of
        processes that died on this machine (run_log_writer workers also look every few seconds)."""
        if settings.LOG_WRITER_IN_PROCESS:
            if self._consumer is None:
                self._consumer = StreamWriter(consumer=f"inproc-{os.getpid()}-{uuid.uuid4().hex[:6]}")
                self._consumer.start_thread()
        elif self._recovery is None:
            self._recovery = threading.Thread(target=recover_journals, name="journal-recovery", daemon=True)
            self._recovery.start()

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
                client.xadd(self.stream, {"b": _json_list(batch)})
            except Exception as exc:
                log.warning("log stream unavailable at flush (%s)", exc)
                self.spool.write_lines([data for _, data in batch])
            self._done(batch)

    def flush(self, timeout: float = 30.0) -> None:
        self.flush_sync()
        if self._consumer is not None:
            self._consumer.stop(timeout)


def _json_list(batch: list[tuple[int | None, bytes]]) -> bytes:
    return b"[" + b",".join(data for _, data in batch) + b"]"


LogQueue = InProcessQueue | JournalQueue | RedisStreamQueue
_queue: LogQueue | None = None
# The event loop of the server this process serves with, when a writer process makes sense
# (set by `start`, from heliconeproj/asgi.py under daphne).
_serving_loop: asyncio.AbstractEventLoop | None = None


_queue_lock = threading.Lock()


def get_queue() -> LogQueue:
    global _queue
    if _queue is None:
        with _queue_lock:
            if _queue is None:
                tailed = not settings.REDIS_URL and _serving_loop is not None and bool(settings.LOG_JOURNAL_DIR)
                journal = None
                if settings.LOG_JOURNAL_DIR:
                    journal = Journal(settings.LOG_JOURNAL_DIR, settings.LOG_JOURNAL_FSYNC_SECONDS, tailed=tailed)
                if settings.REDIS_URL:
                    made: LogQueue = RedisStreamQueue(settings.REDIS_URL, settings.LOG_STREAM_KEY, journal)
                elif tailed:
                    made = JournalQueue(journal, _serving_loop)
                else:
                    made = InProcessQueue(journal)
                atexit.register(_shutdown, made)
                _queue = made
    return _queue


def _shutdown(made: LogQueue) -> None:
    made.flush()
    if made.journal is not None:
        made.journal.close()


def start(serving_loop: asyncio.AbstractEventLoop | None = None) -> None:
    """At process start (heliconeproj/asgi.py): the writer begins at once. `serving_loop`:
    daphne's event loop; in the embedded default the writer is then a process of its own,
    whose live events that loop relays."""
    global _serving_loop
    if serving_loop is not None and _queue is None:
        _serving_loop = serving_loop
    get_queue().start()


def enqueue(record: dict[str, Any]) -> None:
    """Hand one log record over, on disk first. Never blocks on the database or the network."""
    get_queue().put(record)
