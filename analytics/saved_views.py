"""The explorer's filter builder (conditions as chips, the "Add condition" form) and saved views:
an org's named explorer URLs (analytics.models.SavedView).

Members save the explorer's current query under a name, every member sees the org's list and
opens one as a plain link; members delete them. Viewers read the list only. Each save and
delete is one transaction with one audit event; another org's view is a 404.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from orgs import audit
from orgs.access import org_member_required
from orgs.models import Membership, Organization, Role

from .models import SavedView
from .queries import (
    CONDITION_FIELDS,
    OPERATORS,
    OPERATORS_BY_KIND,
    PROPERTY_FIELD,
    Conditions,
    FilterError,
    RangeError,
    parse_condition,
    parse_conditions,
    time_range,
)

# Builder inputs, never part of a shared or saved URL.
BUILDER_PARAMS = ("add_field", "add_key", "add_op", "add_value")
# Not kept in a saved view: the page number, and what only a form sends.
UNSAVED_PARAMS = ("page", "csrfmiddlewaretoken", *BUILDER_PARAMS)
MAX_QUERY_LENGTH = 4000


def _clean_query(params: QueryDict) -> QueryDict:
    """The explorer's query without builder inputs, page, and empty simple fields (a form's blanks)."""
    query = QueryDict(mutable=True)
    for name, values in params.lists():
        if name in UNSAVED_PARAMS:
            continue
        kept = [value for value in values if value != ""]
        if name == "join" and kept == ["and"]:  # the default
            continue
        if kept:
            query.setlist(name, kept)
    return query


def add_condition_redirect(request: HttpRequest) -> HttpResponse | str | None:
    """The builder's GET form: the explorer URL with its new condition (a redirect), or the error
    to show (the page is then a 400). An empty value adds nothing (the form's Apply button)."""
    params = request.GET
    field, key = params.get("add_field", "").strip(), params.get("add_key", "").strip()
    op, value = params.get("add_op", "eq").strip(), params.get("add_value", "")
    query = _clean_query(params)
    if field and value.strip() != "":
        if field == "property":
            if not key:
                return "Invalid condition: choose the property's name"
            field = PROPERTY_FIELD + key
        text = f"{field}:{op}:{value.strip()}"
        try:
            parse_condition(text)
        except FilterError as exc:
            return str(exc)
        query.setlist("f", [*query.getlist("f"), text])
    target = request.path + ("?" + query.urlencode() if query else "")
    return HttpResponseRedirect(target)


# The explorer's simple parameters (older links, chart clicks): shown as chips too, always ANDed.
SIMPLE_LABELS = {"model": "Model", "provider": "Provider", "status": "Status", "user_id": "User",
                 "session_id": "Session", "request_name": "Request name", "cache_hit": "Cache hit",
                 "prompt_id": "Prompt"}


def _simple_chips(params: QueryDict) -> list[dict[str, str]]:
    chips = []
    for name, label in SIMPLE_LABELS.items():
        value = params.get(name, "").strip()
        if value:
            chips.append({"label": f"{label} = {value}", "param": name, "remove": "?" + _without(params, name)})
    key, value = params.get("prop_key", "").strip(), params.get("prop_value", "").strip()
    if key and value:
        chips.append({"label": f"property {key} = {value}", "param": "prop_key",
                      "remove": "?" + _without(params, "prop_key", also=("prop_value",))})
    if params.get("q", "").strip():
        chips.append({"label": f"Text contains {params['q'].strip()}", "param": "q",
                      "remove": "?" + _without(params, "q")})
    return chips


def _without(params: QueryDict, name: str, value: str | None = None, also: tuple[str, ...] = ()) -> str:
    query = _clean_query(params)
    for other in also:
        query.pop(other, None)
    if value is None:
        query.pop(name, None)
    else:
        rest = list(query.getlist(name))
        rest.remove(value)
        query.setlist(name, rest)
    return query.urlencode()


def explorer_context(request: HttpRequest, org: Organization, membership: Membership,
                     conditions: Conditions) -> dict[str, Any]:
    """What the explorer's builder, chips and saved views show."""
    params = request.GET
    chips = [{"label": c.label, "param": c.param, "remove": "?" + _without(params, "f", c.param)}
             for c in conditions.items]
    query = _clean_query(params)
    join_query = query.copy()
    join_query["join"] = "and" if conditions.any_of else "or"
    return {
        "conditions": conditions,
        "chips": chips,
        "simple_chips": _simple_chips(params),
        "join": conditions.join,
        "toggle_join_url": "?" + join_query.urlencode(),
        "clear_conditions_url": "?" + _without(params, "f", also=("join",)) if chips else "",
        "hidden_conditions": [c.param for c in conditions.items],
        "builder_fields": [(name, label, kind) for name, (kind, label) in CONDITION_FIELDS.items()],
        "builder_operators": {kind: [(op, OPERATORS[op]) for op in ops] for kind, ops in OPERATORS_BY_KIND.items()},
        "operators": list(OPERATORS.items()),
        "added": {name: params.get(name, "") for name in BUILDER_PARAMS},
        "saved_views": SavedView.objects.filter(org=org).order_by("name"),
        "can_save_views": membership.has_role(Role.MEMBER),
        "current_query": query.urlencode(),
    }


# --- Saved views: state changes (one transaction, one audit event each) ---------------------------


def save_view(org: Organization, name: str, query: str, *, request: HttpRequest) -> tuple[SavedView, bool]:
    """Create the view, or point an existing view of that name at the new query."""
    with transaction.atomic():
        view = SavedView.objects.select_for_update().filter(org=org, name=name).first()
        created = view is None
        if created:
            view = SavedView.objects.create(org=org, name=name, query=query, created_by=request.user)
        else:
            changes = {"query": [view.query, query]}
            view.query = query
            view.save(update_fields=["query", "updated_at"])
        audit.record("saved_view.create" if created else "saved_view.update", request=request, org=org, target=view,
                     changes={"name": name, "query": query} if created else {"name": name, **changes})
    return view, created


def delete_view(view: SavedView, *, request: HttpRequest) -> None:
    with transaction.atomic():
        audit.record("saved_view.delete", request=request, org=view.org, target=view,
                     changes={"name": view.name, "query": view.query})
        view.delete()


def _explorer(org: Organization, query: str = "") -> str:
    return reverse("request_list", args=[org.slug]) + (f"?{query}" if query else "")


def _error(request: HttpRequest, org: Organization, membership: Membership, error: str) -> HttpResponse:
    return render(request, "analytics/saved_view_error.html",
                  {"org": org, "membership": membership, "error": error,
                   "back": _explorer(org, request.POST.get("query", "")[:MAX_QUERY_LENGTH])}, status=400)


@require_POST
@org_member_required(Role.MEMBER)
def saved_view_save(request: HttpRequest, org: Organization, membership: Membership) -> HttpResponse:
    name = " ".join(request.POST.get("name", "").split())
    raw = request.POST.get("query", "").lstrip("?")
    if not name:
        return _error(request, org, membership, "Name the view: the name is empty.")
    if len(name) > 100:
        return _error(request, org, membership, f"The view's name is {len(name)} characters long: at most 100.")
    if len(raw) > MAX_QUERY_LENGTH:
        return _error(request, org, membership, f"The view's query is too long: at most {MAX_QUERY_LENGTH} characters.")
    if "\x00" in name or "\x00" in raw:
        return _error(request, org, membership, "The view's name or query contains a NUL character.")
    params = QueryDict(raw)
    try:  # what would not open as an explorer page is not saved
        parse_conditions(params)
        time_range(params)
    except (FilterError, RangeError) as exc:
        return _error(request, org, membership, f"This view cannot be saved: {exc}")
    query = _clean_query(params).urlencode()
    try:
        view, created = save_view(org, name, query, request=request)
    except IntegrityError:  # two saves of a new name at once
        return _error(request, org, membership, f"A view named “{name}” was just saved by someone else: try again.")
    messages.success(request, f"Saved the view “{view.name}”." if created else f"Updated the view “{view.name}”.")
    return HttpResponseRedirect(_explorer(org, query))


@require_POST
@org_member_required(Role.MEMBER)
def saved_view_delete(request: HttpRequest, org: Organization, membership: Membership, view_id: int) -> HttpResponse:
    view = get_object_or_404(SavedView, org=org, pk=view_id)
    delete_view(view, request=request)
    messages.success(request, f"Deleted the view “{view.name}”.")
    back = request.POST.get("next", "")
    back = back if back.startswith("?") and len(back) <= MAX_QUERY_LENGTH else ""
    return HttpResponseRedirect(_explorer(org) + back)

