"""The embedded log writer (no REDIS_URL). Under daphne: a process of its own that tails the
web process's journal, writes it, and sends the live events back to the web process, which
relays them to its sockets; killed, it is replaced, and nothing is written or announced twice.
Elsewhere (tests, commands): a thread in the process at the event loop's own priority, fed by
the in-process queue. Either way every record is in the process's journal first and leaves it
once written; a journal left by a process that died is written by the next writer, once.
(tests/reliability/test_faults_restart.py kills real daphne processes.)"""

import asyncio
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections import Counter

import aiohttp
import httpx
import orjson
import pytest

from analytics import journal as journal_module
from analytics import writer_process
from analytics.journal import Journal
from analytics.logqueue import InProcessQueue
from analytics.models import AlertRule, RequestLog, Webhook, WebhookDelivery
from analytics.writer_process import JournalTail
from tests.analytics.helpers import create_log
from tests.ops.helpers import sample
from tests.reliability.test_faults_restart import Load, embedded_env, exited, wait_until, writer_processes
from tests.servers import Daphne, proxy_calls

pytestmark = pytest.mark.django_db(transaction=True)


def record(org_id):
    return {"id": str(uuid.uuid4()), "org_id": org_id, "created_at": time.time(), "provider": "openai",
            "model": "gpt-4o-mini", "status": 200, "prompt_tokens": 10, "completion_tokens": 2}


def wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def journal_files(journal: Journal) -> list[str]:
    return sorted(p.name for p in journal.directory.glob("*.jsonl"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="scheduling classes are Linux's")
def test_the_writer_runs_at_normal_priority_and_writes_a_burst(settings, tenant, tmp_path):
    settings.REDIS_URL = ""
    settings.LOG_WRITER_BATCH_SIZE = 20
    queue = InProcessQueue(Journal(tmp_path))
    try:
        queue.put(record(tenant.org.id))
        wait_for(lambda: RequestLog.objects.filter(org=tenant.org).count() == 1, what="the first log")
        # Never below the event loop's priority: a writer left without a core while it holds the
        # interpreter lock stalls every request (the SCHED_IDLE writer it replaces did).
        assert os.sched_getscheduler(queue.writer.native_id) == os.SCHED_OTHER

        burst = [record(tenant.org.id) for _ in range(1000)]
        for r in burst:
            queue.put(r)
        wait_for(lambda: RequestLog.objects.filter(org=tenant.org).count() == 1001, what="the burst's logs")
        assert set(RequestLog.objects.filter(org=tenant.org).values_list("id", flat=True).iterator()) >= {
            uuid.UUID(r["id"]) for r in burst}
        # Everything written: nothing left pending in the journal, its files gone.
        wait_for(lambda: queue.journal.pending() == 0 and not journal_files(queue.journal),
                 what="the journal to empty")
    finally:
        queue.flush(10)
        queue.journal.close()
    assert not queue.writer.is_alive()
    assert not queue.journal.directory.exists(), "a journal with nothing pending is removed at exit"


def test_each_record_is_on_disk_before_the_queue_takes_it(settings, tenant, tmp_path):
    settings.REDIS_URL = ""
    journal = Journal(tmp_path)
    queue = InProcessQueue(journal)
    queue.writer = object()  # a writer that never runs: the records stay queued
    records = [record(tenant.org.id) for _ in range(3)]
    for r in records:
        queue.put(r)
    on_disk = journal_module.read_records(journal.directory)
    assert [r["id"] for r in on_disk] == [r["id"] for r in records]
    assert journal.pending() == 3
    journal.close()
    assert journal.directory.exists(), "a journal with records pending stays for recovery"


def test_the_journal_of_a_dead_process_is_written_once_and_removed(settings, tenant, tmp_path):
    settings.REDIS_URL = ""
    settings.LOG_JOURNAL_DIR = tmp_path
    # What a process killed with records still queued leaves behind: its directory, unlocked
    # (the kernel dropped the lock with the process), a record already written before it died
    # among those that were not, and a last line cut short.
    written_before = record(tenant.org.id)
    create_log(id=written_before["id"], org=tenant.org, provider="openai", model="m", status=200)
    lost = [record(tenant.org.id) for _ in range(5)]
    dead = tmp_path / "otherhost-4242-abcdef"
    dead.mkdir()
    (dead / journal_module.LOCK_NAME).touch()
    (dead / "0000000001.jsonl").write_bytes(
        b"".join(orjson.dumps(r) + b"\n" for r in [written_before, *lost[:3]]))
    (dead / "0000000002.jsonl").write_bytes(
        b"".join(orjson.dumps(r) + b"\n" for r in lost[3:]) + b'{"id": "cut sh')
    # A live process's journal is left alone.
    alive = Journal(tmp_path)
    alive.append(record(tenant.org.id))

    queue = InProcessQueue(Journal(tmp_path))
    try:
        queue.start()  # at process start, before any request
        wait_for(lambda: not dead.exists(), what="the dead journal to be recovered")
        ids = set(RequestLog.objects.filter(org=tenant.org).values_list("id", flat=True))
        assert ids == {uuid.UUID(r["id"]) for r in [written_before, *lost]}, "each lost record once, nothing else"
        assert alive.directory.exists() and alive.pending() == 1
    finally:
        queue.flush(10)
        queue.journal.close()
        alive.close()


# --- Under daphne: the writer process --------------------------------------------------------


class LiveTail:
    """A program tailing its org's traffic over the live WebSocket (its own thread and loop)."""

    def __init__(self, server: Daphne, raw_key: str):
        self.url = server.url.replace("http", "ws") + "/ws/orgs/acme/live/"
        self.raw_key = raw_key
        self.requests: list[str] = []
        self.alerts: list[dict] = []
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> "LiveTail":
        self.thread.start()
        assert self.ready.wait(10), "the live socket did not connect"
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join(10)

    async def _run(self) -> None:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(self.url, headers={"Authorization": f"Bearer {self.raw_key}"}) as ws:
                self.ready.set()
                while not self.stopping.is_set():
                    try:
                        message = await ws.receive_json(timeout=0.2)
                    except asyncio.TimeoutError:
                        continue
                    if message.get("type") == "request":
                        self.requests.append(message["id"])
                    elif message.get("type") == "alert":
                        self.alerts.append(message)


def scrape(server: Daphne) -> str:
    response = httpx.get(server.url + "/metrics")
    assert response.status_code == 200
    return response.text


def process_journals(root) -> list[str]:
    return [p.name for p in root.iterdir() if not p.name.startswith(".")]


def test_under_daphne_a_writer_process_writes_the_logs_and_their_live_events_arrive(tenant, mock_provider, tmp_path):
    AlertRule.objects.create(org=tenant.org, name="Any traffic", metric="request_count", threshold=0,
                             window_seconds=300, min_requests=1)
    server = Daphne(**embedded_env(mock_provider, tmp_path, ALERTS_EMBEDDED_SECONDS="0")).start()
    try:
        [writer] = wait_until(lambda: writer_processes(server.proc.pid), what="daphne's writer process")
        # Never below the event loop's priority (the SCHED_IDLE writer thread once stalled requests):
        # the same nice value, as a batch job that does not preempt the event loop when it wakes.
        assert os.sched_getscheduler(server.proc.pid) == os.SCHED_OTHER
        assert os.sched_getscheduler(writer) == os.SCHED_BATCH
        assert os.getpriority(os.PRIO_PROCESS, writer) == os.getpriority(os.PRIO_PROCESS, server.proc.pid)
        with LiveTail(server, tenant.raw_key) as tail:
            ids = proxy_calls(server.url, tenant.raw_key, 5, timeout=15)
            wait_until(lambda: set(ids) <= set(tail.requests), what="a live event for each request")
            # The embedded alert evaluator runs beside the writer; its event reaches the socket too.
            alert = wait_until(lambda: tail.alerts, what="the alert the writer's evaluator fired")[0]
        assert sorted(tail.requests) == sorted(ids), "one live event per request"
        assert alert["event"] == "alert.fired" and alert["rule"]["name"] == "Any traffic"
        stored = RequestLog.objects.filter(org=tenant.org).values_list("id", flat=True)
        assert sorted(str(log_id) for log_id in stored) == sorted(ids)
        assert process_journals(tmp_path / "journal"), "the web process's journal, locked while it lives"
    finally:
        server.stop()
    assert exited(writer), "daphne's graceful stop ends its writer process"
    assert process_journals(tmp_path / "journal") == [], "and the journal, written, is removed"


def test_a_killed_writer_process_is_replaced_and_nothing_is_written_or_announced_twice(tenant, mock_provider,
                                                                                     tmp_path):
    """SIGKILL of the writer process under load: daphne starts another, which writes what was
    appended meanwhile and leaves out what its predecessor had written (a segment is read again
    from its start): each log stored once, its live event and its request webhook sent at most
    once, and every request answered after the restart announced."""
    Webhook.objects.create(org=tenant.org, kind="requests", url="http://127.0.0.1:9/hook", secret="s")
    # No evaluator: the webhook's deliveries stay pending, one row per request.
    server = Daphne(**embedded_env(mock_provider, tmp_path, ALERTS_EMBEDDED="0")).start()
    load = None
    try:
        [first] = wait_until(lambda: writer_processes(server.proc.pid), what="daphne's writer process")
        with LiveTail(server, tenant.raw_key) as tail:
            load = Load(server.url, tenant.raw_key, threads=4, streams=False).start()
            time.sleep(2)
            os.kill(first, signal.SIGKILL)
            [second] = wait_until(lambda: [pid for pid in writer_processes(server.proc.pid) if pid != first],
                                  what="a new writer process")
            time.sleep(1)
            load.stop()
            after = proxy_calls(server.url, tenant.raw_key, 3, timeout=15)
            ids = [r[2] for r in load.results if r[3]] + after
            wait_until(lambda: RequestLog.objects.filter(id__in=ids).count() == len(ids), timeout=60,
                       what="every answered request's log")
            wait_until(lambda: set(after) <= set(tail.requests), what="the live events after the restart")
            time.sleep(0.5)  # a second event for an id would arrive by now
        assert len(ids) > 50, "the load should have been answered for a while"
        assert RequestLog.objects.filter(org=tenant.org).count() <= len(load.results) + load.failures + len(after)
        events = Counter(tail.requests)
        assert max(events.values()) == 1, [i for i, n in events.items() if n > 1][:5]
        webhooks = Counter(json.loads(body)["request"]["id"] for body in WebhookDelivery.objects.filter(
            org=tenant.org, event_type="request.logged").values_list("body", flat=True))
        assert max(webhooks.values()) == 1 and set(after) <= set(webhooks)
        assert f"log writer process {first} exited" in server.output()
        assert not exited(second)
    finally:
        if load is not None:
            load.stop()
        server.stop()


def test_metrics_count_what_the_writer_process_has_not_written_yet(tenant, mock_provider, tmp_path):
    server = Daphne(**embedded_env(mock_provider, tmp_path)).start()
    try:
        [writer] = wait_until(lambda: writer_processes(server.proc.pid), what="daphne's writer process")
        os.kill(writer, signal.SIGSTOP)  # a writer that cannot keep up, or a database that does not answer
        try:
            ids = proxy_calls(server.url, tenant.raw_key, 3, timeout=15)
            time.sleep(1.5)  # margin for a busy machine
            stalled = scrape(server)
            assert sample(stalled, "helicone_log_queue_depth") == 3
            assert sample(stalled, "helicone_log_writer_lag_seconds") >= 1
            assert not RequestLog.objects.filter(id__in=ids).exists()
        finally:
            os.kill(writer, signal.SIGCONT)
        wait_until(lambda: sample(scrape(server), "helicone_log_queue_depth") == 0, what="the writer to catch up")
        assert sample(scrape(server), "helicone_log_writer_lag_seconds") == 0
        assert RequestLog.objects.filter(id__in=ids).count() == 3
    finally:
        server.stop()


def test_the_tail_takes_complete_lines_and_deletes_only_closed_written_segments(monkeypatch, tmp_path):
    monkeypatch.setattr(journal_module, "SEGMENT_RECORDS", 2)
    journal = Journal(tmp_path, tailed=True)
    tail = JournalTail(journal.directory)
    records = [record(1) for _ in range(3)]
    for r in records:
        journal.append(r)
    assert journal_files(journal) == ["0000000001.jsonl", "0000000002.jsonl"], "the appender deletes nothing"
    assert tail.scan() == 3
    batch = tail.take(10)
    assert [orjson.loads(line)["id"] for _, line, _ in batch] == [r["id"] for r in records]
    assert journal.pending() == 3
    written, removed = tail.finish(batch)
    journal.progress(dict(written), removed)
    # Segment 1 is closed (the appender moved on) and written: deleted. Segment 2 may still grow.
    assert removed == [1] and journal_files(journal) == ["0000000002.jsonl"]
    assert journal.pending() == 0 and journal.oldest_pending_age() == 0

    # A line is taken only once it is complete (a reader can see a write half done).
    half = orjson.dumps(record(1))
    with open(journal.directory / "0000000002.jsonl", "ab") as fh:
        fh.write(half[:20])
        fh.flush()
        assert tail.scan() == 0
        fh.write(half[20:] + b"\n")
    assert tail.scan() == 1
    written, removed = tail.finish(tail.take(10))
    assert removed == [] and journal_files(journal) == ["0000000002.jsonl"]

    # A writer that starts on a journal (its predecessor died) may find records written already
    # among those on disk, never among those appended later; and it reads a bounded amount ahead.
    monkeypatch.setattr(writer_process, "BACKLOG_LINES", 2)
    journal.append(record(1))  # segment 2 now holds three lines
    successor = JournalTail(journal.directory)
    journal.append(record(1))  # segment 3
    journal.append(record(1))
    assert successor.scan() == 3 and successor.behind, "segment 3 left on disk: enough is read ahead"
    assert [maybe for _, _, maybe in successor.take(10)] == [True, True, True]
    assert successor.scan() == 2 and not successor.behind
    assert [maybe for _, _, maybe in successor.take(10)] == [False, False]
    assert tail.scan() == 3
    assert tail.finish(tail.take(10))[1] == [2]

    journal.seal()  # a graceful stop: the appender appends no more
    assert tail.scan(final=True) == 0
    assert tail.finish([]) == ([], [3])
    assert journal_files(journal) == []
    journal.close()
    assert not journal.directory.exists()
