"""The log writer: turns queued records into RequestLog rows, in batches.

`write_batch` is idempotent (the log id is the primary key and conflicts are
ignored), so a batch redelivered after a crash or replayed from the spool is
never stored twice. Failures keep the batch and retry with backoff: nothing
is dropped while the database is down.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import orjson
from django.conf import settings
from django.db import (
    DatabaseError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
    models,
    transaction,
)
from django.db.models.base import ModelState

from orgs.models import ApiKey, Organization

from . import clickhouse, rollups
from .journal import Journal, recover
from .models import RequestLog
from .pricing import cost_usd, refresh_overrides
from .spool import Spool

log = logging.getLogger(__name__)

_FIELDS = RequestLog._meta.concrete_fields
_ATTNAMES = frozenset(field.attname for field in _FIELDS)
_FACTORY_DEFAULTS = [(field.attname, field.default) for field in _FIELDS
                     if field.has_default() and callable(field.default)]
_STATIC_DEFAULTS = {field.attname: field.get_default() for field in _FIELDS
                    if not (field.has_default() and callable(field.default))}


def build_log(record: dict[str, Any]) -> RequestLog:
    """A RequestLog from a queued record."""
    # The fields' defaults, then the record's values, in a few dict operations (a get_default()
    # per field cost a third of the build, and a loop over the record's keys another third).
    state = _STATIC_DEFAULTS.copy()
    state.update(record)
    for name in state.keys() - _ATTNAMES:  # a record's extra keys (cache_write_tokens)
        del state[name]
    state["id"] = uuid.UUID(str(record["id"]))
    state["created_at"] = datetime.fromtimestamp(record["created_at"], tz=timezone.utc)
    if "cost_usd" not in record:
        state["cost_usd"] = cost_usd(
            record.get("provider", ""),
            record.get("model") or record.get("requested_model", ""),
            record.get("prompt_tokens"),
            record.get("completion_tokens"),
            record.get("cached_tokens"),
            record.get("cache_write_tokens"),
        )
    for name, factory in _FACTORY_DEFAULTS:  # mutable defaults made anew
        if name not in record:
            state[name] = factory()
    # Built the way unpickling builds a model (Model.__setstate__): setting ~40
    # attributes one by one through Model.__init__ cost more than the insert.
    log_row = RequestLog.__new__(RequestLog)
    log_row.__dict__ = state
    log_row._state = ModelState()
    return log_row


def build_logs(records: list[dict[str, Any]]) -> list[RequestLog]:
    """The records' RequestLogs; a malformed record is left out, and logged."""
    refresh_overrides()
    rows = []
    for record in records:
        try:
            rows.append(build_log(record))
        except (KeyError, TypeError, ValueError) as exc:
            # A malformed record can never be written; keep it visible rather than retry forever.
            log.error("dropping malformed log record %r: %s", record.get("id"), exc)
    return rows


def write_batch(records: list[dict[str, Any]], rows: list[RequestLog] | None = None,
                prepared: Any = None) -> Sequence[RequestLog]:
    """Insert the records (ignoring ones already stored) and notify listeners. `rows`: the
    records' build_logs, when the caller built them already; `prepared`: with ClickHouse as the
    only store, what prepare_for_clickhouse made of them."""
    if clickhouse.only():
        return _write_clickhouse(records, prepared)
    if rows is None:
        rows = build_logs(records)
    if not rows:
        return []
    try:
        _insert(rows)
    except IntegrityError:
        # An org or key deleted while its records waited in the queue: one such
        # record must not hold back every other log, so repair the batch.
        rows = _without_dangling_references(rows)
        _insert(rows)
    from .live import publish_logged

    publish_logged(rows)
    return rows


