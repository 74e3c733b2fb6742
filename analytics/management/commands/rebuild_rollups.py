"""Build an org's rollups (analytics.rollups) from its stored logs: after the upgrade that added
rollups, or to repair them. Safe while the log writer runs: one transaction per day of logs,
holding the org's rollup lock, so a log written meanwhile is counted exactly once.

    manage.py rebuild_rollups                      every org, all of its logs
    manage.py rebuild_rollups --org acme --since 2026-11-01
    manage.py rebuild_rollups --sessions           only the sessions' all-time rows (after the
                                                   upgrade that added them)
"""

import sys
import time
from datetime import datetime, timezone

from django.core.management.base import BaseCommand, CommandError

from analytics import rollups
from analytics.management.progress import progress_bar, selected_orgs


def _date(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--since: {text!r} is not a date (YYYY-MM-DD)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class Command(BaseCommand):
    help = "Build the rollups the dashboards read from the stored logs (with a progress bar)."

    def add_arguments(self, parser):
        parser.add_argument("--org", metavar="SLUG", help="Only this organization")
        parser.add_argument("--since", metavar="DATE", type=_date,
                            help="Only logs from the Monday of this day's week on (UTC; default: all)")
        parser.add_argument("--sessions", action="store_true",
                            help="Only the sessions' all-time rows, from every log with a session (the sessions "
                                 "list reads them; the log writer waits while an org's are counted)")

    def handle(self, *args, org: str | None, since: datetime | None, sessions: bool, **options):
        if sessions and since:
            raise CommandError("--sessions counts every log of a session: it takes no --since")
        total = 0
        for one in selected_orgs(org):
            started = time.monotonic()
            if sessions:
                count = rollups.rebuild_alltime(one.pk)
            else:
                count = rollups.rebuild(one.pk, since, progress=progress_bar(one.slug, "logs"))
                sys.stderr.write("\n")
            self.stdout.write(f"{one.slug}: {count:,} log(s) counted in {time.monotonic() - started:.1f}s")
            total += count
        self.stdout.write(f"Done: {total:,} log(s) in the rollups.")
