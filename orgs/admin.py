"""The operators' admin for tenants. Every change made here writes an audit event (the site mixes
orgs.admin_site.AuditMixin into every ModelAdmin); API keys show no secret."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import BaseUserCreationForm
from django.db.models import Count, Q
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from . import actions
from .forms import RateLimitPolicyForm
from .models import ApiKey, AuditEvent, Invitation, Membership, Organization, User


class MembershipInline(admin.TabularInline):
    model = Membership
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]
    extra = 0
    raw_id_fields = ["user"]


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    fields = ["name", "masked", "scopes", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields
    ordering = ["-created_at"]
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # created where the plaintext can be shown: the org's keys page or create_api_key

    @admin.display(description="key")
    def masked(self, obj) -> str:
        return obj.masked


class OrganizationForm(forms.ModelForm):
    class Meta:
        model = Organization
        fields = ["name", "slug", "require_2fa", "rate_limit_policy", "monthly_request_limit", "retention_days",
                  "max_api_keys"]

    def clean_rate_limit_policy(self) -> str:
        # The same parser and normal form as the org's own settings page.
        policy = RateLimitPolicyForm({"rate_limit_policy": self.cleaned_data["rate_limit_policy"]})
        if not policy.is_valid():
            raise forms.ValidationError(policy.errors["rate_limit_policy"])
        return policy.cleaned_data["rate_limit_policy"]


class SuspendForm(forms.Form):
    reason = forms.CharField(max_length=200, help_text="Shown to the org's members in a banner and in the "
                             "gateway's 403 answer to its keys.")

    def clean_reason(self) -> str:
        reason = " ".join(self.cleaned_data["reason"].split())
        if not reason:
            raise forms.ValidationError("Give a reason.")
        return reason


class SuspendedFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("suspended", "Suspended")]

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(suspended_at__isnull=True)
        if self.value() == "suspended":
            return queryset.filter(suspended_at__isnull=False)
        return queryset


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    form = OrganizationForm
    list_display = ["name", "slug", "state", "keys", "retention", "member_count", "created_at"]
    list_filter = [SuspendedFilter, "require_2fa", "created_at"]
    search_fields = ["name", "slug", "memberships__user__email"]
    readonly_fields = ["created_at", "links", "keys", "suspension"]
    fieldsets = [
        (None, {"fields": ["name", "slug", "links", "require_2fa", "rate_limit_policy", "created_at"]}),
        ("Plan limits", {"fields": ["monthly_request_limit", "max_api_keys", "keys", "retention_days"],
                         "description": "Blank: unlimited. The gateway applies a change within a few seconds."}),
        ("Suspension", {"fields": ["suspension"]}),
    ]
    inlines = [MembershipInline, ApiKeyInline]
    actions = ["suspend", "reactivate"]
    audit_values = ("name", "slug", "require_2fa", "rate_limit_policy", "monthly_request_limit", "retention_days",
                    "max_api_keys")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            _members=Count("memberships", distinct=True),
            _keys=Count("api_keys", filter=Q(api_keys__revoked_at__isnull=True), distinct=True),
        )

    @admin.display(description="members", ordering="_members")
    def member_count(self, obj) -> int:
        return obj._members

    @admin.display(description="status", ordering="suspended_at")
    def state(self, obj) -> str:
        if obj.is_suspended:
            return format_html('<strong style="color: #ba2121">suspended</strong> {}', obj.suspended_at.date())
        return "active"

    @admin.display(description="active keys / max", ordering="_keys")
    def keys(self, obj) -> str:
        used = getattr(obj, "_keys", None)
        if used is None:
            return "–"
        return f"{used} / {'unlimited' if obj.max_api_keys is None else obj.max_api_keys}"

    @admin.display(description="retention", ordering="retention_days")
    def retention(self, obj) -> str:
        return "forever" if obj.retention_days is None else f"{obj.retention_days} days"

    @admin.display(description="links")
    def links(self, obj) -> str:
        if not obj.pk:
            return "–"
        return format_html('<a href="{}?org__id__exact={}">Audit events</a>',
                           reverse("admin:orgs_auditevent_changelist"), obj.pk)

    @admin.display(description="suspension")
    def suspension(self, obj) -> str:
        if not obj.pk or not obj.is_suspended:
            return "Active. Suspend it with the Suspend… button above, or the action on the organization list."
        return format_html("Suspended since {} UTC: {}. The gateway refuses its keys (403).",
                           obj.suspended_at.strftime("%Y-%m-%d %H:%M"), obj.suspended_reason)

    def get_actions(self, request):
        actions = super().get_actions(request)
        # Its confirmation page would collect every row the orgs own (millions of request logs).
        actions.pop("delete_selected", None)
        return actions

    @admin.action(description="Suspend the selected organizations…", permissions=["change"])
    def suspend(self, request, queryset):
        form = SuspendForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            for org in queryset:
                actions.suspend_org(org, actor=request.user, reason=form.cleaned_data["reason"], request=request,
                                    via="admin")
            self.message_user(request, f"Suspended {len(queryset)} organization(s): their keys get 403 at the "
                              "gateway within 5 seconds.", messages.SUCCESS)
            return None
        context = {**self.admin_site.each_context(request), "title": "Suspend organizations", "form": form,
                   "orgs": queryset, "opts": self.model._meta,
                   "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME}
        return TemplateResponse(request, "admin/orgs/organization/suspend.html", context,
                                status=400 if form.is_bound else 200)

    @admin.action(description="Reactivate the selected organizations", permissions=["change"])
    def reactivate(self, request, queryset):
        count = 0
        for org in queryset.filter(suspended_at__isnull=False):
            actions.reactivate_org(org, actor=request.user, request=request, via="admin")
            count += 1
        self.message_user(request, f"Reactivated {count} organization(s).", messages.SUCCESS)


class UserCreationForm(BaseUserCreationForm):
    class Meta:
        model = User
        fields = ("email",)


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
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
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "org", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__email", "org__slug", "org__name"]
    list_select_related = ["user", "org"]
    raw_id_fields = ["user", "org"]


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
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
class ApiKeyAdmin(admin.ModelAdmin):
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

    @admin.action(description="Revoke selected API keys", permissions=["change"])
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