def _write_clickhouse(records: list[dict[str, Any]], prepared: Any) -> Sequence[RequestLog]:
    """ClickHouse is the log store: no SQL row, no SQL rollup. The records go straight into the
    insert's columns (store.prepare_records), and what the SQL foreign keys checked (an org
    deleted while its records waited) is checked here. The listeners hear of the logs inserted
    (a log stored already was told of when it was)."""
    from .clickhouse import store
    from .live import publish_logged

    if prepared is None:
        refresh_overrides()
        prepared = store.prepare_records(_with_references(records))
    written = store.send(prepared)
    if not written:
        return []
    key_ids = {record.get("api_key_id") for record in written} - {None}
    if key_ids:
        last = datetime.fromtimestamp(written[-1]["created_at"], tz=timezone.utc)
        ApiKey.objects.filter(id__in=key_ids).update(last_used_at=last)
    logs = WrittenLogs(written)
    publish_logged(logs)
    return logs


class WrittenLogs(Sequence[RequestLog]):
    """The logs a batch wrote into ClickHouse from its records, as listeners read them: each built
    from its record when first read (the live events read the newest few of a large batch, the
    webhooks only the logs of an org with one), and every log's org known without building it."""

    def __init__(self, records: list[dict[str, Any]]):
        self.records = records
        self.org_ids = [record["org_id"] for record in records]
        self._built: dict[int, RequestLog] = {}

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[n] for n in range(*index.indices(len(self.records)))]
        index = range(len(self.records))[index]  # IndexError past the end (iteration stops there)
        row = self._built.get(index)
        if row is None:
            row = self._built[index] = build_log(self.records[index])
        return row


def prepare_for_clickhouse(records: list[dict[str, Any]], leave_out: set[str]) -> Any:
    """With ClickHouse as the only store, the records' insert made ready (their references
    checked, the logs stored already left out, and those in `leave_out`, the ids of a batch being
    inserted meanwhile), so that a writer makes the next batch's while one is inserted. None when
    there is nothing to prepare, or it could not be (a store away): write_batch then does it all."""
    if not records or not clickhouse.only():
        return None
    from .clickhouse import store

    try:
        refresh_overrides()
        return store.prepare_records(_with_references(records), leave_out)
    except (DatabaseError, *_clickhouse_errors()) as exc:
        log.info("log batch not prepared ahead (%s): written without", exc)
        _drop_broken_connection()
        return None


def _insert(rows: list[RequestLog]) -> None:
    key_ids = {row.__dict__.get("api_key_id") for row in rows} - {None}  # (why the dict: _without_dangling_references)
    if clickhouse.enabled():
        # First, and idempotent: a batch that then fails in the SQL database is inserted again on
        # its retry, and ClickHouse leaves out the logs it holds.
        from .clickhouse import store

        store.insert(rows)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            inserted = _copy_insert(rows)
        elif connection.vendor == "sqlite":
            inserted = _sqlite_insert(rows)
        else:
            stored = set(RequestLog.objects.filter(id__in=[row.id for row in rows]).values_list("id", flat=True))
            RequestLog.objects.bulk_create(rows, ignore_conflicts=True, batch_size=500)
            inserted = [row for row in rows if row.id not in stored]
        # In the same transaction: a batch written again (a retry, a replay) adds nothing twice.
        rollups.add(inserted)
        if key_ids:
            ApiKey.objects.filter(id__in=key_ids).update(last_used_at=rows[-1].created_at)


_COLUMNS = [f for f in RequestLog._meta.concrete_fields]
_STAGING = "requestlog_incoming"


