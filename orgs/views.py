"""Organization pages. Every /o/<slug>/ view goes through `org_member_required`."""

from __future__ import annotations

import csv
from datetime import datetime, time, timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from . import actions, otp
from .access import org_member_required
from .forms import (
    ApiKeyForm,
    AuditFilterForm,
    InviteForm,
    OrgCreateForm,
    OrgSettingsForm,
    RateLimitPolicyForm,
    RoleForm,
    SemanticCacheForm,
)
from .models import ApiKey, AuditEvent, Invitation, Membership, Organization, Role


def index(request: HttpRequest) -> HttpResponse:
    return redirect("/orgs/" if request.user.is_authenticated else "/login/")


@login_required
def org_list(request: HttpRequest) -> HttpResponse:
    form = OrgCreateForm()
    status = 200
    if request.method == "POST":
        form = OrgCreateForm(request.POST)
        if form.is_valid():
            try:
                org = actions.create_org(name=form.cleaned_data["name"], slug=form.cleaned_data["slug"],
                                         owner=request.user, request=request)
            except actions.ActionError as error:
                form.add_error(error.field, error.message)
            else:
                messages.success(request, f"Created {org.name}.")
                return redirect("org_home", slug=org.slug)
        status = 400
    memberships = Membership.objects.filter(user=request.user).select_related("org").order_by("org__name")
    return render(request, "orgs/org_list.html", {"memberships": memberships, "form": form}, status=status)


# --- Members -------------------------------------------------------------------------


def _members_page(request, org, membership, *, invite_form=None, error: str = "", status: int = 200):
    can_invite = membership.has_role(Role.ADMIN)
    if invite_form is None and can_invite:
        invite_form = InviteForm(max_role=membership.role)
    context = {
        "org": org,
        "membership": membership,
        "members": org.memberships.select_related("user").order_by("user__email"),
        "invitations": Invitation.objects.filter(org=org, accepted_at__isnull=True)
        .select_related("invited_by")
        .order_by("-created_at"),
        "invite_form": invite_form,
        "can_invite": can_invite,
        "can_change_roles": membership.role == Role.OWNER,
        "roles": Role.choices,
        "error": error,
    }
    return render(request, "orgs/members.html", context, status=status)


@org_member_required()
def members(request: HttpRequest, org: Organization, membership: Membership) -> HttpResponse:
    if request.method != "POST":
        return _members_page(request, org, membership)
    # Inviting needs admin or owner.
    if not membership.has_role(Role.ADMIN):
        return _forbidden(request, org, membership, "Inviting members needs the admin or owner role.")
    form = InviteForm(request.POST, max_role=membership.role)
    if form.is_valid():
        try:
            invitation = actions.invite_member(org, actor=request.user, actor_membership=membership,
                                               email=form.cleaned_data["email"], role=form.cleaned_data["role"],
                                               request=request)
        except actions.ActionError as error:
            form.add_error(error.field, error.message)
        else:
            messages.success(request, f"Invitation sent to {invitation.email}.")
            return redirect("org_members", slug=org.slug)
    return _members_page(request, org, membership, invite_form=form, status=400)


@org_member_required(Role.OWNER)
@require_POST
def member_role(request: HttpRequest, org: Organization, membership: Membership, member_id: int) -> HttpResponse:
    target = get_object_or_404(Membership, pk=member_id, org=org)
    form = RoleForm(request.POST)
    if not form.is_valid():
        return _members_page(request, org, membership, error="Role: choose one of owner, admin, member, viewer.",
                             status=400)
    try:
        actions.change_role(org, actor=request.user, membership=target, role=form.cleaned_data["role"],
                            request=request)
    except actions.ActionError as error:
        return _members_page(request, org, membership, error=f"Role: {error.message}", status=400)
    messages.success(request, f"{target.user.email} is now {Role(form.cleaned_data['role']).label.lower()}.")
    return redirect("org_members", slug=org.slug)


