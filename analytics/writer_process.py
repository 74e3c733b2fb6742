"""The embedded log writer, in a process of its own.

When daphne serves the embedded default (no REDIS_URL), a writer thread inside the web
process would share the interpreter lock with the event loop: each batch (building rows,
the SQLite insert and commit, the live events) holds requests up. So the web process only
appends each record to its journal (journal.py), and a child process reads the journal as
it grows and writes it. daphne forks it as it starts (Django loaded: it writes at once); a
replacement for one that died is `manage.py run_log_writer --journal DIR`.

- The journal is the queue. The child tails the segment files by byte offset and takes
  complete lines only; it deletes a segment once it is closed (the web process has moved on
  to a later one, or told the child it appends no more) and every record in it is written.
  The web process never deletes a segment in this mode.
- Within about POLL_SECONDS (plus the insert) of its append, a record is in the database.
- Live events: `write_batch` publishes through `analytics.live`, whose channel layer is in
  the web process's memory. In the child, `live.forward_to` sends each group message back
  over a pipe (one JSON line each, read by the web process's event loop with `add_reader`),
  and the web process hands them to its layer. Request webhooks and the embedded alert
  evaluation run in the child, with the write: once per batch, as before.
- Progress goes back over the same pipe, so /metrics reports how many records wait and how
  long the oldest has waited.
- The child dies: the web process logs it and starts another, which reads the segments that
  are left from their start and leaves out what is stored already (the log id is the key), so
  no record is written twice and no live event or webhook is sent twice.
- The web process dies, however (SIGKILL too): the child sees its control pipe end, writes
  what the journal holds and exits. It has inherited the descriptor of the directory's lock,
  so no other recoverer takes the directory meanwhile; what it could not finish, the next
  writer on the machine recovers (journal.recover).
- A graceful stop: the web process closes its last segment, writes "stop" to the control
  pipe and waits (bounded) for the child to finish.

The child runs at the web process's own priority (it inherits the nice value) under
SCHED_BATCH: the same share of the CPU, but it never preempts the event loop when it wakes.
A writer starved below the event loop's priority is how the SCHED_IDLE writer thread once
stalled requests (issue #16); a process of its own holds no lock the event loop waits for.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import orjson
from django.conf import settings
from django.db import connection, connections

from . import live
from .journal import Journal
from .writer import recover_journals, replay_spool, write_unstored, write_with_retry

log = logging.getLogger(__name__)

# How often the child looks for new lines: the most a record waits before its batch starts.
POLL_SECONDS = 0.02
# At most this much is read ahead of the writes (lines in memory; bytes a segment a scan).
BACKLOG_LINES = 5000
READ_BYTES = 8 << 20
# How often the child also looks for the journals of processes that died on this machine.
RECOVERY_SECONDS = 5.0
# A graceful stop waits this long for the child to write what is left.
STOP_SECONDS = 30.0
STOP_COMMAND = b"stop\n"


# --- The child: tail the web process's journal ------------------------------------------------


class _Segment:
    __slots__ = ("number", "file", "partial", "consumed", "replayed", "read", "written", "closed")

    def __init__(self, number: int, file, replayed: int = 0):
        self.number = number
        self.file = file
        self.partial = b""  # the start of a line not yet complete
        self.consumed = 0  # bytes of the complete lines taken
        self.replayed = replayed  # bytes a writer before this one may have written
        self.read = 0  # lines taken into the backlog
        self.written = 0  # of those, lines written
        self.closed = False  # nothing more will be appended


class JournalTail:
    """One journal directory, read while its process appends to it.

    The backlog holds (segment, line, maybe written already) and is filled a bounded amount at
    a time (BACKLOG_LINES, READ_BYTES a segment): a writer kept from the database for an hour
    must not read an hour of logs into memory."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.segments: dict[int, _Segment] = {}
        self.backlog: deque[tuple[int, bytes, bool]] = deque()
        self.behind = False  # the last scan stopped at a bound: more is waiting on disk
        # What is on disk now may have been written by a writer before this one (one that died):
        # never anything appended later.
        self._replayed = {}
        for number in self._numbers():
            try:
                self._replayed[number] = self._path(number).stat().st_size
            except FileNotFoundError:
                pass

    def _path(self, number: int) -> Path:
        return self.directory / f"{number:010d}.jsonl"

    def _numbers(self) -> list[int]:
        try:
            names = [entry.name for entry in os.scandir(self.directory)]
        except FileNotFoundError:
            return []
        return sorted(int(name[:-6]) for name in names if name.endswith(".jsonl") and name[:-6].isdigit())

    def scan(self, final: bool = False) -> int:
        """Take the lines completed since the last scan into the backlog; returns how many.
        `final`: the process appends no more (it exited, or sealed its journal)."""
        numbers = self._numbers()
        added = 0
        self.behind = False
        for number in numbers:
            if len(self.backlog) >= BACKLOG_LINES:
                self.behind = True
                break
            segment = self.segments.get(number)
            if segment is None:
                try:
                    file = open(self._path(number), "rb")
                except FileNotFoundError:
                    continue
                segment = self.segments[number] = _Segment(number, file, self._replayed.pop(number, 0))
            if segment.closed:
                continue
            # Decided before reading: a later segment is created only after this one was closed
            # (Journal._next_segment), so what is read now is all it will ever hold.
            closed = final or number != numbers[-1]
            data = segment.file.read(READ_BYTES)
            if data:
                lines = (segment.partial + data).split(b"\n")
                segment.partial = lines.pop()
                for line in lines:
                    segment.consumed += len(line) + 1
                    if line:
                        self.backlog.append((number, line, segment.consumed <= segment.replayed))
                        segment.read += 1
                        added += 1
            if len(data) == READ_BYTES:
                self.behind = True
            elif closed:
                segment.closed = True
                if segment.partial:
                    # Only a power loss can leave a line cut short: that record was never complete.
                    log.error("skipping a damaged journal line in %s", self._path(number))
                    segment.partial = b""
        return added

    def take(self, size: int) -> list[tuple[int, bytes, bool]]:
        return [self.backlog.popleft() for _ in range(min(size, len(self.backlog)))]

    def finish(self, batch: list[tuple[int, bytes, bool]]) -> tuple[list[list[int]], list[int]]:
        """The batch is written: delete the segments now closed and complete. Returns
        ([segment, lines written] for the segments of the batch, the segments deleted)."""
        touched: dict[int, _Segment] = {}
        for number, _, _ in batch:
            segment = self.segments[number]
            segment.written += 1
            touched[number] = segment
        removed = []
        for number, segment in list(self.segments.items()):
            if segment.closed and segment.written == segment.read:
                self._remove(segment)
                removed.append(number)
        return [[number, segment.written] for number, segment in touched.items()], removed

    def _remove(self, segment: _Segment) -> None:
        segment.file.close()
        try:
            self._path(segment.number).unlink()
        except FileNotFoundError:
            pass
        del self.segments[segment.number]

    def close(self) -> None:
        for segment in self.segments.values():
            segment.file.close()
        self.segments.clear()


