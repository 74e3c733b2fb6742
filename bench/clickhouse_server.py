"""A real ClickHouse server for tests, benchmarks and development, from the `chdb-core` package
(the ClickHouse 26.9 engine, pinned in the dev extra): `python -m bench.clickhouse_server`.

Production runs the official server (docker-compose.yml's `clickhouse` service). On machines
where no server package is installable, chdb-core serves the same HTTP (8123) and native (9000)
protocols, in a process of its own:

1. a directory holding `config.xml` (loopback only, the two ports, a data path) is the working
   directory, read when the first query runs;
2. ONE call of `chdb._chdb.query` starts both listeners and then runs a query that never returns
   (the listeners live only while the call that started them runs; a second call in the same
   process fails);
3. the caller waits for `GET /ping`, and stops the process by its PID.

Only the passwordless `default` user exists, so it listens on 127.0.0.1 only; one process owns a
data directory.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CONFIG = """<clickhouse>
    <listen_host>127.0.0.1</listen_host>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <path>{data}/</path>
    <tmp_path>{data}/tmp/</tmp_path>
    <user_files_path>{data}/user_files/</user_files_path>
    <logger><level>warning</level><console>1</console></logger>
    <mark_cache_size>1073741824</mark_cache_size>
    <uncompressed_cache_size>1073741824</uncompressed_cache_size>
</clickhouse>
"""

# Both listeners, then a query that sleeps for ~95 years, one second per block.
SERVE = ("SYSTEM START LISTEN HTTP; SYSTEM START LISTEN TCP; "
         "SELECT sleep(3) FROM numbers(1000000000) SETTINGS max_block_size = 1")


def serve(directory: Path, http_port: int, tcp_port: int) -> None:
    """Run the server in this process until it is killed."""
    directory.mkdir(parents=True, exist_ok=True)
    data = (directory / "data").resolve()
    data.mkdir(exist_ok=True)
    (directory / "config.xml").write_text(CONFIG.format(http_port=http_port, tcp_port=tcp_port, data=data))
    os.chdir(directory)
    from chdb import _chdb

    _chdb.query(SERVE, "TabSeparated")


class ClickHouseServer:
    """The server in a child process: start() waits for /ping, stop() ends it by its PID."""

    def __init__(self, directory: Path, http_port: int, tcp_port: int, log_path: Path | None = None):
        self.directory = Path(directory)
        self.http_port = http_port
        self.tcp_port = tcp_port
        self.log_path = log_path or self.directory / "server.log"
        self.proc: subprocess.Popen | None = None

    def url(self, database: str) -> str:
        return f"http://default:@127.0.0.1:{self.http_port}/{database}"

    def start(self, timeout: float = 60.0) -> "ClickHouseServer":
        self.directory.mkdir(parents=True, exist_ok=True)
        root = Path(__file__).resolve().parent.parent
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.clickhouse_server", "--dir", str(self.directory),
             "--http-port", str(self.http_port), "--tcp-port", str(self.tcp_port)],
            cwd=root, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the ClickHouse server exited ({self.proc.returncode}); see {self.log_path}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/ping", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the ClickHouse server did not answer /ping within {timeout:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default="var/clickhouse", help="working and data directory (default var/clickhouse)")
    parser.add_argument("--http-port", type=int, default=8123)
    parser.add_argument("--tcp-port", type=int, default=9000)
    args = parser.parse_args()
    serve(Path(args.dir), args.http_port, args.tcp_port)


if __name__ == "__main__":
    main()