def _json_text(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


# COPY's text format takes every other value as psycopg renders it; only JSON
# needs serialising (Field.get_db_prep_save per field cost ~260 µs a row).
_COPY_CONVERTERS = [(f.attname, _json_text if isinstance(f, models.JSONField) else None) for f in _COLUMNS]


def _sqlite_converters() -> list[tuple[str, Any]]:
    """Per column: None to pass the value as is, else Django's own conversion, which
    only UUIDs, datetimes, decimals and JSON need (the rest costs nothing)."""
    special = (models.UUIDField, models.DateTimeField, models.DecimalField, models.JSONField)

    def prep(field):
        return lambda value: field.get_db_prep_save(value, connection)

    return [(f.attname, prep(f) if isinstance(f, special) else None) for f in _COLUMNS]


def _sqlite_insert(rows: list[RequestLog]) -> list[RequestLog]:
    """INSERT OR IGNORE with executemany: the in-process writer shares the web
    process's interpreter lock, and bulk_create's SQL compilation was most of its cost.
    Returns the rows that were new (transactions begin IMMEDIATE: no other writer interleaves)."""
    table = RequestLog._meta.db_table
    stored = _stored_ids(rows)
    names = ", ".join(connection.ops.quote_name(f.column) for f in _COLUMNS)
    marks = ", ".join("?" * len(_COLUMNS))
    converters = _sqlite_converters()
    params = [
        [convert(row.__dict__[name]) if convert else row.__dict__[name] for name, convert in converters]
        for row in rows
    ]
    with connection.cursor() as cursor, connection.wrap_database_errors:
        cursor.cursor.executemany(f"INSERT OR IGNORE INTO {table} ({names}) VALUES ({marks})", params)
    return [row for row in rows if row.id not in stored] if stored else rows


def _stored_ids(rows: list[RequestLog]) -> set[uuid.UUID]:
    stored = set()
    ids = [row.id for row in rows]
    for start in range(0, len(ids), 900):
        stored.update(RequestLog.objects.filter(id__in=ids[start : start + 900]).values_list("id", flat=True))
    return stored


def _copy_insert(rows: list[RequestLog]) -> list[RequestLog]:
    """COPY the rows in; when some are already stored (a redelivered batch), COPY
    into a session-local staging table and INSERT … ON CONFLICT DO NOTHING.

    bulk_create spends most of its time compiling SQL and quoting parameters
    (about 1,300 rows/s here); COPY streams the rows."""
    table = RequestLog._meta.db_table
    try:
        with transaction.atomic():
            _copy(rows, table)
        return rows
    except IntegrityError:
        pass
    names = ", ".join(connection.ops.quote_name(f.column) for f in _COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {_STAGING} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        _copy(rows, _STAGING)
        cursor.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {_STAGING} ON CONFLICT (id) DO NOTHING"
                       " RETURNING id")
        inserted = {row[0] for row in cursor.fetchall()}
        cursor.execute(f"TRUNCATE {_STAGING}")
    return [row for row in rows if row.id in inserted]


def _copy(rows: list[RequestLog], table: str) -> None:
    names = ", ".join(connection.ops.quote_name(f.column) for f in _COLUMNS)
    with connection.cursor() as cursor, connection.wrap_database_errors:
        with cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:  # psycopg's own cursor
            for row in rows:
                values = row.__dict__
                copy.write_row([convert(values[name]) if convert else values[name]
                                for name, convert in _COPY_CONVERTERS])


def _without_dangling_references(rows: list[RequestLog]) -> list[RequestLog]:
    """The rows whose org still exists, a deleted key's id cleared (the log stays)."""
    # The ids read from the instances' dicts: a foreign key's attribute is a descriptor, a Python
    # call per read.
    missing = _missing_references([row.__dict__ for row in rows])
    if missing is None:
        return rows
    org_ids, key_ids = missing
    kept = []
    for row in rows:
        if row.org_id not in org_ids:
            log.error("dropping log %s: organization %s no longer exists", row.id, row.org_id)
            continue
        if row.api_key_id and row.api_key_id not in key_ids:
            row.api_key_id = None  # the key was deleted; the log stays
        kept.append(row)
    return kept


def _with_references(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """_without_dangling_references for records (ClickHouse's insert reads them as they are)."""
    missing = _missing_references(records)
    if missing is None:
        return records
    org_ids, key_ids = missing
    kept = []
    for record in records:
        if record.get("org_id") not in org_ids:
            log.error("dropping log %s: organization %s no longer exists", record.get("id"), record.get("org_id"))
            continue
        if record.get("api_key_id") and record["api_key_id"] not in key_ids:
            record = {**record, "api_key_id": None}  # the key was deleted; the log stays
        kept.append(record)
    return kept


def _missing_references(values: list[dict[str, Any]]) -> tuple[set, set] | None:
    """None when every org and API key the logs' values name exists (a ClickHouse batch comes here
    with every log), else the (org ids, key ids) that do."""
    wanted_orgs = {value.get("org_id") for value in values}
    wanted_keys = {value.get("api_key_id") for value in values} - {None}
    org_ids = set(Organization.objects.filter(id__in=wanted_orgs - {None}).values_list("id", flat=True))
    key_ids = set(ApiKey.objects.filter(id__in=wanted_keys).values_list("id", flat=True)) if wanted_keys else set()
    if org_ids == wanted_orgs and key_ids == wanted_keys:
        return None
    return org_ids, key_ids


def write_with_retry(records: list[dict[str, Any]], stopping: threading.Event | None = None,
                     rows: list[RequestLog] | None = None, prepared: Any = None) -> None:
    """write_batch until it succeeds: the database may be down for a while."""
    delay = 0.2
    while True:
        try:
            write_batch(records, rows, prepared)
            return
        except (OperationalError, InterfaceError, *_clickhouse_errors()) as exc:  # a store is away: wait for it
            prepared = None  # a retry looks again at what is stored
            log.warning("log batch of %d not written (%s); retrying in %.1fs", len(records), exc, delay)
            close_old_connections()
            _drop_broken_connection()
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            if stopping is not None and stopping.is_set() and delay >= 5.0:
                # Shutting down with the database still away: keep the records on disk.
                Spool(settings.LOG_SPOOL_DIR).write(records)
                return
        except DatabaseError as exc:  # a record the database refuses: isolate it
            log.error("log batch of %d refused (%s); writing records one by one", len(records), exc)
            _write_one_by_one(records)
            return


def _clickhouse_errors() -> tuple[type[Exception], ...]:
    """ClickHouse's errors, when it is on: the server away, or refusing an insert (the rows are
    typed before they are sent, so a refusal is the server's state, not a record's): retried."""
    if not clickhouse.enabled():
        return ()
    from clickhouse_connect.driver.exceptions import Error

    return (Error,)


def _write_one_by_one(records: list[dict[str, Any]]) -> None:
    refused = []
    for record in records:
        try:
            write_batch([record])
        except (OperationalError, InterfaceError):
            raise
        except DatabaseError as exc:
            cleaned = without_nul(record)
            if cleaned != record:
                # PostgreSQL text and JSON cannot hold NUL (a client's body or JSON may): store the
                # record without them rather than lose it.
                try:
                    write_batch([cleaned])
                    continue
                except (OperationalError, InterfaceError):
                    raise
                except DatabaseError as again:
                    exc = again
            log.error("log record %s refused by the database: %s", record.get("id"), exc)
            refused.append(record)
    if refused:
        # Kept for an operator to inspect, never replayed automatically.
        Spool(settings.LOG_SPOOL_DIR / "refused").write(refused)


def without_nul(value: Any) -> Any:
    """NUL characters removed from every string: PostgreSQL text and JSON cannot hold them."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nul(item) for item in value]
    return value


def _drop_broken_connection() -> None:
    from django.db import connection

    try:
        connection.close()
    except Exception:
        pass


def replay_spool() -> int:
    """Write records that were spooled to disk (Redis or the database away)."""
    spool = Spool(settings.LOG_SPOOL_DIR)
    count = 0
    for path in spool.claim():
        records = spool.read(path)
        for start in range(0, len(records), settings.LOG_WRITER_BATCH_SIZE):
            write_with_retry(records[start : start + settings.LOG_WRITER_BATCH_SIZE])
        path.unlink(missing_ok=True)
        count += len(records)
    if count:
        log.info("replayed %d spooled log records", count)
    return count


def recover_journals() -> int:
    """Write the journals of processes that died on this machine (journal.py)."""
    if not settings.LOG_JOURNAL_DIR:
        return 0
    return recover(settings.LOG_JOURNAL_DIR, write_unstored, settings.LOG_WRITER_BATCH_SIZE)


def write_unstored(records: list[dict[str, Any]], stopping: threading.Event | None = None) -> None:
    """write_with_retry for records of which some may be stored already (a journal replayed after
    a crash): those are left out, so the live events and webhooks of a log are sent once."""
    ids = {record_id for record_id in map(_record_id, records) if record_id is not None}
    stored: set[uuid.UUID] = set()
    delay = 0.2
    while ids:
        try:
            stored = _stored_of(records)
            break
        except (OperationalError, InterfaceError, *_clickhouse_errors()) as exc:
            if stopping is not None and stopping.is_set():
                break  # write_with_retry spools them all: replaying a stored one is harmless
            log.warning("stored log ids not read (%s); retrying in %.1fs", exc, delay)
            close_old_connections()
            _drop_broken_connection()
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
    fresh = [record for record in records if _record_id(record) not in stored]
    if fresh:
        write_with_retry(fresh, stopping)


def _stored_of(records: list[dict[str, Any]]) -> set[uuid.UUID]:
    """The ids among the records the log store holds already."""
    if clickhouse.only():
        from .clickhouse import store

        logs = []
        for record in records:
            try:
                logs.append(build_log(record))
            except (KeyError, TypeError, ValueError):
                continue  # write_batch drops it, and says so
        return store.stored_ids(logs)
    ids = {record_id for record_id in map(_record_id, records) if record_id is not None}
    return set(RequestLog.objects.filter(id__in=ids).values_list("id", flat=True))


def _id_texts(records: list[dict[str, Any]]) -> set[str]:
    """The records' ids as text (ClickHouse's insert), the malformed ones' left out."""
    return {str(record_id) for record_id in map(_record_id, records) if record_id is not None}


def _record_id(record: dict[str, Any]) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(record["id"]))
    except (KeyError, TypeError, ValueError):
        return None


