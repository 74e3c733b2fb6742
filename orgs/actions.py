"""State changes for accounts, organizations, members, invitations and API keys.

Each function takes the org and the actor explicitly, runs in one transaction
and writes its audit event inside it. Views, the admin and management commands
call these; nothing else writes these rows.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from . import audit
from .models import ALL_SCOPES, ROLE_RANK, ApiKey, Invitation, Membership, Organization, Role, User

INVITATION_SALT = "orgs.invitation"


class ActionError(Exception):
    """A refused state change; `field` names the form field it belongs to, if any."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


# --- Accounts ------------------------------------------------------------------


def signup_user(email: str, password: str, *, request=None) -> User:
    with transaction.atomic():
        if User.objects.filter(email__iexact=email).exists():
            raise ActionError("An account with this email already exists.", field="email")
        user = User.objects.create_user(email, password)
        audit.record("user.signup", request=request, user=user, target=user)
    return user


def create_user_for_operator(email: str, password: str | None) -> User:
    """A user made by an operator (`create_org`).

    Without a password they get a random one nobody knows: still "usable", so
    Django's password reset (which skips unusable passwords) lets them set theirs.
    """
    with transaction.atomic():
        user = User.objects.create_user(email, password or secrets.token_urlsafe(32))
        audit.record("user.create", user=None, target=user, changes={"email": user.email, "via": "manage.py"})
    return user


# --- Organizations ---------------------------------------------------------------


def create_org(*, name: str, slug: str, owner: User, request=None, via: str = "") -> Organization:
    """Create an org with `owner` as its first owner."""
    try:
        with transaction.atomic():
            org = Organization.objects.create(name=name, slug=slug)
            Membership.objects.create(org=org, user=owner, role=Role.OWNER)
            changes = {"name": name, "slug": slug, "owner": owner.email}
            if via:
                changes["via"] = via
            audit.record("org.create", request=request, org=org, user=owner, target=org, changes=changes)
    except IntegrityError:
        # Two requests raced for the same slug; the unique constraint decided.
        raise ActionError(f"An organization with the slug “{slug}” already exists.", field="slug") from None
    return org


def update_org(org: Organization, *, actor: User, name: str, require_2fa: bool, request=None) -> Organization:
    with transaction.atomic():
        org = Organization.objects.select_for_update().get(pk=org.pk)
        changes = {}
        if org.name != name:
            changes["name"] = [org.name, name]
        if org.require_2fa != require_2fa:
            changes["require_2fa"] = [org.require_2fa, require_2fa]
        if not changes:
            return org
        org.name = name
        org.require_2fa = require_2fa
        org.save(update_fields=["name", "require_2fa"])
        audit.record("org.update", request=request, org=org, user=actor, target=org, changes=changes)
    return org


def set_rate_limit_policy(org: Organization, *, actor: User, policy: str, request=None) -> Organization:
    """The org-wide rate limits (already validated by the form). Gateways pick the new
    value up with their next API key lookup, within GATEWAY_AUTH_CACHE_SECONDS."""
    with transaction.atomic():
        org = Organization.objects.select_for_update().get(pk=org.pk)
        if org.rate_limit_policy == policy:
            return org
        changes = {"rate_limit_policy": [org.rate_limit_policy, policy]}
        org.rate_limit_policy = policy
        org.save(update_fields=["rate_limit_policy"])
        audit.record("org.rate_limit_policy", request=request, org=org, user=actor, target=org, changes=changes)
    return org


def set_semantic_cache(org: Organization, *, actor: User, threshold: float, org_scope: bool,
                       request=None) -> Organization:
    """The semantic cache's floor and whether requests may share entries org-wide; gateways pick
    them up with their next API key lookup, within GATEWAY_AUTH_CACHE_SECONDS."""
    with transaction.atomic():
        org = Organization.objects.select_for_update().get(pk=org.pk)
        changes = {name: [old, new] for name, old, new in (
            ("semantic_cache_threshold", org.semantic_cache_threshold, threshold),
            ("semantic_cache_org_scope", org.semantic_cache_org_scope, org_scope)) if old != new}
        if not changes:
            return org
        org.semantic_cache_threshold = threshold
        org.semantic_cache_org_scope = org_scope
        org.save(update_fields=["semantic_cache_threshold", "semantic_cache_org_scope"])
        audit.record("org.semantic_cache", request=request, org=org, user=actor, target=org, changes=changes)
    return org


