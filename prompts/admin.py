from django.contrib import admin

from .models import Prompt, PromptEnvironment, PromptVersion


class VersionInline(admin.TabularInline):
    model = PromptVersion
    fields = ("version", "model", "message", "author_label", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "org", "source", "updated_at")
    list_filter = ("source", "updated_at")
    search_fields = ("slug", "name", "org__slug")
    list_select_related = ("org",)
    raw_id_fields = ("org",)
    inlines = [VersionInline]


@admin.register(PromptVersion)
class PromptVersionAdmin(admin.ModelAdmin):
    """Versions are immutable: read-only here."""

    list_display = ("prompt", "version", "model", "author_label", "created_at")
    list_filter = ("created_at",)
    search_fields = ("prompt__slug", "prompt__org__slug")
    list_select_related = ("prompt",)
    readonly_fields = [f.name for f in PromptVersion._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(PromptEnvironment)
class PromptEnvironmentAdmin(admin.ModelAdmin):
    list_display = ("prompt", "name", "version", "updated_at")
    list_filter = ("name",)
    search_fields = ("prompt__slug", "org__slug")
    list_select_related = ("prompt", "version")
    raw_id_fields = ("org", "prompt", "version")
