"""Pages for the data lifecycle: erasing one end user (with a confirmation page) and
downloading the org's export. Owners and admins only; outsiders get 404 like everywhere.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from orgs.access import org_member_required
from orgs.models import Membership, Organization, Role

from . import clickhouse, lifecycle
from .models import RequestLog
from .queries import Selection


@org_member_required(Role.ADMIN)
def user_erase(request: HttpRequest, org: Organization, membership: Membership) -> HttpResponse:
    """GET: what erasing `?user_id=` would delete, with a confirmation form; POST: erase it."""
    source = request.POST if request.method == "POST" else request.GET
    user_id = source.get("user_id", "")
    if not user_id or len(user_id) > 255 or "\x00" in user_id:
        return render(request, "analytics/user_erase.html", {"org": org, "membership": membership,
                      "error": "Give the user id to erase (1 to 255 characters)."}, status=400)
    if request.method == "POST":
        counts = lifecycle.erase_user(org, user_id, via="page", user=request.user, request=request)
        messages.success(request, f"Erased user “{user_id}”: {counts['requests']} request(s) and everything "
                                  "attached to them.")
        return redirect("user_list", slug=org.slug)
    if clickhouse.enabled():
        from .clickhouse import rows

        requests = rows.count(Selection(org, filters={"user_id": user_id}))
    else:
        requests = RequestLog.objects.filter(org=org, user_id=user_id).count()
    return render(request, "analytics/user_erase.html",
                  {"org": org, "membership": membership, "user_id": user_id, "requests": requests})


@org_member_required(Role.ADMIN)
@require_POST
def org_export(request: HttpRequest, org: Organization, membership: Membership) -> HttpResponse:
    """The org's export as a zip, streamed while it is written."""
    lifecycle.record_export(org, via="page", user=request.user, request=request)
    response = StreamingHttpResponse(lifecycle.stream_zip(org), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="export-{org.slug}-{timezone.now():%Y%m%d}.zip"'
    return response
