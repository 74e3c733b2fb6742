"""The one way views reach an organization: through the user's membership.

Missing orgs and orgs the user does not belong to look the same (404), so slugs
cannot be probed. Other apps import `org_member_required` and `get_org_for_member`.
"""

from __future__ import annotations

from functools import wraps
from urllib.parse import urlencode

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.urls import reverse

from .models import Membership, Organization, Role

__all__ = ["get_org_for_member", "org_member_required", "needs_2fa"]


def _membership(user, slug: str) -> Membership:
    if user is None or not user.is_authenticated or not getattr(user, "pk", None):
        raise Http404("No such organization.")
    membership = Membership.objects.select_related("org").filter(user=user, org__slug=slug).first()
    if membership is None:
        raise Http404("No such organization.")
    return membership


def get_org_for_member(user, slug: str, role: str = Role.VIEWER) -> tuple[Organization, Membership]:
    """The org `slug` and the user's membership; Http404 for non-members, PermissionDenied below `role`."""
    membership = _membership(user, slug)
    if not membership.has_role(role):
        raise PermissionDenied(f"This needs the {Role(role).label.lower()} role or higher.")
    return membership.org, membership


def needs_2fa(request, org: Organization) -> bool:
    """True when the org requires 2FA and this session was not verified with a device."""
    if not org.require_2fa:
        return False
    is_verified = getattr(request.user, "is_verified", None)
    return not (is_verified and is_verified())


def org_member_required(role: str = Role.VIEWER):
    """Decorator for views taking (request, slug, ...); calls view(request, org, membership, ...)."""

    def decorator(view):
        @wraps(view)
        def wrapper(request, slug: str, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            membership = _membership(request.user, slug)
            org = membership.org
            # Before the role check, so nothing about the org leaks to an unverified session.
            if needs_2fa(request, org):
                query = urlencode({"next": request.get_full_path(), "org": org.slug})
                return HttpResponseRedirect(f"{reverse('two_factor')}?{query}")
            if not membership.has_role(role):
                raise PermissionDenied(f"This needs the {Role(role).label.lower()} role or higher.")
            return view(request, org, membership, *args, **kwargs)

        return wrapper

    return decorator
