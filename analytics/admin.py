"""Operators' admin for request logs (read-only, built for big tables) and model prices."""

from __future__ import annotations

import json

from django.contrib import admin
from django.core.paginator import Paginator
from django.utils.functional import cached_property
from django.utils.html import format_html

from orgs.admin import AuditedAdmin

from .models import ModelPrice, RequestLog


class NoCountPaginator(Paginator):
    """Never counts the table: at millions of rows a COUNT(*) costs more than the page."""

    @cached_property
    def count(self) -> int:
        return 1_000_000_000


@admin.register(RequestLog)
class RequestLogAdmin(admin.ModelAdmin):
    list_display = ("id", "created_at", "org", "provider", "model", "status", "latency_ms", "cost_usd", "cache_hit",
                    "user_id")
    list_filter = ("provider", "status", "cache_hit", "streamed", "created_at")
    search_fields = ("=id", "=user_id", "=session_id")
    list_select_related = ("org",)
    raw_id_fields = ("org", "api_key")
    paginator = NoCountPaginator
    show_full_result_count = False
    date_hierarchy = None
    exclude = ("request_body", "response_body", "request_headers")
    readonly_fields = ("pretty_request", "pretty_response", "pretty_headers")

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        # List pages never load the bodies; the detail page does.
        if request.resolver_match and request.resolver_match.url_name.endswith("changelist"):
            qs = qs.defer("request_body", "response_body", "request_headers")
        return qs

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


@admin.register(ModelPrice)
class ModelPriceAdmin(AuditedAdmin):
    list_display = ("model", "provider", "input_per_mtok", "output_per_mtok", "cached_input_per_mtok", "updated_at")
    search_fields = ("model", "provider")
    list_filter = ("provider",)


from . import alert_admin  # noqa: E402,F401  (alerts register their own admin)