@org_member_required()
@require_POST
def member_remove(request: HttpRequest, org: Organization, membership: Membership, member_id: int) -> HttpResponse:
    target = get_object_or_404(Membership.objects.select_related("user"), pk=member_id, org=org)
    # Anyone may leave; removing someone else needs admin or owner.
    if target.user_id != request.user.id and not membership.has_role(Role.ADMIN):
        return _forbidden(request, org, membership, "Removing members needs the admin or owner role.")
    try:
        actions.remove_member(org, actor=request.user, actor_membership=membership, membership=target,
                              request=request)
    except actions.ActionError as error:
        return _members_page(request, org, membership, error=f"Member: {error.message}", status=400)
    if target.user_id == request.user.id:
        messages.success(request, f"You left {org.name}.")
        return redirect("org_list")
    messages.success(request, f"Removed {target.user.email}.")
    return redirect("org_members", slug=org.slug)


def _forbidden(request, org, membership, reason: str) -> HttpResponse:
    return render(request, "403.html", {"org": org, "membership": membership, "reason": reason}, status=403)


# --- API keys ------------------------------------------------------------------------


def _keys_page(request, org, membership, *, form=None, new_key=None, raw_key: str = "", status: int = 200):
    can_manage = membership.has_role(Role.ADMIN)
    context = {
        "org": org,
        "membership": membership,
        "keys": ApiKey.objects.filter(org=org).select_related("created_by"),
        "form": form or (ApiKeyForm() if can_manage else None),
        "can_manage": can_manage,
        "new_key": new_key,
        "raw_key": raw_key,
    }
    response = render(request, "orgs/keys.html", context, status=status)
    if raw_key:
        # The only response that ever carries the key: keep it out of every cache.
        response["Cache-Control"] = "no-store"
    return response


@org_member_required()
def keys(request: HttpRequest, org: Organization, membership: Membership) -> HttpResponse:
    if request.method != "POST":
        return _keys_page(request, org, membership)
    if not membership.has_role(Role.ADMIN):
        return _forbidden(request, org, membership, "Creating API keys needs the admin or owner role.")
    form = ApiKeyForm(request.POST)
    if form.is_valid():
        try:
            key, raw = actions.create_api_key(org, actor=request.user, name=form.cleaned_data["name"],
                                              scopes=form.cleaned_data["scopes"], request=request)
        except actions.ActionError as error:
            form.add_error(error.field, error.message)
        else:
            # Rendered, not redirected: the plaintext never goes into a session or a URL.
            return _keys_page(request, org, membership, new_key=key, raw_key=raw, status=201)
    return _keys_page(request, org, membership, form=form, status=400)


@org_member_required(Role.ADMIN)
@require_POST
def key_revoke(request: HttpRequest, org: Organization, membership: Membership, key_id: int) -> HttpResponse:
    key = get_object_or_404(ApiKey, pk=key_id, org=org)
    actions.revoke_api_key(org, actor=request.user, key=key, request=request)
    messages.success(request, f"Revoked {key.name} ({key.masked}).")
    return redirect("org_keys", slug=org.slug)


# --- Audit log -----------------------------------------------------------------------


def _audit_events(request, org):
    known = sorted(set(AuditEvent.objects.filter(org=org).values_list("action", flat=True).distinct()))
    form = AuditFilterForm(request.GET or None, actions=known)
    events = AuditEvent.objects.filter(org=org).select_related("actor_user")
    if form.is_valid():
        data = form.cleaned_data
        if data["action"]:
            events = events.filter(action=data["action"])
        if data["actor"]:
            events = events.filter(Q(actor_label__icontains=data["actor"]) | Q(actor_user__email__icontains=data["actor"]))
        tz = timezone.get_current_timezone()
        if data["date_from"]:
            events = events.filter(created_at__gte=datetime.combine(data["date_from"], time.min, tzinfo=tz))
        if data["date_to"]:
            events = events.filter(
                created_at__lt=datetime.combine(data["date_to"] + timedelta(days=1), time.min, tzinfo=tz)
            )
    elif form.is_bound:
        events = events.none()
    return form, events


