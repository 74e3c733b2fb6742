from django.core.management.base import BaseCommand, CommandError

from orgs import actions
from orgs.models import ALL_SCOPES, DEFAULT_SCOPES, Organization


class Command(BaseCommand):
    help = "Create an API key for an organization. The key is printed alone on the last line."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", default="cli key")
        parser.add_argument("--scopes", default=",".join(DEFAULT_SCOPES),
                            help=f"Comma-separated, from {','.join(ALL_SCOPES)} (default: {','.join(DEFAULT_SCOPES)}).")

    def handle(self, *args, slug: str, name: str, scopes: str, **options):
        org = Organization.objects.filter(slug=slug).first()
        if org is None:
            raise CommandError(f"no organization with slug {slug!r}")
        wanted = [s.strip() for s in scopes.split(",") if s.strip()]
        for scope in wanted:
            if scope not in ALL_SCOPES:
                raise CommandError(f"unknown scope {scope!r} (choose from {', '.join(ALL_SCOPES)})")
        if not wanted:
            raise CommandError("--scopes needs at least one scope")
        if not name.strip():
            raise CommandError("--name cannot be blank")
        try:
            key, raw = actions.create_api_key(org, actor=None, name=name.strip(), scopes=wanted,
                                              via="manage.py create_api_key")
        except actions.ActionError as error:
            raise CommandError(error.message) from None
        self.stdout.write(f"Created API key {key.name!r} for {org.slug} with scopes {','.join(key.scopes)}.")
        self.stdout.write("Store it now; it cannot be shown again:")
        # Alone on the last line so scripts can take it with `tail -n 1`.
        self.stdout.write(raw)
