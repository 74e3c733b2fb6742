"""daphne restarted or killed under load: every request that got a complete 200 has its
log row, once. Embedded, the stopping process asks its writer process to write what its
journal holds; scaled (REDIS_URL), it hands what is left to the Redis stream, which the new
process's writer consumes. Killed with SIGKILL, daphne's writer process writes its journal
alone; killed together, the next daphne recovers the journal."""

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from analytics.models import RequestLog
from tests.gateway.conftest import mock_provider, tenant, wait_for_log  # noqa: F401  (fixtures)
from tests.servers import Daphne, unique_stream_key

pytestmark = pytest.mark.django_db(transaction=True)

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "restart"}]}
# Streams of ~0.2 s, so some are in flight when the old process is told to stop.
STREAM_HEADERS = {"X-Mock-Chunks": "10", "X-Mock-Chunk-Delay-Ms": "20"}


def embedded_env(mock_provider, tmp_path: Path, **extra: str) -> dict[str, str]:  # noqa: F811
    """daphne's environment for the embedded default whatever the test run's setup (no Redis,
    SQLite or PostgreSQL), with a journal directory of the test's own."""
    return {"UPSTREAM_OPENAI_URL": mock_provider.url, "REDIS_URL": "", "LOG_JOURNAL_DIR": str(tmp_path / "journal"),
            "LOG_SPOOL_DIR": str(tmp_path / "spool"), **extra}


def writer_processes(pid: int) -> list[int]:
    """The log writer processes process `pid` started (named `log-writer` in ps), from /proc."""
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += (task / "children").read_text().split()
        except OSError:
            pass
    found = []
    for child in map(int, children):
        try:
            name = Path(f"/proc/{child}/comm").read_text().strip()
        except OSError:
            continue
        if name == "log-writer" and not exited(child):
            found.append(child)
    return found