@org_member_required(Role.ADMIN)
def audit_log(request: HttpRequest, org: Organization, membership: Membership) -> HttpResponse:
    form, events = _audit_events(request, org)
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"org": org, "membership": membership, "form": form, "page": page, "query": query.urlencode()}
    return render(request, "orgs/audit.html", context, status=200 if form.is_valid() or not form.is_bound else 400)


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_cell(value) -> str:
    # Spreadsheets run cells that start with these as formulas.
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@org_member_required(Role.ADMIN)
def audit_export(request: HttpRequest, org: Organization, membership: Membership) -> HttpResponse:
    form, events = _audit_events(request, org)
    writer = csv.writer(_Echo())
    header = ["created_at", "action", "actor", "target_type", "target_id", "changes", "ip", "user_agent"]

    def rows():
        import json

        yield writer.writerow(header)
        for event in events.iterator(chunk_size=1000):
            yield writer.writerow([_csv_cell(v) for v in (
                event.created_at.isoformat(), event.action, event.actor_label, event.target_type, event.target_id,
                json.dumps(event.changes, sort_keys=True), event.ip, event.user_agent,
            )])

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="audit-{org.slug}-{timezone.now():%Y%m%d}.csv"'
    return response


# --- Org settings --------------------------------------------------------------------


@org_member_required(Role.OWNER)
def org_settings(request: HttpRequest, org: Organization, membership: Membership) -> HttpResponse:
    owner_has_2fa = otp.has_2fa(request.user)
    status = 200
    if request.method == "POST":
        form = OrgSettingsForm(request.POST, owner_has_2fa=owner_has_2fa)
        if form.is_valid():
            actions.update_org(org, actor=request.user, name=form.cleaned_data["name"],
                               require_2fa=form.cleaned_data["require_2fa"], request=request)
            messages.success(request, "Settings saved.")
            return redirect("org_settings", slug=org.slug)
        status = 400
    else:
        form = OrgSettingsForm(initial={"name": org.name, "require_2fa": org.require_2fa},
                               owner_has_2fa=owner_has_2fa)
    return render(request, "orgs/org_settings.html", {"org": org, "membership": membership, "form": form},
                  status=status)


@org_member_required(Role.ADMIN)
def org_semantic_cache(request: HttpRequest, org: Organization, membership: Membership) -> HttpResponse:
    """The semantic cache's floor and org-wide scope: owners and admins."""
    status = 200
    if request.method == "POST":
        form = SemanticCacheForm(request.POST)
        if form.is_valid():
            actions.set_semantic_cache(org, actor=request.user, threshold=form.cleaned_data["semantic_cache_threshold"],
                                       org_scope=form.cleaned_data["semantic_cache_org_scope"], request=request)
            messages.success(request, "Semantic cache settings saved.")
            return redirect("org_semantic_cache", slug=org.slug)
        status = 400
    else:
        form = SemanticCacheForm(initial={"semantic_cache_threshold": org.semantic_cache_threshold,
                                          "semantic_cache_org_scope": org.semantic_cache_org_scope})
    return render(request, "orgs/semantic_cache.html", {"org": org, "membership": membership, "form": form},
                  status=status)


@org_member_required(Role.ADMIN)
def org_rate_limits(request: HttpRequest, org: Organization, membership: Membership) -> HttpResponse:
    """Org-wide gateway rate limits: owners and admins."""
    status = 200
    if request.method == "POST":
        form = RateLimitPolicyForm(request.POST)
        if form.is_valid():
            actions.set_rate_limit_policy(org, actor=request.user, policy=form.cleaned_data["rate_limit_policy"],
                                          request=request)
            messages.success(request, "Rate limits saved.")
            return redirect("org_rate_limits", slug=org.slug)
        status = 400
    else:
        form = RateLimitPolicyForm(initial={"rate_limit_policy": org.rate_limit_policy})
    return render(request, "orgs/rate_limits.html", {"org": org, "membership": membership, "form": form},
                  status=status)