# The writers wait this long for more records after the first of a batch: at a low or
# moderate rate that turns one transaction per few records into one per batch (each
# commit is a WAL flush, CPU and I/O taken from the gateway on a shared machine), and
# live events still arrive well within a second. run_log_writer's batch is a burst of
# CPU that a gateway sharing its core waits out: 10 ms batches (about 15 rows at 1,500
# requests a second) cut the benchmark's scaled c=1 P99 from about 3.5 to 2.5 ms against
# 50 ms ones (docs/benchmark.md).
LINGER_SECONDS = 0.05
STREAM_LINGER_SECONDS = 0.01
# A stream writer's batch holds at most this much of the records' JSON, however few they are: with
# large bodies LOG_WRITER_BATCH_SIZE logs would hold gigabytes (a batch in hand takes about twice its
# JSON as Python objects, and two are in hand while one is inserted).
BATCH_BYTES = 32 * 2**20


class QueueWriter(threading.Thread):
    """Embedded default: drains the in-process queue, in the web process itself.

    It shares the interpreter lock with the event loop, so it lingers a little to write
    fewer, larger batches, and the interpreter is asked to switch threads every 0.5 ms
    instead of 5 ms so a batch never holds a request up for long. It runs at the event
    loop's own priority: a thread at a lower one (it once ran at SCHED_IDLE) can be left
    without a core while it holds the interpreter lock, and the event loop then waits for
    it as long as other processes keep the cores busy (a priority inversion: P95 tails of
    76 to 159 ms on a busy machine)."""

    def __init__(self, source: queue.SimpleQueue, journal: Journal | None = None):
        super().__init__(name="log-writer", daemon=True)
        self.source = source
        self.journal = journal
        self.writing_since: float | None = None
        self.stopping = threading.Event()

    def start(self) -> None:
        sys.setswitchinterval(0.0005)
        super().start()

    def run(self) -> None:
        replay_spool()
        recover_journals()
        while not (self.stopping.is_set() and self.source.empty()):
            batch = self._take()
            if batch:
                self.writing_since = batch[0][1].get("created_at")  # the log lag /metrics reports
                write_with_retry([record for _, record in batch], self.stopping)
                self.writing_since = None
                if self.journal is not None:
                    self.journal.done(segment for segment, _ in batch if segment is not None)
        connection.close()  # this thread's own database connection

    def _take(self) -> list[tuple[int | None, dict[str, Any]]]:
        try:
            first = self.source.get(timeout=0.2)
        except queue.Empty:
            return []
        size = settings.LOG_WRITER_BATCH_SIZE
        if self.source.qsize() < size and not self.stopping.is_set():
            # Linger without waking for every record that arrives meanwhile.
            self.stopping.wait(LINGER_SECONDS)
        batch = [first]
        while len(batch) < size:
            try:
                batch.append(self.source.get_nowait())
            except queue.Empty:
                break
        return batch

    def stop(self, timeout: float = 30.0) -> None:
        self.stopping.set()
        self.join(timeout)


