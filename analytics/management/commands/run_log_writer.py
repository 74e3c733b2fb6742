"""Write queued request logs to the database.

With REDIS_URL: one worker of the Redis consumer group. Run any number of these (on any
machines); each entry is written once and acknowledged only after its rows are committed.
Entries a crashed worker left unacknowledged are claimed by another after --claim-idle seconds.

With --journal DIR: the embedded default's writer process, which daphne starts (forks, or
runs this command to replace one that died) for its own journal directory
(analytics/writer_process.py); not meant to be run by hand.
"""

import gc
import os
import signal
import socket
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from analytics.writer import StreamWriter
from analytics.writer_process import run_child


def tune_collector() -> None:
    """A writer process allocates a few containers per log, which die with their batch: with the
    collector's defaults its full collections, over Django's objects and the batches in hand, took
    a quarter of a ClickHouse writer's CPU (docs/benchmark.md). What Django loaded is set aside
    (never traversed again) and the youngest generation is collected every 10,000 allocations
    instead of 700, so a batch's objects are mostly gone before they are ever examined."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


class Command(BaseCommand):
    help = "Consume the Redis log stream and write request logs in batches."

    def add_arguments(self, parser):
        parser.add_argument("--name", default="", help="Consumer name (default: host-pid)")
        parser.add_argument("--claim-idle", type=float, default=30.0,
                            help="Seconds before another worker's unacknowledged entries are claimed")
        parser.add_argument("--journal", type=Path, default=None,
                            help="Embedded: write this web process's journal directory as it grows (daphne "
                                 "starts this writer itself; stdin is its control pipe)")
        parser.add_argument("--events-fd", type=int, default=None,
                            help="With --journal: the pipe that takes live events and progress back to daphne")

    def handle(self, *args, **options):
        if options["journal"] is not None:
            return self.write_journal(options["journal"], options["events_fd"])
        if not settings.REDIS_URL:
            raise CommandError(
                "REDIS_URL is not set: in the embedded default the web process writes its own logs, "
                "so no separate writer is needed."
            )
        name = options["name"] or f"{socket.gethostname()}-{os.getpid()}"
        tune_collector()
        writer = StreamWriter(consumer=name, claim_idle_ms=int(options["claim_idle"] * 1000))

        def stop(signum, frame):
            self.stdout.write(f"log writer {name}: stopping after the current batch")
            writer.stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write(f"log writer {name}: consuming {settings.LOG_STREAM_KEY}")
        self.stdout.flush()
        writer.run()
        self.stdout.write(f"log writer {name}: stopped, {writer.written} records written")

    def write_journal(self, directory: Path, events_fd: int | None) -> None:
        if not directory.is_dir():
            raise CommandError(f"--journal {directory}: no such journal directory")
        if events_fd is not None:
            try:
                os.fstat(events_fd)
            except OSError:
                raise CommandError(f"--events-fd {events_fd}: not an open descriptor") from None
        run_child(directory, events_fd)
