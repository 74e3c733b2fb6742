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
import threading
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from analytics.writer import StreamWriter
from analytics.writer_process import run_child

# Seconds between the writer's collections of cyclic garbage (its collector runs only then).
COLLECT_SECONDS = 10.0
_collecting: threading.Thread | None = None


def tune_collector() -> None:
    """A writer process allocates a few containers per log, which die with their batch, by their
    reference counts: the collector's automatic passes examined them while they lived (at 50,000
    logs/s and batches of 20,000 they took ~18 % of the writer's time, a full pass over the
    batches in hand 140 ms), and found nothing to free. What Django loaded is set aside (never
    traversed again), automatic collection is off, and a thread collects every COLLECT_SECONDS,
    which bounds what cycles (an exception's traceback, say) hold to that many seconds."""
    global _collecting
    gc.collect()
    gc.freeze()
    gc.disable()
    if _collecting is None:
        _collecting = threading.Thread(target=_collect, name="collector", daemon=True)
        _collecting.start()


def _collect() -> None:
    while True:
        time.sleep(COLLECT_SECONDS)
        gc.collect()


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
