"""Helpers for the operations tests: an own Redis, Prometheus text, who holds a connection."""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import tempfile
import time

from prometheus_client.parser import text_string_to_metric_families

from bench.stack import free_port, wait_for_port


class RedisServer:
    """A redis-server of the test's own on a free port: stopping it disturbs nobody."""

    def __init__(self):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tempfile.mkdtemp(prefix="hc-test-redis-")
        self.proc: subprocess.Popen | None = None

    def start(self) -> "RedisServer":
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (apt-get install redis-server)"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, self.proc, timeout=10)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def get(base_url: str, path: str, headers: dict | None = None) -> tuple[int, dict[str, str], bytes]:
    host, port = base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=15)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def sample(metrics_text: str, name: str, **labels: str) -> float:
    """The value of one sample (0 when absent), e.g. sample(text, "x_total", provider="openai")."""
    for family in text_string_to_metric_families(metrics_text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def connection_owner(server_port: int, client_port: int, pids: list[int], timeout: float = 5.0) -> int:
    """Which of `pids` holds the server side of the TCP connection from `client_port`
    (read from /proc: the kernel, not the application, says who accepted it)."""
    deadline = time.monotonic() + timeout
    while True:
        inode = _server_socket_inode(server_port, client_port)
        if inode:
            target = f"socket:[{inode}]"
            for pid in pids:
                try:
                    fds = os.listdir(f"/proc/{pid}/fd")
                except FileNotFoundError:
                    continue
                for fd in fds:
                    try:
                        if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                            return pid
                    except OSError:
                        continue
        if time.monotonic() > deadline:
            raise AssertionError(f"no process among {pids} holds the connection from port {client_port}")
        time.sleep(0.05)


def _server_socket_inode(server_port: int, client_port: int) -> str | None:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if local_port == server_port and remote_port == client_port and fields[9] != "0":
                return fields[9]
    return None
