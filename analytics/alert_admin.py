"""Admin for alerts: rules (with a mute action), read-only history and delivery log."""

from django.contrib import admin

from .models import AlertEvent, AlertRule, Webhook, WebhookDelivery


class ReadOnlyAdmin(admin.ModelAdmin):
    """History: inspected, never edited or deleted here."""

    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ("name", "org", "metric", "comparison", "threshold", "window_seconds", "muted",
                    "last_evaluated_at")
    list_filter = ("metric", "muted", "created_at")
    search_fields = ("name", "org__slug")
    list_select_related = ("org",)
    raw_id_fields = ("org", "email_recipients", "webhooks")
    readonly_fields = ("next_evaluation_at", "last_evaluated_at", "created_at")
    actions = ["mute", "unmute"]

    @admin.action(description="Mute the selected rules", permissions=["change"])
    def mute(self, request, queryset):
        from . import alerts

        for rule in queryset.select_related("org"):
            alerts.set_muted(rule, True, request=request)

    @admin.action(description="Unmute the selected rules", permissions=["change"])
    def unmute(self, request, queryset):
        from . import alerts

        for rule in queryset.select_related("org"):
            alerts.set_muted(rule, False, request=request)


@admin.register(AlertEvent)
class AlertEventAdmin(ReadOnlyAdmin):
    list_display = ("rule", "org", "group_key", "value", "threshold", "fired_at", "resolved_at")
    list_filter = (("resolved_at", admin.EmptyFieldListFilter), "fired_at")
    date_hierarchy = "fired_at"
    list_select_related = ("rule", "org")
    search_fields = ("rule__name", "org__slug", "group_key")


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    list_display = ("url", "org", "kind", "enabled", "sample_rate", "created_at")
    list_filter = ("kind", "enabled")
    list_select_related = ("org",)
    search_fields = ("url", "org__slug")
    raw_id_fields = ("org",)
    # The signing secret is the org's: its admins see it on the webhooks page; operators never need it.
    exclude = ("secret",)
    readonly_fields = ("signing_secret",)

    @admin.display(description="signing secret")
    def signing_secret(self, obj) -> str:
        return f"…{obj.secret[-4:]}" if obj.secret else "–"

    def has_add_permission(self, request) -> bool:
        return False  # made on the org's webhooks page, where its secret is shown to its admins


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "org", "event_type", "url", "attempt", "status", "response_status")
    list_filter = ("status", "event_type", "format", "created_at")
    list_select_related = ("org",)
    search_fields = ("url", "org__slug", "message_id")
