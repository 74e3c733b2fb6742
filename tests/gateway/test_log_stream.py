"""The Redis log stream and its writer command (a writer killed mid-batch: tests/reliability)."""

import contextlib
import subprocess
import sys
import threading
import time
import uuid

import orjson
import pytest
import redis

from analytics.logqueue import RedisStreamQueue
from analytics.models import RequestLog
from tests.base import redis_url
from tests.servers import ROOT, child_env, unique_stream_key

pytestmark = pytest.mark.django_db(transaction=True)


def record(org_id, **extra):
    return {"id": str(uuid.uuid4()), "org_id": org_id, "created_at": time.time(), "provider": "openai",
            "model": "gpt-4o-mini", "status": 200, "prompt_tokens": 10, "completion_tokens": 2, **extra}


@pytest.fixture
def stream(settings, tenant):
    settings.REDIS_URL = redis_url()
    settings.LOG_STREAM_KEY = unique_stream_key()
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield settings.LOG_STREAM_KEY
    client.delete(settings.LOG_STREAM_KEY)


def test_run_log_writer_command_drains_the_stream_and_stops_on_sigterm(stream, tenant, settings):
    records = [record(tenant.org.id, cost_usd=None) for _ in range(50)]
    queue = RedisStreamQueue(settings.REDIS_URL, stream)
    queue.buffer.extend((None, orjson.dumps(r)) for r in records)  # (journal segment, record as JSON)
    queue.flush_sync()
    proc = subprocess.Popen([sys.executable, "manage.py", "run_log_writer", "--name", "t1"], cwd=ROOT,
                            env=child_env(REDIS_URL=settings.REDIS_URL, LOG_STREAM_KEY=stream),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        while RequestLog.objects.filter(org=tenant.org).count() < 50:
            assert time.monotonic() < deadline, "writer did not drain the stream"
            time.sleep(0.1)
    finally:
        proc.terminate()
        output = proc.communicate(timeout=20)[0]
    assert proc.returncode == 0, output
    assert "50 records written" in output


def test_writer_is_not_needed_in_the_embedded_default(settings):
    settings.REDIS_URL = ""
    result = subprocess.run([sys.executable, "manage.py", "run_log_writer"], cwd=ROOT,
                            env=child_env(REDIS_URL=""), capture_output=True, text=True)
    assert result.returncode != 0 and "REDIS_URL is not set" in result.stderr


@pytest.fixture
def clickhouse_only(settings):
    """ClickHouse as the only log store (CLICKHOUSE_URL), reached through a relay the test can cut,
    in a database of the test's own."""
    from analytics.clickhouse import client, schema
    from tests.servers import TcpProxy, clickhouse_server

    server = clickhouse_server()
    relay = TcpProxy("127.0.0.1", server.http_port).start()
    database = f"test_{uuid.uuid4().hex[:12]}"
    settings.CLICKHOUSE_URL = f"http://default:@127.0.0.1:{relay.port}/{database}"
    settings.CLICKHOUSE_ONLY = True
    schema.migrate()
    yield relay
    relay.resume()
    client(database=False).command(f"DROP DATABASE IF EXISTS `{database}`")
    relay.stop()


def fill(stream, org_id, entries, per_entry):
    """The stream as gateways fill it: entries of several records each; returns the records."""
    client = redis.Redis.from_url(redis_url())
    records = []
    for _ in range(entries):
        batch = [record(org_id, cost_usd=None) for _ in range(per_entry)]
        client.xadd(stream, {"b": orjson.dumps(batch)})
        records.extend(batch)
    return records


def stored(org_id):
    from analytics.clickhouse import client

    logs = client().query("SELECT count(), uniqExact(id) FROM request_logs WHERE org_id = {o:UInt64}",
                          parameters={"o": org_id}).result_rows[0]
    rollup = client().query("SELECT sum(requests) FROM log_rollups WHERE org_id = {o:UInt64} AND dim = ''",
                            parameters={"o": org_id}).result_rows[0][0]
    return logs[0], logs[1], rollup


@contextlib.contextmanager
def running_writer(consumer):
    """run_log_writer's loop in a thread, stopped when the block ends."""
    from analytics.writer import StreamWriter

    writer = StreamWriter(consumer=consumer)
    writer.ensure_group()
    thread = threading.Thread(target=writer.run)
    thread.start()
    try:
        yield writer
    finally:
        writer.stopping.set()
        thread.join(30)


def wait_written(writer, count):
    deadline = time.monotonic() + 30
    while writer.written < count:
        assert time.monotonic() < deadline, f"{writer.written} of {count} written"
        time.sleep(0.05)


def test_clickhouse_writer_builds_the_next_batch_while_one_is_inserted(stream, tenant, clickhouse_only, settings):
    """Batches are inserted one after another while the next is read and built: every log once (in
    the logs and in the rollups), every entry acknowledged and deleted at the end."""
    settings.LOG_WRITER_BATCH_SIZE = 40
    records = fill(stream, tenant.org.id, entries=12, per_entry=25)
    with running_writer("t1") as writer:
        wait_written(writer, len(records))
    assert stored(tenant.org.id) == (300, 300, 300)
    client = redis.Redis.from_url(redis_url())
    assert client.xpending(stream, "log-writers")["pending"] == 0 and client.xlen(stream) == 0
    assert not RequestLog.objects.exists()  # ClickHouse only


def test_clickhouse_writer_acknowledges_nothing_it_could_not_insert(stream, tenant, clickhouse_only, settings):
    """With ClickHouse away, the batch being inserted and the one read meanwhile stay pending in the
    stream (a writer killed now loses nothing: another claims them), and the writer reads no more
    than those two batches' entries (a backlog is read a batch at a time, not held in memory);
    once ClickHouse is back every entry is written and acknowledged."""
    settings.LOG_WRITER_BATCH_SIZE = 50
    clickhouse_only.pause()
    records = fill(stream, tenant.org.id, entries=8, per_entry=25)
    client = redis.Redis.from_url(redis_url())
    with running_writer("t2") as writer:
        deadline = time.monotonic() + 10
        while client.xpending(stream, "log-writers")["pending"] < 2:
            assert time.monotonic() < deadline, "the writer did not read the stream"
            time.sleep(0.05)
        time.sleep(1.0)  # retrying meanwhile
        assert writer.written == 0 and client.xlen(stream) == 8
        assert 2 <= client.xpending(stream, "log-writers")["pending"] <= 4  # two batches of 50 at most
        clickhouse_only.resume()
        wait_written(writer, len(records))
    assert stored(tenant.org.id) == (200, 200, 200)
    assert client.xpending(stream, "log-writers")["pending"] == 0 and client.xlen(stream) == 0


def test_clickhouse_writer_writes_a_log_sent_twice_once(stream, tenant, clickhouse_only, settings):
    """A gateway that sent an entry again (its XADD timed out after reaching Redis) puts a log in two
    batches, the second maybe made while the first is still being inserted: it is written once, and
    counted once in the rollups."""
    settings.LOG_WRITER_BATCH_SIZE = 20
    client = redis.Redis.from_url(redis_url())
    batches = [[record(tenant.org.id, cost_usd=None) for _ in range(20)] for _ in range(6)]
    batches[1][0] = batches[0][0]  # the next batch, built while the first is inserted
    batches[4][5] = batches[0][5]  # a later one, once the first is stored
    for batch in batches:
        client.xadd(stream, {"b": orjson.dumps(batch)})
    with running_writer("t3") as writer:
        wait_written(writer, 120)
    assert stored(tenant.org.id) == (118, 118, 118)


def test_a_batch_holds_at_most_batch_bytes_of_records(stream, tenant, settings, monkeypatch):
    """Large bodies make a batch of fewer logs: each batch holds at most BATCH_BYTES of the records'
    JSON, however many LOG_WRITER_BATCH_SIZE allows, and the next read takes about a batch's bytes
    of entries (a backlog of large logs is not held in memory)."""
    from analytics import writer as writer_module

    settings.LOG_WRITER_BATCH_SIZE = 1000
    monkeypatch.setattr(writer_module, "BATCH_BYTES", 100_000)
    written = []
    monkeypatch.setattr(writer_module, "write_with_retry", lambda records, **_: written.append(len(records)))
    client = redis.Redis.from_url(redis_url())
    for _ in range(6):  # entries of 3 logs of ~40 KB each
        client.xadd(stream, {"b": orjson.dumps([record(tenant.org.id, request_body="x" * 40_000)
                                                for _ in range(3)])})
    writer = writer_module.StreamWriter(consumer="bytes")
    writer.ensure_group()
    writer._process(writer._read(100, block_ms=100))
    assert written == [2] * 9  # a third log would pass 100,000 bytes
    assert writer._entries_per_batch() == 1  # an entry is ~120 KB
    assert client.xpending(stream, "log-writers")["pending"] == 0


COLLECTOR = """
import gc, time, weakref
from analytics.management.commands import run_log_writer
run_log_writer.COLLECT_SECONDS = 0.2
run_log_writer.tune_collector()
class Node:
    pass
node = Node()
node.self = node  # a cycle: its reference count never drops to zero
gone = weakref.ref(node)
del node
print("automatic", gc.isenabled())
time.sleep(1.0)
print("freed", gone() is None)
"""


def test_the_writers_collector_runs_on_a_timer_and_still_frees_cycles():
    """run_log_writer turns the collector's automatic passes off (they examined every batch's logs
    while they lived) and collects on a timer instead: cyclic garbage is still freed."""
    done = subprocess.run([sys.executable, "manage.py", "shell", "-c", COLLECTOR], cwd=ROOT, env=child_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "automatic False" in done.stdout and "freed True" in done.stdout, done.stdout
