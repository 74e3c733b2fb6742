from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email, validate_slug
from django.db import transaction

from orgs import actions
from orgs.models import Organization, User


class Command(BaseCommand):
    help = "Create an organization with an owner (the user is created if needed)."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", required=True)
        parser.add_argument("--owner", required=True, help="Owner's email; created if there is no such user.")
        parser.add_argument("--password", help="Password for a newly created owner (otherwise: use password reset).")

    def handle(self, *args, slug: str, name: str, owner: str, password: str | None, **options):
        slug = slug.strip().lower()
        try:
            validate_slug(slug)
        except ValidationError:
            raise CommandError(f"slug {slug!r} is not valid: use letters, digits, hyphens and underscores") from None
        try:
            validate_email(owner)
        except ValidationError:
            raise CommandError(f"--owner {owner!r} is not a valid email address") from None
        if not name.strip():
            raise CommandError("--name cannot be blank")
        if Organization.objects.filter(slug=slug).exists():
            raise CommandError(f"an organization with slug {slug!r} already exists")
        try:
            with transaction.atomic():
                user = User.objects.filter(email__iexact=owner).first()
                created = user is None
                if created:
                    user = actions.create_user_for_operator(owner, password)
                org = actions.create_org(name=name.strip(), slug=slug, owner=user, via="manage.py create_org")
        except actions.ActionError as error:
            raise CommandError(error.message) from None
        if created:
            note = "" if password else " (no password set: they can use password reset)"
            self.stdout.write(f"Created user {user.email}{note}")
        self.stdout.write(self.style.SUCCESS(f"Created organization {org.slug!r} ({org.name}) owned by {user.email}"))
