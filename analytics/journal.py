"""The journal: each log record is on local disk before its client gets the last byte.

A log record waits in memory before it is written (embedded: the in-process queue; scaled:
a few milliseconds before it is appended to the Redis stream). A process that dies abruptly
(a crash, an OOM kill, `kill -9` during a deploy) would lose those records, though their
clients were answered. So every record is first appended to the journal:

- Each process appends to segment files (JSON lines) in a directory of its own under
  LOG_JOURNAL_DIR, and holds an exclusive lock (flock) on that directory's `lock` file for
  as long as it lives: the kernel releases the lock when the process dies, however it dies.
- A record is done once it is in the database (embedded) or in the Redis stream or the
  spool (scaled). A segment is deleted once every record in it is done.
- Tailed (embedded, served by daphne): the journal is the queue. A writer process of its
  own (analytics/writer_process.py) reads the segments as they grow and deletes each one
  once it is closed (the process has moved on to the next) and written; the process only
  appends, and learns from the writer how far it got (`progress`).
- `recover` takes the directories whose lock is free (their process is gone), writes their
  records through the writer (idempotent: the log id is the key, so a record written
  before the death is not written twice) and deletes them. The writers call it when they
  start and every few seconds.

What survives: an `os.write` is in the kernel's page cache when it returns, so the
death of the process loses nothing. A power loss or a kernel crash loses what the kernel
had not yet flushed (a few seconds of logs at most, by its dirty-page writeback), unless
LOG_JOURNAL_FSYNC_SECONDS asks a background thread to fsync the open segment that often
(docs/operations.md "The log pipeline" has the figures).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

LOCK_NAME = "lock"
# A segment is closed after this many records or seconds, so the one being appended to
# stays small and the finished ones can be deleted while traffic goes on.
SEGMENT_RECORDS = 2000
SEGMENT_SECONDS = 2.0


class Journal:
    """This process's journal directory. `append` is called on the event loop (a write of
    about one kilobyte to the page cache: a few microseconds), `done` by whoever moved the
    records on; both are thread-safe.

    `tailed`: a writer process reads and deletes the segments; this process never deletes
    one, and counts what is not yet written from the writer's `progress` reports."""

    def __init__(self, root: Path, fsync_seconds: float = 0.0, tailed: bool = False):
        self.root = Path(root)
        self.tailed = tailed
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        # Made under a dot name, locked, then renamed: a recoverer never sees it unlocked.
        building = self.root / f".{name}"
        building.mkdir()
        self._lock_fd = os.open(building / LOCK_NAME, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.directory = self.root / name
        building.rename(self.directory)
        self.lock = threading.Lock()
        self.segment = 0
        self._fd: int | None = None
        self._count = 0
        self._opened_at = 0.0
        self._pending: Counter[int] = Counter()  # segment -> records not done yet (tailed: appended)
        # Tailed: segment -> records the writer process has written, and the monotonic time of
        # each append (for the lag /metrics reports).
        self._written: dict[int, int] = {}
        self._appended_at: dict[int, list[float]] = {}
        self._dirty = False
        self.closed = False
        # Started with the first segment, not here: a process with no other thread yet can
        # still fork its writer process (writer_process.py).
        self._fsync_seconds = fsync_seconds
        self._fsync_started = False

    def _path(self, segment: int) -> Path:
        return self.directory / f"{segment:010d}.jsonl"

    def append(self, record: dict[str, Any]) -> tuple[int, bytes]:
        """Write one record; returns (its segment, the JSON it was written as)."""
        data = orjson.dumps(record)
        with self.lock:
            now = time.monotonic()
            if self._fd is None or self._count >= SEGMENT_RECORDS or now - self._opened_at >= SEGMENT_SECONDS:
                self._next_segment()
            os.write(self._fd, data + b"\n")
            self._count += 1
            self._pending[self.segment] += 1
            if self.tailed:
                self._appended_at[self.segment].append(now)
            self._dirty = True
            return self.segment, data

    def _next_segment(self) -> None:
        # The old segment is closed before the next one exists: a reader that sees a later
        # segment knows the earlier ones are complete.
        if self._fd is not None:
            os.close(self._fd)
            if not self.tailed and not self._pending[self.segment]:
                self._unlink(self.segment)
        if self._fsync_seconds > 0 and not self._fsync_started:
            self._fsync_started = True
            threading.Thread(target=self._fsync_loop, args=(self._fsync_seconds,), name="journal-fsync",
                             daemon=True).start()
        self.segment += 1
        self._fd = os.open(self._path(self.segment), os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        self._count = 0
        self._opened_at = time.monotonic()
        if self.tailed:
            self._appended_at[self.segment] = []

    def done(self, segments: Iterable[int]) -> None:
        """The records (one segment number each) are safe elsewhere now."""
        with self.lock:
            for segment in segments:
                self._pending[segment] -= 1
                if self._pending[segment] > 0:
                    continue
                del self._pending[segment]
                if segment != self.segment:
                    self._unlink(segment)
                elif self._fd is not None:
                    # The open segment holds nothing pending: start afresh at the next record.
                    os.close(self._fd)
                    self._fd = None
                    self._unlink(segment)

    def _unlink(self, segment: int) -> None:
        try:
            self._path(segment).unlink()
        except FileNotFoundError:
            pass

    def progress(self, written: dict[int, int], removed: Iterable[int] = ()) -> None:
        """Tailed: the writer process has written `written[segment]` records of each segment
        (counts only grow: a restarted writer counts again from the start of a segment) and
        deleted the `removed` segments."""
        with self.lock:
            for segment, count in written.items():
                if segment in self._pending:
                    self._written[segment] = max(count, self._written.get(segment, 0))
            for segment in removed:
                self._pending.pop(segment, None)
                self._written.pop(segment, None)
                self._appended_at.pop(segment, None)

    def pending(self) -> int:
        with self.lock:
            if self.tailed:
                return sum(max(0, count - self._written.get(segment, 0)) for segment, count in self._pending.items())
            return sum(self._pending.values())

    def oldest_pending_age(self) -> float:
        """Tailed: seconds since the oldest record not yet written was appended (0 if none)."""
        with self.lock:
            for segment in sorted(self._pending):
                times = self._appended_at.get(segment, ())
                written = self._written.get(segment, 0)
                if written < len(times):
                    return max(0.0, time.monotonic() - times[written])
            return 0.0

    @property
    def lock_fd(self) -> int:
        """The descriptor holding the directory's lock (a writer process inherits it, so the
        directory stays locked while the writer finishes it after this process died)."""
        return self._lock_fd

    def seal(self) -> None:
        """Close the open segment: everything appended so far is complete on disk (at a
        graceful exit, before the writer process is asked to finish)."""
        with self.lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def close(self) -> None:
        """At a graceful exit: remove the directory when every record is done (tailed: when
        the writer process has deleted every segment); else leave it for `recover` (the lock
        goes with the process)."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if self.tailed:
                finished = not any(self.directory.glob("*.jsonl"))
            else:
                finished = not any(self._pending.values())
            if finished:
                shutil.rmtree(self.directory, ignore_errors=True)
            os.close(self._lock_fd)

    def _fsync_loop(self, seconds: float) -> None:
        while not self.closed:
            time.sleep(seconds)
            with self.lock:
                fd, dirty, self._dirty = self._fd, self._dirty, False
                if fd is not None and dirty:
                    fd = os.dup(fd)  # fsync outside the lock, on a descriptor a rotation cannot close
                else:
                    fd = None
            if fd is not None:
                try:
                    os.fdatasync(fd)
                finally:
                    os.close(fd)


def read_records(directory: Path) -> list[dict[str, Any]]:
    records = []
    for path in sorted(directory.glob("*.jsonl")):
        with open(path, "rb") as fh:
            for line in fh:
                try:
                    records.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    # Only a power loss can cut a line short: that record was never complete.
                    log.error("skipping a damaged journal line in %s", path)
    return records


def recover(root: Path, write: Callable[[list[dict[str, Any]]], None], batch_size: int = 500,
            own: Journal | None = None) -> int:
    """Write the records of every journal directory whose process is gone; returns how many.

    Blocking (the database is written): call it from a writer's thread, never the event loop."""
    root = Path(root)
    if not root.is_dir():
        return 0
    count = 0
    for directory in sorted(root.iterdir()):
        if directory.name.startswith(".") or not directory.is_dir():
            continue
        if own is not None and directory == own.directory:
            continue
        try:
            fd = os.open(directory / LOCK_NAME, os.O_RDWR)
        except FileNotFoundError:  # another recoverer has just removed it
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its process is alive
            records = read_records(directory)
            for start in range(0, len(records), batch_size):
                write(records[start:start + batch_size])
            shutil.rmtree(directory, ignore_errors=True)
            count += len(records)
            if records:
                log.warning("recovered %d log records from the journal of a process that died (%s)",
                            len(records), directory.name)
        finally:
            os.close(fd)
    return count
