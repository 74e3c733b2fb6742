"""A log writer killed (SIGKILL) in the middle of a batch: the entries it had read
but not acknowledged are claimed by another writer, and every row lands once."""

import signal
import subprocess
import sys
import time

import orjson
import pytest
import redis

from analytics.models import RequestLog
from analytics.writer import GROUP
from bench.load import synthetic_record
from tests.base import redis_url
from tests.gateway.conftest import tenant  # noqa: F401  (fixture)
from tests.servers import ROOT, child_env, unique_stream_key

pytestmark = pytest.mark.django_db(transaction=True)

ENTRIES, PER_ENTRY = 400, 50  # one read takes the whole backlog: seconds of writing


def writer(name: str, stream: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "manage.py", "run_log_writer", "--name", name, *args], cwd=ROOT,
                            env=child_env(REDIS_URL=redis_url(), LOG_STREAM_KEY=stream),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_entries_of_a_writer_killed_mid_batch_are_finished_by_another_once(tenant):  # noqa: F811
    stream = unique_stream_key()
    client = redis.Redis.from_url(redis_url())
    records = [synthetic_record(tenant.org.id, tenant.key.id, i) for i in range(ENTRIES * PER_ENTRY)]
    pipe = client.pipeline(transaction=False)
    for start in range(0, len(records), PER_ENTRY):
        pipe.xadd(stream, {"b": orjson.dumps(records[start:start + PER_ENTRY])})
    pipe.execute()
    logs = RequestLog.objects.filter(org=tenant.org)
    doomed = writer("doomed", stream)
    survivor = None
    try:
        deadline = time.monotonic() + 60
        while logs.count() == 0:  # busy: its first rows are committed, the rest not yet
            assert doomed.poll() is None and time.monotonic() < deadline, "the writer never started writing"
            time.sleep(0.02)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(10)
        written_by_doomed = logs.count()
        pending = client.xpending(stream, GROUP)
        assert pending["pending"] > 0 and {c["name"] for c in pending["consumers"]} == {b"doomed"}
        assert written_by_doomed < len(records), "killed mid-batch, not after it"

        survivor = writer("survivor", stream, "--claim-idle", "1")
        deadline = time.monotonic() + 120
        while client.xpending(stream, GROUP)["pending"] or client.xlen(stream):
            assert survivor.poll() is None and time.monotonic() < deadline, "the survivor did not finish the batch"
            time.sleep(0.2)
        # The rows the killed writer had committed were delivered again: still stored once.
        assert logs.count() == len(records)
        assert set(map(str, logs.values_list("id", flat=True))) == {r["id"] for r in records}
    finally:
        if doomed.poll() is None:
            doomed.kill()
        if survivor is not None:
            survivor.terminate()
            output = survivor.communicate(timeout=30)[0]
            assert survivor.returncode == 0, output
        client.delete(stream)
