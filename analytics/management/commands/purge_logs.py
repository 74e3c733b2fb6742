"""Delete request logs older than each org's retention (`Organization.retention_days`, else
LOG_RETENTION_DAYS), with their feedback and scores, in batches. Safe to run from cron while
the log writer inserts: each batch is its own short transaction and a rerun simply continues.
"""

from django.core.management.base import BaseCommand, CommandError

from analytics import lifecycle, semantic_store
from analytics.management.progress import selected_orgs


class Command(BaseCommand):
    help = "Purge request logs older than each organization's retention, in batches."

    def add_arguments(self, parser):
        parser.add_argument("--org", metavar="SLUG", help="Only this organization")
        parser.add_argument("--batch-size", type=int, default=lifecycle.DEFAULT_BATCH_SIZE,
                            help=f"Logs deleted per transaction (default {lifecycle.DEFAULT_BATCH_SIZE})")
        parser.add_argument("--dry-run", action="store_true", help="Count what would be deleted; delete nothing")

    def handle(self, *args, org: str | None, batch_size: int, dry_run: bool, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        total = 0
        for one in selected_orgs(org):
            plan = lifecycle.purge_plan(one)
            if plan is None:
                self.stdout.write(f"{one.slug}: logs kept forever (no retention set)")
                continue
            if dry_run:
                count = plan.count()
                self.stdout.write(f"{one.slug}: would delete {count} log(s) older than {plan.days} day(s) "
                                  f"(before {plan.cutoff:%Y-%m-%d %H:%M} UTC)")
                total += count
                continue

            def progress(batch: int, deleted: int, slug: str = one.slug) -> None:
                self.stdout.write(f"{slug}: batch {batch}: {deleted} log(s) deleted so far")
                self.stdout.flush()

            count = lifecycle.purge(plan, batch_size=batch_size, progress=progress)
            self.stdout.write(f"{one.slug}: deleted {count} log(s) older than {plan.days} day(s)")
            total += count
        if not dry_run and org is None:
            expired = semantic_store.delete_expired()
            self.stdout.write(f"Deleted {expired} expired semantic cache entr{'y' if expired == 1 else 'ies'}.")
        verb = "would delete" if dry_run else "deleted"
        self.stdout.write(f"Done: {verb} {total} log(s).")
