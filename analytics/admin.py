"""Operators' admin for request logs (read-only, built for a table of millions of rows), site-wide
figures, and model prices with the models traffic uses unpriced."""

from __future__ import annotations

import json
import uuid
from urllib.parse import urlencode

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Q
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html

from gateway.providers import NAMED_PROVIDERS
from orgs.models import Organization

from . import site_figures
from .models import ModelPrice, RequestLog

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
