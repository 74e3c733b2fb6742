"""Write queued request logs to the database: one worker of the Redis consumer group.

Run any number of these (on any machines); each entry is written once and
acknowledged only after its rows are committed. Entries a crashed worker left
unacknowledged are claimed by another after --claim-idle seconds.
"""

import os
import signal
import socket

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from analytics.writer import StreamWriter


class Command(BaseCommand):
    help = "Consume the Redis log stream and write request logs in batches."

    def add_arguments(self, parser):
        parser.add_argument("--name", default="", help="Consumer name (default: host-pid)")
        parser.add_argument("--claim-idle", type=float, default=30.0,
                            help="Seconds before another worker's unacknowledged entries are claimed")

    def handle(self, *args, **options):
        if not settings.REDIS_URL:
            raise CommandError(
                "REDIS_URL is not set: in the embedded default the web process writes its own logs, "
                "so no separate writer is needed."
            )
        name = options["name"] or f"{socket.gethostname()}-{os.getpid()}"
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