GROUP = "log-writers"


class StreamWriter:
    """Consumes the Redis log stream in a consumer group; acks after commit."""

    def __init__(self, consumer: str, claim_idle_ms: int = 30_000):
        import redis

        self.redis = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=10, socket_connect_timeout=2)
        self.stream = settings.LOG_STREAM_KEY
        self.consumer = consumer
        self.claim_idle_ms = claim_idle_ms
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.written = 0
        # The batch being inserted (its future, the entry ids to acknowledge once it is written,
        # its record count) and the one thread that inserts.
        self._in_flight: tuple[Future, list[bytes], int] | None = None
        self._in_flight_ids: set[str] = set()  # (ClickHouse's insert: its logs' ids as text)
        self._pool: ThreadPoolExecutor | None = None
        # In the entries read last (a guess until the first read): records, and bytes of their JSON.
        self._records_per_entry = 50.0
        self._bytes_per_entry = 50.0 * 1024

    def ensure_group(self) -> None:
        import redis

        try:
            self.redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def start_thread(self) -> None:
        self.thread = threading.Thread(target=self.run, name="log-stream-writer", daemon=True)
        self.thread.start()

    def run(self) -> None:
        import redis

        delay = 0.5
        last_claim = 0.0
        while not self.stopping.is_set():
            try:
                self.ensure_group()
                if time.monotonic() - last_claim > 5:
                    self._settle()
                    replay_spool()
                    recover_journals()
                    self._process(self._claim_stale())
                    last_claim = time.monotonic()
                self._process(self._read_new(), overlap=True)
                delay = 0.5
            except redis.RedisError as exc:
                log.warning("log stream unavailable (%s); retrying in %.1fs", exc, delay)
                self.stopping.wait(delay)
                delay = min(delay * 2, 5.0)
        try:
            self._settle()
        finally:
            self._close()
            close_old_connections()

    def _entries_per_batch(self) -> int:
        """About a batch of records' worth of entries (LOG_WRITER_BATCH_SIZE records, or
        BATCH_BYTES of them): an entry holds one gateway process's few milliseconds of records (50
        to thousands under load), and a read of LOG_WRITER_BATCH_SIZE entries would hold a
        backlog's hundreds of thousands of records in memory, unacknowledged until the last of
        them is written."""
        return max(1, round(min(settings.LOG_WRITER_BATCH_SIZE / self._records_per_entry,
                                BATCH_BYTES / self._bytes_per_entry)))

    def _read_new(self) -> list[tuple[bytes, dict]]:
        size = self._entries_per_batch()
        # With a batch in flight, a short wait: an idle stream must not hold its acknowledgement.
        entries = self._read(size, block_ms=500 if self._in_flight is None else 20)
        if not entries:
            self._settle()
        if not entries or len(entries) >= size:
            return entries
        # Each entry is one gateway process's 5 ms batch: linger for the next ones.
        deadline = time.monotonic() + (0 if self.stopping.is_set() else STREAM_LINGER_SECONDS)
        while len(entries) < size:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms < 1:  # block=0 would wait forever
                break
            more = self._read(size - len(entries), block_ms=remaining_ms)
            if not more:
                break
            entries.extend(more)
        return entries

    def _read(self, count: int, block_ms: int) -> list[tuple[bytes, dict]]:
        response = self.redis.xreadgroup(GROUP, self.consumer, {self.stream: ">"}, count=count, block=block_ms)
        return response[0][1] if response else []

    def _claim_stale(self) -> list[tuple[bytes, dict]]:
        # Entries a crashed writer read but never acknowledged.
        _next, entries, *_ = self.redis.xautoclaim(
            self.stream, GROUP, self.consumer, min_idle_time=self.claim_idle_ms, start_id="0-0",
            count=self._entries_per_batch(),
        )
        return [entry for entry in entries if entry and entry[1]]

    def _process(self, entries: list[tuple[bytes, dict]], overlap: bool = False) -> None:
        """Write the entries' records and acknowledge the entries once they are written.

        `overlap`: return while the last batch is still being inserted, so that the next read
        and build run meanwhile (a ClickHouse insert is mostly the server's time, which the
        writer would otherwise wait out); it is acknowledged once written, before the next
        batch is handed over (_settle). Else every batch is written before this returns."""
        if not entries:
            return
        ids = [entry_id for entry_id, _ in entries]
        size = settings.LOG_WRITER_BATCH_SIZE
        batches: list[list[dict[str, Any]]] = [[]]
        held = records = stream_bytes = 0  # (held: the bytes of the last batch's records)
        for entry_id, fields in entries:
            try:
                many = b"b" in fields  # a gateway's batch of records, or one record
                text = fields[b"b" if many else b"r"]
                decoded = orjson.loads(text) if many else [orjson.loads(text)]
                if type(decoded) is not list or not all(type(record) is dict for record in decoded):
                    raise ValueError("not a record or a list of records")
            except (KeyError, ValueError):
                log.error("skipping malformed log stream entry %s", entry_id)
                continue
            stream_bytes += len(text)
            records += len(decoded)
            each = len(text) / max(1, len(decoded))
            for record in decoded:
                if len(batches[-1]) >= size or (held + each > BATCH_BYTES and batches[-1]):
                    batches.append([])
                    held = 0
                batches[-1].append(record)
                held += each
        self._records_per_entry = max(1.0, records / len(entries))
        self._bytes_per_entry = max(1.0, stream_bytes / len(entries))
        for number, batch in enumerate(batches):
            last = number == len(batches) - 1
            # Made while the batch before is inserted; the logs of that one are left out of this
            # one's (a log in both, sent twice by a gateway, is that one's to write).
            only = clickhouse.only()
            if only:
                rows, prepared = None, prepare_for_clickhouse(batch, self._in_flight_ids)
            else:
                rows, prepared = self._build(batch), None
            self._settle()
            self._in_flight = (self._inserter().submit(self._write, batch, rows, prepared),
                               ids if last else [], len(batch))
            if only:
                self._in_flight_ids = set(prepared.ids) if prepared is not None else _id_texts(batch)
        if not overlap:
            self._settle()

    def _build(self, batch: list[dict[str, Any]]) -> list[RequestLog] | None:
        """The batch's logs, or None when they cannot be built now (the database is away: the
        prices an operator set are read first); the insert then builds them as it retries."""
        if not batch:
            return []
        try:
            return build_logs(batch)
        except DatabaseError as exc:
            log.info("log batch not built ahead (%s): built as it is written", exc)
            _drop_broken_connection()
            return None

    def _write(self, records: list[dict[str, Any]], rows: list[RequestLog] | None, prepared: Any) -> None:
        if records:
            # Not given `stopping`: a stopping writer keeps retrying rather than spool what the
            # stream holds; its entries stay unacknowledged for another writer to claim.
            write_with_retry(records, rows=rows, prepared=prepared)

    def _settle(self) -> None:
        """Wait for the batch being inserted, then acknowledge its entries."""
        if self._in_flight is None:
            return
        future, ids, count = self._in_flight
        self._in_flight = None
        self._in_flight_ids = set()
        future.result()  # a writer's bug ends the writer, as it would without the overlap
        if ids:
            pipe = self.redis.pipeline(transaction=False)
            pipe.xack(self.stream, GROUP, *ids)
            pipe.xdel(self.stream, *ids)
            pipe.execute()
        self.written += count

    def _inserter(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="log-insert")
        return self._pool

    def _close(self) -> None:
        if self._pool is not None:
            self._pool.submit(close_old_connections).result()  # that thread's own database connection
            self._pool.shutdown()
            self._pool = None

    def stop(self, timeout: float = 30.0) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout)