def decode(batch: list[tuple[int, bytes, bool]]) -> list[dict[str, Any]]:
    records = []
    for number, line, _ in batch:
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            log.error("skipping a damaged journal line in segment %d", number)
    return records


class EventPipe:
    """The child's end of the pipe to the web process: one JSON object a line."""

    def __init__(self, fd: int):
        self.fd = fd
        self.lock = threading.Lock()  # the alert evaluator's thread sends too
        self.broken = False

    def send(self, message: dict[str, Any]) -> None:
        if self.broken:
            return
        data = memoryview(orjson.dumps(message, default=str) + b"\n")
        with self.lock:
            try:
                while data:
                    data = data[os.write(self.fd, data):]
            except OSError:  # the web process is gone: nobody to tell
                self.broken = True

    def forward_live(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        self.send({"live": messages})


class JournalWriter:
    """The child's loop: write the web process's journal as it grows (see the module's doc)."""

    def __init__(self, directory: Path, events: EventPipe | None = None, control: int | None = 0):
        self.directory = Path(directory)
        self.tail = JournalTail(self.directory)
        self.events = events
        self.control = control  # "stop" asks for the end; end of file: the web process died
        self.parent = os.getppid()
        self.stopping = threading.Event()  # write_with_retry spools rather than wait forever
        self.terminating = False
        self.parent_gone = False
        self.written = 0

    def terminate(self) -> None:
        """SIGTERM: end after the current batch (the web process starts another writer)."""
        self.terminating = True

    def run(self) -> None:
        replay_spool()
        recover_journals()
        last_recovery = time.monotonic()
        self.tail.scan()
        final = False
        while not self.terminating:
            while self.tail.backlog and not self.terminating:
                batch = self.tail.take(settings.LOG_WRITER_BATCH_SIZE)
                records = decode(batch)
                if any(maybe_written for _, _, maybe_written in batch):
                    # A writer before this one may have written these: leave out what is stored
                    # already, so nothing is published (live, webhooks) twice.
                    write_unstored(records, self.stopping)
                else:
                    write_with_retry(records, self.stopping)
                self.written += len(records)
                written, removed = self.tail.finish(batch)
                if self.events is not None:
                    self.events.send({"written": written, "removed": removed})
            if final and not self.tail.behind:
                # Everything is read and written: the segments left (the last one, or ones that
                # held nothing new) are closed now, so delete them.
                _, removed = self.tail.finish([])
                if removed and self.events is not None:
                    self.events.send({"written": [], "removed": removed})
                break
            if not final:
                if time.monotonic() - last_recovery >= RECOVERY_SECONDS:
                    recover_journals()
                    last_recovery = time.monotonic()
                final = self._wait(0 if self.tail.behind else POLL_SECONDS)
            self.tail.scan(final)
        self.tail.close()
        if final and self.parent_gone and not self.tail.backlog:
            # Its process is gone and every record is written: nobody else will remove it.
            shutil.rmtree(self.directory, ignore_errors=True)
        connection.close()

    def _wait(self, timeout: float) -> bool:
        """Sleep up to `timeout`; True when the web process appends no more (stop, or gone)."""
        if self.control is None:
            time.sleep(timeout)
        else:
            ready, _, _ = select.select([self.control], [], [], timeout)
            if ready:
                data = os.read(self.control, 4096)
                if not data:
                    return self._parent_died()
                if STOP_COMMAND.strip() in data:
                    log.info("log writer: asked to finish; writing what the journal holds")
                    self.stopping.set()
                    return True
        if os.getppid() != self.parent:
            return self._parent_died()
        return False

    def _parent_died(self) -> bool:
        log.warning("log writer: the web process is gone; writing what its journal holds, then exiting")
        self.parent_gone = True
        self.stopping.set()
        return True


def run_child(directory: Path, events_fd: int | None, control_fd: int | None = 0) -> None:
    """The child's whole life (forked by the web process, or `run_log_writer --journal`)."""
    try:
        with open("/proc/self/comm", "w") as comm:  # `ps -o comm`, top: what this process is
            comm.write("log-writer")
    except OSError:
        pass
    try:
        # The web process's own priority (nice value, so the same share of the CPU), as a batch
        # job: on a busy core a waking event loop preempts this writer, not the other way round
        # (the benchmark's c=1 P95 and P99 were lower with it on a shared machine). Not
        # SCHED_IDLE: this process holds nothing the event loop waits for, but it must never
        # be starved either.
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux
        pass
    events = None
    if events_fd is not None:
        events = EventPipe(events_fd)
        live.forward_to(events.forward_live)
    writer = JournalWriter(directory, events, control_fd)
    # Ctrl-C in a terminal reaches the whole process group: daphne, stopping, tells this writer
    # to finish. SIGTERM (an operator, a supervisor): end after the current batch.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: writer.terminate())
    writer.run()


# --- The web process: start the child, relay its events, restart it ---------------------------


class _Forked:
    """A forked child, with the parts of Popen's interface WriterProcess uses."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = 0  # reaped by someone else
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"log writer {self.pid}", timeout)
            time.sleep(0.02)
        return self.returncode

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class WriterProcess:
    """The web process's side: one child writing this process's (tailed) journal."""

    def __init__(self, journal: Journal, loop: asyncio.AbstractEventLoop):
        self.journal = journal
        self.loop = loop
        self.proc: subprocess.Popen | _Forked | None = None
        self.control: int | None = None  # our end of the child's stdin
        self.events: int | None = None  # our end of the child's event pipe
        self.buffer = b""
        self.started_at = 0.0
        self.failures = 0
        self.stopping = False
        self.restarts = 0

    @property
    def writing_since(self) -> float | None:
        """The wall-clock time of the oldest record not yet written (the lag /metrics reports)."""
        age = self.journal.oldest_pending_age()
        return time.time() - age if age else None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        """At start (heliconeproj/asgi.py): before the server runs, a fork is safe and quick."""
        if self.proc is None:
            self._spawn(fork=not self.loop.is_running() and threading.active_count() == 1)

    def _spawn(self, watch: bool = True, fork: bool = False) -> None:
        """Start a child. `fork`: a copy of this process, Django loaded, writing within
        milliseconds; only before the server runs, while this process has no other thread and no
        socket (a fork copies no thread but the locks other threads held, and would keep every
        client connection open in the child). Else a fresh `manage.py run_log_writer --journal`,
        a second or so to load Django. Either way the child inherits the descriptor of the
        journal's lock: the directory stays locked while the child finishes it, even after this
        process died."""
        control_read, control_write = os.pipe()
        events_read, events_write = os.pipe()
        try:
            if fork:
                self.proc = self._fork(control_read, control_write, events_read, events_write)
            else:
                command = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "run_log_writer",
                           "--journal", str(self.journal.directory), "--events-fd", str(events_write)]
                self.proc = subprocess.Popen(command, stdin=control_read, cwd=settings.BASE_DIR,
                                             pass_fds=(events_write, self.journal.lock_fd))
        except BaseException:
            os.close(control_write)
            os.close(events_read)
            raise
        finally:
            os.close(control_read)
            os.close(events_write)
        self.control, self.events, self.buffer = control_write, events_read, b""
        self.started_at = time.monotonic()
        log.info("log writer process %d started for journal %s", self.proc.pid, self.journal.directory.name)
        if watch:
            os.set_blocking(events_read, False)
            self.loop.add_reader(events_read, self._readable)

    def _fork(self, control_read: int, control_write: int, events_read: int, events_write: int) -> _Forked:
        connections.close_all()  # never share a database connection with the child
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        pid = os.fork()
        if pid:
            return _Forked(pid)
        status = 1
        try:
            os.close(control_write)  # else the child would never see this process's end
            os.close(events_read)
            run_child(self.journal.directory, events_write, control_read)
            status = 0
        except BaseException:
            log.exception("log writer process failed")
        finally:
            os._exit(status)  # never back into the web process's code, nor its exit handlers

    def _readable(self) -> None:
        try:
            data = os.read(self.events, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._consume(data)
        else:
            self._lost()

    def _consume(self, data: bytes, deliver: bool = True) -> None:
        *lines, self.buffer = (self.buffer + data).split(b"\n")
        for line in lines:
            try:
                message = orjson.loads(line)
            except orjson.JSONDecodeError:
                log.error("log writer process sent a line that is not JSON: %r", line[:200])
                continue
            if "live" in message and deliver:
                live.send_to_groups([(group, event) for group, event in message["live"]])
            if "written" in message:
                self.journal.progress(dict(message["written"]), message.get("removed", ()))

    def _close_pipes(self) -> None:
        if self.events is not None:
            try:
                self.loop.remove_reader(self.events)
            except (RuntimeError, ValueError):
                pass
            os.close(self.events)
            self.events = None
        if self.control is not None:
            os.close(self.control)
            self.control = None

    def _lost(self) -> None:
        """The child closed its end: it is exiting or has died."""
        self._close_pipes()
        self._reap(self.proc, 0)

    def _reap(self, proc: subprocess.Popen, tries: int) -> None:
        code = proc.poll()
        if code is None and tries < 50:
            self.loop.call_later(0.1, self._reap, proc, tries + 1)
            return
        if code is None:  # its pipe closed but it lives on: never two writers on one journal
            proc.kill()
            code = proc.wait()
        if self.stopping:
            return
        lived = time.monotonic() - self.started_at
        self.failures = self.failures + 1 if lived < 10 else 0
        delay = min(30.0, 0.5 * 2 ** (self.failures - 1)) if self.failures else 0.0
        log.error("log writer process %d exited with %s after %.1f s; starting another in %.1f s "
                  "(its journal waits on disk meanwhile)", proc.pid, code, lived, delay)
        self.loop.call_later(delay, self._restart)

    def _restart(self) -> None:
        if not self.stopping and self.events is None:
            self.restarts += 1
            self._spawn()

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        """At a graceful exit (the event loop has stopped): seal the journal, ask the child to
        write the rest and wait for it, at most `timeout` seconds."""
        self.stopping = True
        self.journal.seal()
        if self.proc is None or self.events is None or self.proc.poll() is not None:
            self._close_pipes()
            self._spawn(watch=False)  # none running (it died a moment ago): one to finish the work
        try:
            self.loop.remove_reader(self.events)
        except (RuntimeError, ValueError):
            pass
        os.set_blocking(self.events, True)
        try:
            os.write(self.control, STOP_COMMAND)
        except OSError:
            pass
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.events], [], [], remaining)
            if not ready:
                continue
            data = os.read(self.events, 1 << 16)
            if not data:
                break
            self._consume(data, deliver=False)  # the event loop is gone: no socket to tell
        try:
            self.proc.wait(max(0.5, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("log writer process %d has not finished within %.0f s: it goes on alone (the journal "
                        "stays locked until it is done)", self.proc.pid, timeout)
        self._close_pipes()
