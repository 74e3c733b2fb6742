"""The operators' admin. Every change made here writes an audit event; API keys show no secret."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import BaseUserCreationForm
from django.db import transaction
from django.db.models import Count, Q

from . import actions, audit
from .models import ApiKey, AuditEvent, Invitation, Membership, Organization, User


def _changed_fields(message) -> list[str]:
    """Field names from the admin's structured change message (never their values)."""
    fields: list[str] = []
    for entry in message or []:
        if isinstance(entry, dict):
            for detail in entry.values():
                fields.extend(detail.get("fields", []) if isinstance(detail, dict) else [])
    return fields


class AuditedAdmin(admin.ModelAdmin):
    """Adds an audit event (in the admin's own transaction) to every add, change, delete and action."""

    def _org_of(self, obj):
        if isinstance(obj, Organization):
            return obj
        return getattr(obj, "org", None)

    def _record(self, request, action: str, obj, **changes):
        audit.record(action, request=request, org=self._org_of(obj), target=obj,
                     changes={"model": obj._meta.label_lower, **changes})

    def log_addition(self, request, obj, message):
        self._record(request, "admin.add", obj, fields=_changed_fields(message))
        return super().log_addition(request, obj, message)

    def log_change(self, request, obj, message):
        self._record(request, "admin.change", obj, fields=_changed_fields(message))
        return super().log_change(request, obj, message)

    def log_deletions(self, request, queryset):
        for obj in queryset:
            org = self._org_of(obj)
            audit.record("admin.delete", request=request,
                         org=org if org is not None and org.pk else None,
                         target_type=obj._meta.label_lower, target_id=str(obj.pk),
                         changes={"model": obj._meta.label_lower, "object": str(obj)[:200]})
        return super().log_deletions(request, queryset)

    def response_action(self, request, queryset):
        action = request.POST.get("action", "")
        selected = request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME)
        with transaction.atomic():
            # delete_selected first shows a confirmation page; audit the confirmed run only.
            confirming = action == "delete_selected" and "post" not in request.POST
            if action and selected and not confirming:
                audit.record("admin.action", request=request, target_type=self.model._meta.label_lower,
                             changes={"model": self.model._meta.label_lower, "action": action,
                                      "ids": selected[:100], "count": len(selected)})
            return super().response_action(request, queryset)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]


@admin.register(Organization)
class OrganizationAdmin(AuditedAdmin):
    list_display = ["name", "slug", "member_count", "key_count", "require_2fa", "created_at"]
    list_filter = ["require_2fa", "created_at"]
    search_fields = ["name", "slug", "memberships__user__email"]
    readonly_fields = ["created_at"]
    inlines = [MembershipInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            _members=Count("memberships", distinct=True),
            _keys=Count("api_keys", filter=Q(api_keys__revoked_at__isnull=True), distinct=True),
        )

    @admin.display(description="members", ordering="_members")
    def member_count(self, obj) -> int:
        return obj._members

    @admin.display(description="active keys", ordering="_keys")
    def key_count(self, obj) -> int:
        return obj._keys


class UserCreationForm(BaseUserCreationForm):
    class Meta:
        model = User
        fields = ("email",)


@admin.register(User)
class UserAdmin(AuditedAdmin, DjangoUserAdmin):
    add_form = UserCreationForm
    ordering = ["email"]
    list_display = ["email", "first_name", "last_name", "is_staff", "is_active", "date_joined", "last_login"]
    list_filter = ["is_staff", "is_superuser", "is_active"]
    search_fields = ["email", "first_name", "last_name"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


@admin.register(Membership)
class MembershipAdmin(AuditedAdmin):
    list_display = ["user", "org", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__email", "org__slug", "org__name"]
    list_select_related = ["user", "org"]
    raw_id_fields = ["user", "org"]


@admin.register(Invitation)
class InvitationAdmin(AuditedAdmin):
    list_display = ["email", "org", "role", "invited_by", "created_at", "accepted_at"]
    list_filter = ["role", ("accepted_at", admin.EmptyFieldListFilter)]
    search_fields = ["email", "org__slug"]
    list_select_related = ["org", "invited_by"]
    raw_id_fields = ["org", "invited_by", "accepted_by"]
    readonly_fields = ["created_at", "accepted_at", "accepted_by"]


class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["name"]


@admin.register(ApiKey)
class ApiKeyAdmin(AuditedAdmin):
    form = ApiKeyForm
    list_display = ["name", "masked", "org", "scopes", "created_by", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), "created_at"]
    search_fields = ["name", "prefix", "org__slug", "org__name"]
    list_select_related = ["org", "created_by"]
    # No hashed_key, anywhere: it is enough to look a key up.
    fields = ["name", "masked", "org", "scopes", "created_by", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["masked", "org", "scopes", "created_by", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke_keys"]

    def has_add_permission(self, request) -> bool:
        # The plaintext must be shown to whoever will use the key: create keys from the org's page or
        # `manage.py create_api_key`.
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # revoke instead; the audit trail refers to keys

    @admin.display(description="key")
    def masked(self, obj) -> str:
        return obj.masked

    @admin.action(description="Revoke selected API keys")
    def revoke_keys(self, request, queryset):
        count = 0
        for key in queryset.filter(revoked_at__isnull=True).select_related("org"):
            actions.revoke_api_key(key.org, actor=request.user, key=key, request=request, via="admin")
            count += 1
        self.message_user(request, f"Revoked {count} key(s).", messages.SUCCESS)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "action", "actor_label", "org", "target_type", "target_id", "ip"]
    list_filter = ["action", "created_at"]
    search_fields = ["action", "actor_label", "target_id", "org__slug"]
    list_select_related = ["org"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    actions = None

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