def exited(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def wait_until(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def process_journals(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "journal").iterdir() if not p.name.startswith(".")]


class Load:
    """Client threads sending plain and streamed requests to whichever server is current."""

    def __init__(self, url: str, raw_key: str, threads: int = 6, streams: bool = True):
        self.url = url
        self.streams = streams
        self.raw_key = raw_key
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.results: list[tuple[str, int, str, bool]] = []  # (server url, status, helicone id, complete)
        self.failures = 0
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def start(self) -> "Load":
        for thread in self.threads:
            thread.start()
        return self

    def _run(self, index: int) -> None:
        headers = {"Helicone-Auth": f"Bearer {self.raw_key}"}
        i = 0
        client = httpx.Client(timeout=30)  # keep-alive, as SDKs do; a new server means a new connection
        while not self.stopping.is_set():
            url, stream = self.url, self.streams and (i + index) % 2 == 1
            i += 1
            try:
                response = client.post(url + "/oai/v1/chat/completions", json={**BODY, "stream": stream},
                                       headers={**headers, **(STREAM_HEADERS if stream else {})})
            except httpx.HTTPError:  # the old process went away mid-request: no complete answer
                with self.lock:
                    self.failures += 1
                time.sleep(0.02)
                continue
            complete = response.status_code == 200 and (
                response.content.rstrip().endswith(b"data: [DONE]") if stream else "choices" in response.json())
            with self.lock:
                self.results.append((url, response.status_code, response.headers.get("helicone-id", ""), complete))
        client.close()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(60)


def test_no_log_is_lost_from_requests_completed_across_a_restart(tenant, mock_provider):  # noqa: F811
    env = {"UPSTREAM_OPENAI_URL": mock_provider.url, "LOG_STREAM_KEY": unique_stream_key(),
           "LOG_SPOOL_DIR": f"var/spool-test-{time.time_ns()}"}
    old = Daphne(**env).start()
    new = None
    load = Load(old.url, tenant.raw_key).start()
    try:
        time.sleep(3)
        new = Daphne(**env).start()
        load.url = new.url  # the balancer moves on while the old process still has requests in flight
        old.proc.terminate()
        old.proc.wait(30)
        assert old.proc.returncode == 0, old.output()
        time.sleep(3)
        load.stop()
        complete = [r for r in load.results if r[3]]
        assert {r[0] for r in complete} == {old.url, new.url}, "both processes served requests"
        assert all(r[1] == 200 for r in load.results), "a request that reached a server was refused"
        ids = [r[2] for r in complete]
        for log_id in ids:
            wait_for_log(log_id, timeout=60)
        rows = RequestLog.objects.filter(org=tenant.org)
        assert rows.filter(id__in=ids).count() == len(ids) == len(set(ids))
        # Nothing written twice: no more rows than requests that reached a server.
        assert rows.count() <= len(load.results) + load.failures
    finally:
        load.stop()
        old.stop()
        if new is not None:
            new.stop()


def test_no_answered_request_loses_its_log_when_daphne_is_killed(tenant, mock_provider, tmp_path):  # noqa: F811
    """SIGKILL under load (an OOM kill of the whole group, `kill -9` in a deploy): the process,
    and its writer process in the embedded setup, get no chance to flush. Every request answered
    with a complete 200 was in its journal before its last byte, and the next process writes what
    the dead one had not: each log once."""
    env = {"UPSTREAM_OPENAI_URL": mock_provider.url, "LOG_STREAM_KEY": unique_stream_key(),
           "LOG_SPOOL_DIR": str(tmp_path / "spool"), "LOG_JOURNAL_DIR": str(tmp_path / "journal")}
    old = Daphne(**env).start()
    new = None
    # Plain requests as fast as 12 keep-alive clients go: hundreds a second, so some are always
    # waiting for the writer's next batch when the kill comes (9 to 55 in runs here).
    load = Load(old.url, tenant.raw_key, threads=12, streams=False).start()
    try:
        time.sleep(3)
        writers = writer_processes(old.proc.pid)  # none with REDIS_URL
        old.proc.kill()
        for pid in writers:
            os.kill(pid, signal.SIGKILL)
        old.proc.wait(30)
        load.stop()
        complete = [r for r in load.results if r[3]]
        ids = [r[2] for r in complete]
        assert len(ids) > 50, "the load should have been answered for a while"
        unwritten = len(ids) - RequestLog.objects.filter(id__in=ids).count()
        assert unwritten > 0, "the kill should have caught logs not yet written (else this proves nothing)"

        new = Daphne(**env).start()  # no request is sent to it: its writer starts with the process
        for log_id in ids:
            wait_for_log(log_id, timeout=60)
        rows = RequestLog.objects.filter(org=tenant.org)
        assert rows.filter(id__in=ids).count() == len(ids) == len(set(ids))
        assert rows.count() <= len(load.results) + load.failures, "a log was written twice"
        journals = process_journals(tmp_path)
        assert len(journals) == 1, "the dead process's journal is removed once written (the new one's remains)"
    finally:
        load.stop()
        old.stop()
        if new is not None:
            new.stop()


def test_when_daphne_alone_is_killed_its_writer_process_writes_every_answered_log(tenant, mock_provider, tmp_path):  # noqa: F811,E501
    """Embedded (whatever the run's setup): SIGKILL of daphne under load leaves its writer process
    behind. It sees its web process gone, writes what the journal holds, removes the journal and
    exits: every answered request is logged once without any restart."""
    server = Daphne(**embedded_env(mock_provider, tmp_path)).start()
    load = Load(server.url, tenant.raw_key, threads=12, streams=False).start()
    try:
        [writer] = wait_until(lambda: writer_processes(server.proc.pid), what="daphne's writer process")
        time.sleep(3)
        server.proc.kill()
        server.proc.wait(30)
        load.stop()
        ids = [r[2] for r in load.results if r[3]]
        assert len(ids) > 50, "the load should have been answered for a while"
        for log_id in ids:
            wait_for_log(log_id, timeout=60)
        rows = RequestLog.objects.filter(org=tenant.org)
        assert rows.filter(id__in=ids).count() == len(ids) == len(set(ids))
        assert rows.count() <= len(load.results) + load.failures, "a log was written twice"
        wait_until(lambda: exited(writer), what="the writer process to exit once its web process is gone")
        assert process_journals(tmp_path) == [], "the writer removes the journal of its dead web process"
    finally:
        load.stop()
        server.stop()


def test_a_graceful_stop_waits_for_the_writer_process_to_write_the_journal(tenant, mock_provider, tmp_path):  # noqa: F811
    """Embedded: SIGTERM under load. daphne asks its writer process to write the rest of the
    journal and waits for it: when daphne has exited, every answered request is stored, the writer
    has exited and the journal is gone."""
    server = Daphne(**embedded_env(mock_provider, tmp_path)).start()
    load = Load(server.url, tenant.raw_key, threads=6).start()
    try:
        [writer] = wait_until(lambda: writer_processes(server.proc.pid), what="daphne's writer process")
        time.sleep(3)
        server.proc.terminate()
        server.proc.wait(30)
        assert server.proc.returncode == 0, server.output()
        load.stop()
        ids = [r[2] for r in load.results if r[3]]
        assert len(ids) > 20, "the load should have been answered for a while"
        assert RequestLog.objects.filter(id__in=ids).count() == len(ids), "logged before daphne exited"
        assert exited(writer)
        assert process_journals(tmp_path) == []
    finally:
        load.stop()
        server.stop()
