"""Copy the logs stored in the SQL database (PostgreSQL or SQLite) into ClickHouse
(CLICKHOUSE_URL), oldest first, in batches, with a progress bar.

    manage.py copy_logs_to_clickhouse                 every org
    manage.py copy_logs_to_clickhouse --org acme

Idempotent: a log ClickHouse holds already is left out (analytics.clickhouse.store), so the copy
can run while the log writer writes new logs to both. Resumable: after each batch the position
(created_at, id) is saved per org in ClickHouse (`copy_checkpoints`); an interrupted copy goes on
from there. `--from-start` ignores the saved position.
"""

import sys
import time

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from analytics import clickhouse
from analytics.management.progress import progress_bar, selected_orgs
from analytics.models import RequestLog


class Command(BaseCommand):
    help = "Copy the logs of the SQL database into ClickHouse (resumable, idempotent, with a progress bar)."

    def add_arguments(self, parser):
        parser.add_argument("--org", metavar="SLUG", help="Only this organization")
        parser.add_argument("--batch", type=int, default=5000, help="Logs per insert (default 5000)")
        parser.add_argument("--from-start", action="store_true", help="Ignore the position saved by an earlier run")

    def handle(self, *args, org: str | None, batch: int, from_start: bool, **options):
        if not clickhouse.enabled():
            raise CommandError("CLICKHOUSE_URL is not set: nowhere to copy to")
        if batch < 1:
            raise CommandError("--batch must be at least 1")
        from analytics.clickhouse import schema, store

        schema.migrate()
        total = 0
        for one in selected_orgs(org):
            logs = RequestLog.objects.filter(org=one)
            position = None if from_start else schema.checkpoint(one.pk)
            if position is not None:
                logs = logs.filter(Q(created_at__gt=position[0]) | Q(created_at=position[0], id__gt=position[1]))
            remaining = logs.count()
            progress = progress_bar(one.slug, "logs")
            started = time.monotonic()
            done = copied = 0
            while True:
                rows = list(logs.order_by("created_at", "id")[:batch])
                if not rows:
                    break
                copied += len(store.insert(rows))
                done += len(rows)
                last = rows[-1]
                schema.save_checkpoint(one.pk, last.created_at, last.id)
                progress(done, remaining)
                logs = logs.filter(Q(created_at__gt=last.created_at) | Q(created_at=last.created_at, id__gt=last.id))
            if done:
                sys.stderr.write("\n")
            self.stdout.write(f"{one.slug}: {copied:,} log(s) copied, {done - copied:,} already there, "
                              f"in {time.monotonic() - started:.1f}s")
            total += copied
        self.stdout.write(f"Done: {total:,} log(s) copied into ClickHouse.")
