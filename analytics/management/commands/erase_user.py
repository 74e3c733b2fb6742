"""Erase everything stored about one end user (`Helicone-User-Id`) in one organization (GDPR)."""

from django.core.management.base import BaseCommand, CommandError

from analytics import lifecycle
from orgs.models import Organization


class Command(BaseCommand):
    help = ("Erase one end user's logs (with feedback and scores), webhook deliveries, alert events "
            "and rate-limit counters in one organization.")

    def add_arguments(self, parser):
        parser.add_argument("--org", metavar="SLUG", required=True)
        parser.add_argument("--user-id", required=True, help="The Helicone-User-Id value, exactly")
        parser.add_argument("--batch-size", type=int, default=lifecycle.DEFAULT_BATCH_SIZE)

    def handle(self, *args, org: str, user_id: str, batch_size: int, **options):
        if not user_id:
            raise CommandError("--user-id must not be empty")
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        organization = Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f"no organization with slug {org!r}")

        def progress(batch: int, deleted: int) -> None:
            self.stdout.write(f"batch {batch}: {deleted} log(s) deleted so far")
            self.stdout.flush()

        counts = lifecycle.erase_user(organization, user_id, via="manage.py erase_user", batch_size=batch_size,
                                      progress=progress)
        summary = ", ".join(f"{name.replace('_', ' ')}: {count}" for name, count in counts.items())
        self.stdout.write(f"Erased the user's data in {organization.slug}: {summary}.")
