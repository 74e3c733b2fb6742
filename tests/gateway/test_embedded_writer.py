"""The embedded log writer (no REDIS_URL): a thread in the web process at the event loop's own
priority, fed by the in-process queue; every record is in the process's journal first and
leaves it once written. A journal left by a process that died is written by the next writer,
once. (tests/reliability/test_faults_restart.py kills real daphne processes.)"""

import os
import sys
import time
import uuid

import orjson
import pytest

from analytics import journal as journal_module
from analytics.journal import Journal
from analytics.logqueue import InProcessQueue
from analytics.models import RequestLog

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
    RequestLog.objects.create(id=written_before["id"], org=tenant.org, provider="openai", model="m", status=200)
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
