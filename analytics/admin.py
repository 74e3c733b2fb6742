"""Operators' admin for request logs (read-only, built for a table of millions of rows), site-wide
figures, model prices with the models traffic uses unpriced, and the organizations' usage."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from datetime import timezone as dt_timezone
from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Q, Sum
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html

from formats.providers import NAMED_PROVIDERS
from orgs import admin as orgs_admin
from orgs.models import Organization

from . import clickhouse, rollups, site_figures
from .models import ModelPrice, RequestLog, Rollup

PROVIDERS = ("openai", "anthropic", "azure", *NAMED_PROVIDERS, "custom")


class NoCountPaginator(Paginator):
    """Never counts the table: at millions of rows a COUNT(*) costs more than the page.
    The list pages with newer/older links instead (templates/admin/analytics/requestlog/)."""

    @cached_property
    def count(self) -> int:
        return 1_000_000_000


class InputFilter(admin.SimpleListFilter):
    """A text box in the filter sidebar: for values too many to list (and too costly to collect)."""

    template = "admin/input_filter.html"
    placeholder = ""

    def lookups(self, request, model_admin):
        return [("", "")]  # has_output() needs one

    def choices(self, changelist):
        keep = [(name, value) for name, value in changelist.params.items() if name != self.parameter_name]
        yield {"parameter": self.parameter_name, "value": self.value() or "", "keep": keep,
               "placeholder": self.placeholder,
               "query_string": changelist.get_query_string(remove=[self.parameter_name])}


class OrgFilter(InputFilter):
    title = "organization (slug)"
    parameter_name = "org"
    placeholder = "acme"

    def queryset(self, request, queryset):
        if self.value():
            org = Organization.objects.filter(slug=self.value().strip()).values_list("pk", flat=True).first()
            return queryset.filter(org_id=org if org is not None else -1)
        return queryset


class ModelFilter(InputFilter):
    title = "model (served)"
    parameter_name = "model"
    placeholder = "gpt-4o-mini"

    def queryset(self, request, queryset):
        return queryset.filter(model=self.value().strip()) if self.value() else queryset


class ProviderFilter(admin.SimpleListFilter):
    # A fixed list: the default filter would run SELECT DISTINCT over the whole table.
    title = "provider"
    parameter_name = "provider"

    def lookups(self, request, model_admin):
        return [(name, name) for name in PROVIDERS]

    def queryset(self, request, queryset):
        return queryset.filter(provider=self.value()) if self.value() else queryset


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"
    CLASSES = {
        "2xx": ("2xx success", Q(status__gte=200, status__lt=300)),
        "4xx": ("4xx", Q(status__gte=400, status__lt=500)),
        "429": ("429 rate limited", Q(status=429)),
        "5xx": ("5xx", Q(status__gte=500)),
        "0": ("no answer (0)", Q(status=0)),
        "error": ("any error", Q(status__gte=400) | Q(status__lt=200)),
    }

    def lookups(self, request, model_admin):
        return [(key, label) for key, (label, _q) in self.CLASSES.items()]

    def queryset(self, request, queryset):
        entry = self.CLASSES.get(self.value() or "")
        return queryset.filter(entry[1]) if entry else queryset


class ClickHouseChangeList(ChangeList):
    """The request-log list read from ClickHouse when it is configured: the same filters, search and
    newer/older pages, turned into one query of request_logs (SQL may hold no logs at all)."""

    def get_results(self, request):
        if not clickhouse.enabled():
            return super().get_results(request)
        from .clickhouse import rows

        params = self.params
        org_ids = None
        if params.get("org", "").strip():
            org_ids = list(Organization.objects.filter(slug=params["org"].strip()).values_list("pk", flat=True))
        equals = {}
        for name in ("model", "provider"):
            if params.get(name, "").strip():
                equals[name] = params[name].strip()
        for name in ("cache_hit", "streamed"):
            if params.get(f"{name}__exact") in ("0", "1"):
                equals[name] = params[f"{name}__exact"] == "1"
        since, before = _moment(params.get("created_at__gte")), _moment(params.get("created_at__lt"))
        ascending = "created_at" in self.get_ordering(request, self.root_queryset)
        logs = rows.admin_page(org_ids=org_ids, equals=equals, status=params.get("status", ""), since=since,
                               before=before, search=(self.query or "").strip(), ascending=ascending,
                               offset=(self.page_num - 1) * self.list_per_page, limit=self.list_per_page)
        orgs = Organization.objects.in_bulk({log.org_id for log in logs})
        for log in logs:
            log._state.fields_cache["org"] = orgs.get(log.org_id)
        self.paginator = self.model_admin.get_paginator(request, self.queryset, self.list_per_page)
        self.result_count = self.paginator.count
        self.show_full_result_count = False
        self.show_admin_actions = True
        self.full_result_count = None
        self.result_list = logs
        self.can_show_all = False
        self.multi_page = True


def _moment(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return value if value.tzinfo else timezone.make_aware(value)


@admin.register(RequestLog)
class RequestLogAdmin(admin.ModelAdmin):
    list_display = ("id", "created_at", "org", "provider", "model", "status", "latency_ms", "cost_usd", "cache_hit",
                    "user_id")
    list_filter = (OrgFilter, ProviderFilter, ModelFilter, StatusFilter, "cache_hit", "streamed", "created_at")
    search_fields = ("=id", "=user_id", "=session_id")
    search_help_text = "A request id (Helicone-Id), a user id or a session id, exactly."
    list_select_related = ("org",)
    raw_id_fields = ("org", "api_key")
    paginator = NoCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # facet counts are COUNTs over the table
    sortable_by = ("created_at",)  # newest first by index; any other order sorts the whole table
    exclude = ("request_body", "response_body", "request_headers")
    readonly_fields = ("pretty_request", "pretty_response", "pretty_headers")

    def get_changelist(self, request, **kwargs):
        return ClickHouseChangeList

    def get_object(self, request, object_id, from_field=None):
        if clickhouse.enabled():
            from .clickhouse import rows

            return rows.find(object_id)
        return super().get_object(request, object_id, from_field)

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        # List pages never load the bodies; the detail page does.
        if request.resolver_match and request.resolver_match.url_name.endswith("changelist"):
            qs = qs.defer("request_body", "response_body", "request_headers", "prompt_variables")
        return qs

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(pk=uuid.UUID(term)), False
        except ValueError:
            pass
        # The user and session indexes lead with the org: listing every org's id lets them find a
        # user's requests across orgs (one probe per org and index) without scanning the table.
        # (As a subquery PostgreSQL would rather walk the time index: 10x slower at 1M rows.)
        orgs = list(Organization.objects.values_list("pk", flat=True))
        return queryset.filter(org_id__in=orgs).filter(Q(user_id=term) | Q(session_id=term)), False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @staticmethod
    def _pretty(text: str):
        try:
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except (TypeError, ValueError):
            pass
        return format_html('<pre style="white-space: pre-wrap; max-width: 100ch">{}</pre>', text)

    @admin.display(description="request body")
    def pretty_request(self, obj: RequestLog):
        return "(omitted)" if obj.request_omitted else self._pretty(obj.request_body)

    @admin.display(description="response body")
    def pretty_response(self, obj: RequestLog):
        return "(omitted)" if obj.response_omitted else self._pretty(obj.response_body)

    @admin.display(description="request headers (redacted)")
    def pretty_headers(self, obj: RequestLog):
        return self._pretty(json.dumps(obj.request_headers))

    def get_urls(self):
        view = self.admin_site.admin_view(self.figures_view)
        return [path("figures/", view, name="analytics_requestlog_figures"), *super().get_urls()]

    def figures_view(self, request):
        """Site-wide requests, cost, error rate and active orgs over a bounded window; top orgs."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        slug = request.GET.get("org", "").strip()
        figures = site_figures.site_figures(request.GET.get("window", ""), slug)
        windows = [(name, "?" + urlencode({"window": name, **({"org": slug} if slug else {})}))
                   for name in site_figures.WINDOWS]
        context = {**self.admin_site.each_context(request), "title": "Site figures" + (f": {slug}" if slug else ""),
                   "opts": self.model._meta, "figures": figures, "charts": figures.charts(), "windows": windows,
                   "org_slug": slug, "cache_seconds": site_figures.CACHE_SECONDS}
        return TemplateResponse(request, "admin/analytics/figures.html", context)


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = ("model", "provider", "input_per_mtok", "output_per_mtok", "cached_input_per_mtok", "updated_at")
    search_fields = ("model", "provider")
    list_filter = ("provider",)
    audit_values = ("provider", "model", "input_per_mtok", "output_per_mtok", "cached_input_per_mtok")

    def get_urls(self):
        view = self.admin_site.admin_view(self.unpriced_view)
        return [path("unpriced/", view, name="analytics_modelprice_unpriced"), *super().get_urls()]

    def unpriced_view(self, request):
        """Models seen in the last 30 days with token counts but no price, each with an “add price” link."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        can_add = self.has_add_permission(request)
        add_url = reverse("admin:analytics_modelprice_add")
        rows = [{"model": item, "add_url": f"{add_url}?{urlencode({'provider': item.provider, 'model': item.model})}"}
                for item in site_figures.unpriced_models()]
        context = {**self.admin_site.each_context(request), "title": "Unpriced models", "opts": self.model._meta,
                   "rows": rows, "can_add": can_add}
        return TemplateResponse(request, "admin/analytics/modelprice/unpriced.html", context)


from . import alert_admin  # noqa: E402,F401  (alerts register their own admin)

# --- Organizations: what their logs tell ----------------------------------------------------

USAGE_CACHE_SECONDS = 60


def month_start() -> datetime:
    return timezone.now().astimezone(dt_timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def month_usage_key(org_id: int, start: datetime) -> str:
    return f"hc:org-month-usage:{org_id}:{start:%Y-%m}"


def month_usage(org_ids: list[int], *, cached: bool = True) -> dict[int, int]:
    """Requests logged this month (UTC) per org: one grouped COUNT on the (org, created_at) index
    for the orgs not counted in the last minute (a busy month is a million index entries a page)."""
    start = month_start()
    keys = {pk: month_usage_key(pk, start) for pk in org_ids}
    found = cache.get_many(list(keys.values())) if cached else {}
    usage = {pk: found[key] for pk, key in keys.items() if key in found}
    missing = [pk for pk in org_ids if pk not in usage]
    if missing:
        if clickhouse.enabled():
            from .clickhouse import reads

            counted = reads.requests_since(missing, start)
            covered = set(missing)
        else:
            # The rollups' days of the month; the raw rows of orgs whose rollups are not built yet.
            covered = rollups.covered_orgs(missing, start)
            counted = dict(Rollup.objects.filter(org_id__in=covered, dim="", grain="d", bucket__gte=start)
                           .order_by().values("org_id").annotate(n=Sum("requests")).values_list("org_id", "n"))
        counted.update(RequestLog.objects.filter(org_id__in=[pk for pk in missing if pk not in covered],
                                                 created_at__gte=start).order_by()
                       .values("org_id").annotate(n=Count("id")).values_list("org_id", "n"))
        fresh = {pk: counted.get(pk, 0) for pk in missing}
        cache.set_many({keys[pk]: n for pk, n in fresh.items()}, USAGE_CACHE_SECONDS)
        usage.update(fresh)
    return usage


admin.site.unregister(Organization)


@admin.register(Organization)
class OrganizationAdmin(orgs_admin.OrganizationAdmin):
    """The foundation's organization admin with what the logs tell: requests this month against the
    plan's monthly limit, links to the org's dashboard, logs and figures. An org with request logs
    cannot be deleted here (the confirmation page would collect every log): suspend it instead."""

    list_display = ["name", "slug", "state", "usage", "keys", "retention", "member_count", "created_at"]
    readonly_fields = ["created_at", "links", "usage", "keys", "suspension"]
    fieldsets = [
        (None, {"fields": ["name", "slug", "links", "require_2fa", "rate_limit_policy", "created_at"]}),
        ("Plan limits", {"fields": ["monthly_request_limit", "usage", "max_api_keys", "keys", "retention_days"],
                         "description": "Blank: unlimited. The gateway applies a change within a few seconds."}),
        ("Suspension", {"fields": ["suspension"]}),
    ]

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        usage = month_usage([org.pk for org in changelist.result_list])
        for org in changelist.result_list:
            org._month_requests = usage[org.pk]
        return changelist

    def get_object(self, request, object_id, from_field=None):
        org = super().get_object(request, object_id, from_field)
        if org is not None:
            org._month_requests = month_usage([org.pk], cached=False)[org.pk]
        return org

    @admin.display(description="requests this month / limit")
    def usage(self, obj) -> str:
        used = getattr(obj, "_month_requests", None)
        if used is None:  # the add form
            return "–"
        if obj.monthly_request_limit is None:
            return f"{used:,} / unlimited"
        share = 100 * used / obj.monthly_request_limit if obj.monthly_request_limit else 100
        text = f"{used:,} / {obj.monthly_request_limit:,} ({share:.0f}%)"
        return format_html('<strong style="color: #ba2121">{}</strong>', text) if share >= 100 else text

    @admin.display(description="links")
    def links(self, obj) -> str:
        if not obj.pk:
            return "–"
        return format_html(
            '<a href="{}">Dashboard</a> (for its members) · <a href="{}?org={}">Request logs</a> · '
            '<a href="{}?org={}">Figures</a> · <a href="{}?org__id__exact={}">Audit events</a>',
            reverse("org_home", args=[obj.slug]), reverse("admin:analytics_requestlog_changelist"), obj.slug,
            reverse("admin:analytics_requestlog_figures"), obj.slug, reverse("admin:orgs_auditevent_changelist"),
            obj.pk)

    @staticmethod
    def _clickhouse_logs(org) -> bool:
        if not clickhouse.enabled():
            return False
        from .clickhouse import rows

        return rows.has_logs(org.pk)

    def has_delete_permission(self, request, obj=None) -> bool:
        # Only an org without request logs (a mistake, a test): deleting one with traffic would have the
        # admin collect every log row for its confirmation page. Suspend those instead.
        if obj is not None and ((not clickhouse.only() and RequestLog.objects.filter(org=obj).exists())
                                or self._clickhouse_logs(obj)):
            return False
        return super().has_delete_permission(request, obj)