def suspend_org(org: Organization, *, actor: User | None, reason: str, request=None, via: str = "") -> Organization:
    """Operators suspend an org: the gateway refuses its keys with 403 (naming the reason) from
    the next API key lookup on, within GATEWAY_AUTH_CACHE_SECONDS, and its pages show a banner."""
    reason = reason.strip()
    if not reason:
        raise ActionError("Give a reason: it is shown to the org's members and in the gateway's 403.",
                          field="reason")
    with transaction.atomic():
        org = Organization.objects.select_for_update().get(pk=org.pk)
        changes = {"reason": [org.suspended_reason, reason]}
        if via:
            changes["via"] = via
        if org.suspended_at is None:
            org.suspended_at = timezone.now()
        org.suspended_reason = reason[:200]
        org.save(update_fields=["suspended_at", "suspended_reason"])
        audit.record("org.suspend", request=request, org=org, user=actor, target=org, changes=changes)
    return org


def reactivate_org(org: Organization, *, actor: User | None, request=None, via: str = "") -> Organization:
    with transaction.atomic():
        org = Organization.objects.select_for_update().get(pk=org.pk)
        if org.suspended_at is None:
            return org
        changes = {"suspended_at": org.suspended_at.isoformat(), "reason": org.suspended_reason}
        if via:
            changes["via"] = via
        org.suspended_at = None
        org.suspended_reason = ""
        org.save(update_fields=["suspended_at", "suspended_reason"])
        audit.record("org.reactivate", request=request, org=org, user=actor, target=org, changes=changes)
    return org


# --- Members -----------------------------------------------------------------------


def _owner_count(org: Organization) -> int:
    return Membership.objects.filter(org=org, role=Role.OWNER).count()


def change_role(org: Organization, *, actor: User, membership: Membership, role: str, request=None) -> Membership:
    """Only owners change roles; the last owner cannot be demoted."""
    if role not in Role.values:
        raise ActionError(f"“{role}” is not a role.", field="role")
    with transaction.atomic():
        # Lock the org's owner rows so two owners cannot demote each other at once.
        list(Membership.objects.select_for_update().filter(org=org, role=Role.OWNER))
        membership = Membership.objects.select_for_update().get(pk=membership.pk, org=org)
        old = membership.role
        if old == role:
            return membership
        if old == Role.OWNER and _owner_count(org) <= 1:
            raise ActionError(f"{membership.user.email} is the last owner; make someone else an owner first.",
                              field="role")
        membership.role = role
        membership.save(update_fields=["role"])
        audit.record("member.role_change", request=request, org=org, user=actor, target=membership,
                     changes={"member": membership.user.email, "role": [old, role]})
    return membership


def remove_member(org: Organization, *, actor: User, actor_membership: Membership, membership: Membership,
                  request=None) -> None:
    """Admins remove members; only an owner removes an owner; the last owner stays."""
    with transaction.atomic():
        list(Membership.objects.select_for_update().filter(org=org, role=Role.OWNER))
        membership = Membership.objects.select_for_update().select_related("user").get(pk=membership.pk, org=org)
        if ROLE_RANK[Role(membership.role)] > ROLE_RANK[Role(actor_membership.role)]:
            raise ActionError("Only an owner can remove an owner.", field="member")
        if membership.role == Role.OWNER and _owner_count(org) <= 1:
            raise ActionError(f"{membership.user.email} is the last owner and cannot be removed.", field="member")
        email, role = membership.user.email, membership.role
        membership_id = membership.pk
        membership.delete()
        audit.record("member.remove", request=request, org=org, user=actor,
                     target_type="orgs.membership", target_id=str(membership_id),
                     changes={"member": email, "role": role})


# --- Invitations ---------------------------------------------------------------------


def invitation_token(invitation: Invitation) -> str:
    return signing.dumps({"i": invitation.pk, "o": invitation.org_id}, salt=INVITATION_SALT, compress=True)


def invitation_url(invitation: Invitation) -> str:
    return settings.SITE_URL + reverse("invite_accept", args=[invitation_token(invitation)])


def invite_member(org: Organization, *, actor: User, actor_membership: Membership, email: str, role: str,
                  request=None) -> Invitation:
    email = email.strip().lower()
    if role not in Role.values:
        raise ActionError(f"“{role}” is not a role.", field="role")
    if ROLE_RANK[Role(role)] > ROLE_RANK[Role(actor_membership.role)]:
        raise ActionError("You cannot invite someone with a higher role than your own.", field="role")
    with transaction.atomic():
        if Membership.objects.filter(org=org, user__email__iexact=email).exists():
            raise ActionError(f"{email} is already a member of {org.name}.", field="email")
        invitation = Invitation.objects.create(org=org, email=email, role=role, invited_by=actor)
        audit.record("invite.send", request=request, org=org, user=actor, target=invitation,
                     changes={"email": email, "role": role})
    # Outside the transaction: a slow mail server must not hold row locks, and a
    # rolled-back invitation must never be mailed.
    context = {
        "org": org,
        "inviter": actor,
        "invitation": invitation,
        "url": invitation_url(invitation),
        "max_age_days": settings.INVITATION_MAX_AGE_DAYS,
    }
    send_mail(
        subject=f"You're invited to {org.name}",
        message=render_to_string("orgs/email/invitation.txt", context),
        from_email=None,
        recipient_list=[email],
    )
    return invitation


