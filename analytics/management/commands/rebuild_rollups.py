"""Build an org's rollups (analytics.rollups) from its stored logs: after the upgrade that added
rollups, or to repair them. Safe while the log writer runs: one transaction per day of logs,
holding the org's rollup lock, so a log written meanwhile is counted exactly once.

    manage.py rebuild_rollups                      every org, all of its logs
    manage.py rebuild_rollups --org acme --since 2026-11-01
"""

import sys
import time
from datetime import datetime, timezone

from django.core.management.base import BaseCommand, CommandError

from analytics import rollups
from orgs.models import Organization


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
                            help="Only logs from this day on (UTC; default: all)")

    def handle(self, *args, org: str | None, since: datetime | None, **options):
        orgs = Organization.objects.order_by("slug")
        if org is not None:
            orgs = orgs.filter(slug=org)
            if not orgs.exists():
                raise CommandError(f"no organization with slug {org!r}")
        total = 0
        for one in orgs:
            started = time.monotonic()
            count = rollups.rebuild(one.pk, since, progress=self._bar(one.slug, started))
            if self.stderr.isatty():
                sys.stderr.write("\n")
            self.stdout.write(f"{one.slug}: {count:,} log(s) counted in {time.monotonic() - started:.1f}s")
            total += count
        self.stdout.write(f"Done: {total:,} log(s) in the rollups.")

    def _bar(self, slug: str, started: float):
        def progress(done: int, total: int) -> None:
            width = 40
            filled = int(width * done / total) if total else width
            elapsed = time.monotonic() - started
            rate = done / elapsed if elapsed else 0
            sys.stderr.write(f"\r{slug}: [{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} "
                             f"{rate:,.0f} logs/s ")
            sys.stderr.flush()

        return progress
