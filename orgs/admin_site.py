"""The operators' admin site: a verified OTP device for every staff user, and an audit
event for every change and action made through it, whichever app registered the model."""

from __future__ import annotations

from django.contrib.admin import ModelAdmin, helpers
from django.db import transaction
from django.http import HttpResponseRedirect
from django_otp.admin import OTPAdminAuthenticationForm, OTPAdminSite

from .forms import ThrottledLoginMixin


class AdminLoginForm(ThrottledLoginMixin, OTPAdminAuthenticationForm):
    """The admin's login form, throttled like /login/ (wrong passwords and wrong codes count)."""


def _summarise(message) -> dict[str, list]:
    """The admin's structured change message as field names and inline objects (never values)."""
    fields: list[str] = []
    inlines: list[dict[str, str]] = []
    for entry in message or []:
        if not isinstance(entry, dict):
            continue
        for verb, detail in entry.items():
            if not isinstance(detail, dict):
                continue
            if "object" in detail:  # an inline row added, changed or deleted with its parent
                inlines.append({verb: detail.get("name", ""), "object": str(detail["object"])[:200],
                                **({"fields": detail["fields"]} if detail.get("fields") else {})})
            else:
                fields.extend(detail.get("fields", []))
    return {"fields": fields, **({"inlines": inlines} if inlines else {})}


def _plain(value):
    """A form value as JSON can store it (decimals and dates as text)."""
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


class AuditMixin:
    """Audits the admin's adds, changes, deletions and actions in the admin's own transaction.

    GatewayAdminSite mixes it into every ModelAdmin it registers (django_otp's and auth's
    included), so no admin can forget it. `audit_values` names fields whose old and new values
    are recorded too (plain settings only: never secrets).
    """

    def _audit(self, request, action: str, obj, **changes):
        from . import audit
        from .models import Organization

        org = obj if isinstance(obj, Organization) else getattr(obj, "org", None)
        audit.record(action, request=request, org=org if org is not None and org.pk else None,
                     target_type=obj._meta.label_lower, target_id=str(obj.pk),
                     changes={"model": obj._meta.label_lower, **changes})

    def save_model(self, request, obj, form, change):
        # getattr, not a class default here: the mixin comes first in the MRO and would hide the admin's.
        audit_values = getattr(self, "audit_values", ())
        if change and audit_values:
            obj._audit_values = {name: [_plain(form.initial.get(name)), _plain(form.cleaned_data.get(name))]
                                 for name in audit_values if name in form.changed_data}
        super().save_model(request, obj, form, change)

    def log_addition(self, request, obj, message):
        self._audit(request, "admin.add", obj, **_summarise(message))
        return super().log_addition(request, obj, message)

    def log_change(self, request, obj, message):
        values = getattr(obj, "_audit_values", None)
        self._audit(request, "admin.change", obj, **_summarise(message), **({"values": values} if values else {}))
        return super().log_change(request, obj, message)

    def log_deletions(self, request, queryset):
        for obj in queryset:
            self._audit(request, "admin.delete", obj, object=str(obj)[:200])
        return super().log_deletions(request, queryset)

    def get_actions(self, request):
        # Django offers an action without declared permissions to anyone who may view the list;
        # here such an action needs the change permission, so view-only staff change nothing.
        actions = super().get_actions(request)
        if self.has_change_permission(request):
            return actions
        return {name: entry for name, entry in actions.items() if getattr(entry[0], "allowed_permissions", None)}

    def response_action(self, request, queryset):
        from . import audit

        name = request.POST.get("action", "")
        with transaction.atomic():
            response = super().response_action(request, queryset)
            # A page of the action's own (delete's confirmation, a form asking for a reason) means
            # it has not run yet; a redirect means it ran.
            if isinstance(response, HttpResponseRedirect) and name in self.get_actions(request):
                label = self.model._meta.label_lower
                selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
                audit.record("admin.action", request=request, target_type=label,
                             changes={"model": label, "action": name, "ids": selected[:100], "count": len(selected),
                                      **({"select_across": True} if request.POST.get("select_across") == "1"
                                         else {})})
        return response


def audited(admin_class: type[ModelAdmin]) -> type[ModelAdmin]:
    if issubclass(admin_class, AuditMixin):
        return admin_class
    return type(admin_class.__name__, (AuditMixin, admin_class), {"__module__": admin_class.__module__})


class GatewayAdminSite(OTPAdminSite):
    """Staff need a verified OTP device (the login's second step, or the admin login's token field)."""

    site_header = "Helicone Gateway administration"
    site_title = "Helicone Gateway admin"
    index_title = "Operators"
    login_form = AdminLoginForm

    def __init__(self, name: str = "admin"):
        # OTPAdminSite defaults to "otpadmin"; keep "admin" so admin:… URL names resolve.
        super().__init__(name)

    def register(self, model_or_iterable, admin_class=None, **options):
        super().register(model_or_iterable, audited(admin_class or ModelAdmin), **options)

    def login(self, request, extra_context=None):
        from . import audit

        was_authenticated = request.user.is_authenticated
        with transaction.atomic():
            response = super().login(request, extra_context)
            if request.method == "POST":
                if request.user.is_authenticated and not was_authenticated:
                    audit.record("user.login", request=request, target=request.user,
                                 changes={"2fa": True, "via": "admin"})
                elif not request.user.is_authenticated:
                    form = (getattr(response, "context_data", None) or {}).get("form")
                    lockout = getattr(form, "lockout", None)
                    changes = {"email": request.POST.get("username", "")[:254], "via": "admin"}
                    if lockout is not None:
                        changes["locked_out"] = lockout.scope
                        response.status_code = 429
                    audit.record("user.login_failed", request=request, changes=changes)
        return response

    def logout(self, request, extra_context=None):
        from . import audit

        if request.method == "POST" and request.user.is_authenticated:
            audit.record("user.logout", request=request, target=request.user, changes={"via": "admin"})
        return super().logout(request, extra_context)

    def password_change(self, request, extra_context=None):
        from . import audit

        with transaction.atomic():
            response = super().password_change(request, extra_context)
            # A redirect means the form was valid and the password changed.
            if request.method == "POST" and isinstance(response, HttpResponseRedirect):
                audit.record("user.password_change", request=request, target=request.user,
                             changes={"via": "admin"})
        return response
