"""The embedded log writer (no REDIS_URL): a background thread in the web process,
at idle priority so requests come first, with a normal-priority helper while a
backlog builds up (the benchmark shows what the priority buys; this shows the
logs still all land)."""

import os
import sys
import time
import uuid

import pytest

from analytics.models import RequestLog
from analytics.logqueue import InProcessQueue

pytestmark = pytest.mark.django_db(transaction=True)

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SCHED_IDLE is Linux's")


def record(org_id):
    return {"id": str(uuid.uuid4()), "org_id": org_id, "created_at": time.time(), "provider": "openai",
            "model": "gpt-4o-mini", "status": 200, "prompt_tokens": 10, "completion_tokens": 2}


def wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@linux_only
def test_the_writer_runs_at_idle_priority_and_a_burst_gets_a_helper_that_stops_when_drained(settings, tenant):
    settings.REDIS_URL = ""
    settings.LOG_WRITER_BATCH_SIZE = 20  # a helper from 5 batches (100 records) on
    queue = InProcessQueue()
    try:
        queue.put(record(tenant.org.id))
        wait_for(lambda: RequestLog.objects.filter(org=tenant.org).count() == 1, what="the first log")
        assert os.sched_getscheduler(queue.writer.native_id) == os.SCHED_IDLE
        assert queue.helper is None

        burst = [record(tenant.org.id) for _ in range(1000)]
        for r in burst:  # faster than the writer's 50 ms linger: the backlog passes 100
            queue.put(r)
        helper = queue.helper
        assert helper is not None and helper.native_id is not None
        # Started by the enqueuing thread: its priority, not the background writer's.
        assert os.sched_getscheduler(helper.native_id) == os.SCHED_OTHER

        wait_for(lambda: RequestLog.objects.filter(org=tenant.org).count() == 1001, what="the burst's logs")
        helper.join(10)
        assert not helper.is_alive(), "the helper should stop once the backlog is below a batch"
        assert queue.writer.is_alive()
        assert set(RequestLog.objects.filter(org=tenant.org).values_list("id", flat=True).iterator()) >= {
            uuid.UUID(r["id"]) for r in burst}
    finally:
        queue.flush(10)
    assert not queue.writer.is_alive()


def test_a_steady_trickle_is_written_by_the_background_writer_alone(settings, tenant):
    settings.REDIS_URL = ""
    settings.LOG_WRITER_BATCH_SIZE = 20
    queue = InProcessQueue()
    try:
        for _ in range(30):
            queue.put(record(tenant.org.id))
            time.sleep(0.01)
        wait_for(lambda: RequestLog.objects.filter(org=tenant.org).count() == 30, what="the trickle's logs")
        assert queue.helper is None
    finally:
        queue.flush(10)
