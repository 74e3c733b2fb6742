"""The spool: append-only JSON-lines files of log records that could not be queued or written.

The log queue spools a batch when Redis is away; the writer spools one when it stops with the
database still away, and keeps records the database refuses in `refused/` for an operator.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)


def dumps(record: dict[str, Any] | list[dict[str, Any]]) -> bytes:
    return orjson.dumps(record)


class Spool:
    """Append-only JSON-lines files of records that could not be queued."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.lock = threading.Lock()

    def write(self, records: list[dict[str, Any]]) -> None:
        self.write_lines([dumps(r) for r in records])

    def write_lines(self, lines: list[bytes]) -> None:
        """Records already serialised as JSON, one per line."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"spool-{os.getpid()}.jsonl"
        data = b"".join(line + b"\n" for line in lines)
        with self.lock, open(path, "ab") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        log.warning("spooled %d log records to %s", len(lines), path)

    def claim(self) -> list[Path]:
        """Files to replay, renamed first so two replayers never take the same one."""
        if not self.directory.is_dir():
            return []
        claimed = []
        for path in sorted(self.directory.glob("spool-*.jsonl")):
            target = path.with_name(f"replay-{uuid.uuid4().hex}.jsonl")
            try:
                path.rename(target)
            except OSError:
                continue
            claimed.append(target)
        # Files a crashed replayer had claimed are picked up too.
        claimed.extend(p for p in self.directory.glob("replay-*.jsonl") if p not in claimed)
        return claimed

    @staticmethod
    def read(path: Path) -> list[dict[str, Any]]:
        records = []
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if line:
                    try:
                        records.append(orjson.loads(line))
                    except ValueError:
                        log.error("skipping a corrupt spool line in %s", path)
        return records
