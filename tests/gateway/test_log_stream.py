"""The Redis log stream and its writer command (a writer killed mid-batch: tests/reliability)."""

import subprocess
import sys
import time
import uuid

import orjson
import pytest
import redis

from analytics.models import RequestLog
from analytics.logqueue import RedisStreamQueue
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