@dataclass
class InvitationProblem(Exception):
    title: str
    detail: str
    status: int = 400


def load_invitation(token: str) -> Invitation:
    """The invitation behind a token, or InvitationProblem (tampered, expired, used)."""
    max_age = settings.INVITATION_MAX_AGE_DAYS * 24 * 3600
    try:
        data = signing.loads(token, salt=INVITATION_SALT, max_age=max_age)
    except signing.SignatureExpired:
        raise InvitationProblem("This invitation has expired",
                                "Ask an admin of the organization to send you a new one.", 410) from None
    except signing.BadSignature:
        raise InvitationProblem("This invitation link is not valid",
                                "The link is incomplete or has been altered. Copy it again from the email.",
                                400) from None
    invitation = (
        Invitation.objects.select_related("org", "invited_by")
        .filter(pk=data.get("i"), org_id=data.get("o"))
        .first()
    )
    if invitation is None:
        raise InvitationProblem("This invitation no longer exists",
                                "It may have been withdrawn. Ask for a new one.", 410)
    if invitation.accepted_at is not None:
        raise InvitationProblem("This invitation has already been used",
                                "Each invitation link works once. Ask for a new one if you need it.", 410)
    return invitation


def accept_invitation(invitation: Invitation, *, user: User, request=None) -> Membership:
    with transaction.atomic():
        # Locking the row makes a double click or a replay see accepted_at set.
        invitation = Invitation.objects.select_for_update().select_related("org").get(pk=invitation.pk)
        if invitation.accepted_at is not None:
            raise InvitationProblem("This invitation has already been used",
                                    "Each invitation link works once. Ask for a new one if you need it.", 410)
        if invitation.email.lower() != user.email.lower():
            raise InvitationProblem(
                "This invitation is for someone else",
                f"It was sent to {invitation.email}, but you are signed in as {user.email}. "
                "Sign in with that address, or ask for an invitation to yours.",
                403,
            )
        org = invitation.org
        if Membership.objects.filter(org=org, user=user).exists():
            raise InvitationProblem("You are already a member", f"You already belong to {org.name}.", 409)
        membership = Membership.objects.create(org=org, user=user, role=invitation.role)
        invitation.accepted_at = timezone.now()
        invitation.accepted_by = user
        invitation.save(update_fields=["accepted_at", "accepted_by"])
        audit.record("invite.accept", request=request, org=org, user=user, target=membership,
                     changes={"email": user.email, "role": invitation.role, "invitation": invitation.pk})
    return membership


# --- API keys --------------------------------------------------------------------------


def create_api_key(org: Organization, *, actor: User | None, name: str, scopes: list[str], request=None,
                   via: str = "") -> tuple[ApiKey, str]:
    """Returns the key and its plaintext; the plaintext is shown once and never stored."""
    unknown = [s for s in scopes if s not in ALL_SCOPES]
    if unknown:
        raise ActionError(f"Unknown scope “{unknown[0]}” (choose from {', '.join(ALL_SCOPES)}).", field="scopes")
    if not scopes:
        raise ActionError("Choose at least one scope.", field="scopes")
    ordered = [s for s in ALL_SCOPES if s in scopes]
    with transaction.atomic():
        # The org row lock serialises concurrent creations, so the plan limit holds exactly.
        org = Organization.objects.select_for_update().get(pk=org.pk)
        if org.max_api_keys is not None:
            active = ApiKey.objects.filter(org=org, revoked_at__isnull=True).count()
            if active >= org.max_api_keys:
                raise ActionError(f"{org.name} has {active} active API keys, the most its plan allows "
                                  f"({org.max_api_keys}). Revoke one first, or ask the operator for a higher "
                                  "limit.")
        key, raw = ApiKey.generate(org, name, ordered, created_by=actor)
        changes = {"name": name, "scopes": ordered, "key": key.masked}
        if via:
            changes["via"] = via
        audit.record("apikey.create", request=request, org=org, user=actor, target=key, changes=changes)
    return key, raw


def revoke_api_key(org: Organization, *, actor: User | None, key: ApiKey, request=None, via: str = "") -> ApiKey:
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().get(pk=key.pk, org=org)
        if key.revoked_at is not None:
            return key
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        changes = {"name": key.name, "key": key.masked}
        if via:
            changes["via"] = via
        audit.record("apikey.revoke", request=request, org=org, user=actor, target=key, changes=changes)
    return key
