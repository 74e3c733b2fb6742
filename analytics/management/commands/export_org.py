"""Export an organization's data: logs.jsonl, feedback.jsonl, scores.jsonl, audit.jsonl,
prompts.json, org.json and manifest.json, into a directory or a .zip file. Rows are streamed
(`.iterator()`), so memory stays flat however many logs there are. No secret is exported.
"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from analytics import lifecycle
from orgs.models import Organization


class Command(BaseCommand):
    help = "Export an organization's logs, feedback, scores, prompts and audit log (a directory or a .zip)."

    def add_arguments(self, parser):
        parser.add_argument("--org", metavar="SLUG", required=True)
        parser.add_argument("--output", required=True, help="A directory, or a path ending in .zip")
        parser.add_argument("--chunk-size", type=int, default=2000, help="Rows read per database round trip")

    def handle(self, *args, org: str, output: str, chunk_size: int, **options):
        if chunk_size < 1:
            raise CommandError("--chunk-size must be at least 1")
        organization = Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f"no organization with slug {org!r}")
        path = Path(output)
        if path.suffix.lower() == ".zip":
            if path.exists():
                raise CommandError(f"{output} already exists: choose a new file")
            if not path.parent.is_dir():
                raise CommandError(f"{path.parent} is not a directory")
            counts = lifecycle.export_to_zip(organization, path, chunk_size)
        else:
            if path.exists() and (not path.is_dir() or any(path.iterdir())):
                raise CommandError(f"{output} must be a new or empty directory, or a path ending in .zip")
            counts = lifecycle.export_to_directory(organization, path, chunk_size)
        lifecycle.record_export(organization, via="manage.py export_org", counts=counts)
        summary = ", ".join(f"{name}: {count}" for name, count in counts.items())
        self.stdout.write(f"Exported {organization.slug} to {output} ({summary}).")
