"""Forms for the account and organization pages. Errors are attached to the field they concern."""

from __future__ import annotations

from django import forms
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm
from django.core.validators import validate_slug

from . import checks, throttle
from .models import DEFAULT_SCOPES, ApiKeyScope, Organization, Role, User


class SignupForm(forms.Form):
    email = forms.EmailField(max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}))
    password = forms.CharField(
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )

    def clean_email(self) -> str:
        email = self.cleaned_data["email"].strip().lower()
        if User.objects.filter(email__iexact=email).exists():
            raise forms.ValidationError("An account with this email already exists. Log in instead.")
        return email

    def clean(self):
        cleaned = super().clean()
        password = cleaned.get("password")
        if password:
            try:
                password_validation.validate_password(password, User(email=cleaned.get("email", "")))
            except forms.ValidationError as error:
                self.add_error("password", error)
        return cleaned


class ThrottledLoginMixin:
    """For login forms (ours and the admin's): refuse while the account or address is locked
    out, count wrong passwords and tokens. `lockout` tells the view why a login was refused."""

    COUNTED = frozenset({"invalid_login", "invalid_token"})
    lockout: throttle.Lockout | None = None

    def clean(self):
        email = self.data.get("username", "")
        self.lockout = throttle.locked_out(self.request, email)
        if self.lockout is not None:
            raise forms.ValidationError(self.lockout.message, code="locked_out")
        try:
            cleaned = super().clean()
        except forms.ValidationError as error:
            if getattr(error, "code", None) in self.COUNTED:
                self.lockout = throttle.failed(self.request, email)
                if self.lockout is not None:
                    raise forms.ValidationError(self.lockout.message, code="locked_out") from None
            raise
        throttle.succeeded(self.request, email)
        return cleaned


class LoginForm(ThrottledLoginMixin, AuthenticationForm):
    """Email and password; the token, if the user has a device, is asked on a second step."""

    error_messages = {
        "invalid_login": "Email or password is wrong.",
        "inactive": "This account is inactive.",
    }

    def __init__(self, request=None, *args, **kwargs):
        super().__init__(request, *args, **kwargs)
        self.fields["username"].label = "Email"
        self.fields["username"].widget = forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True})

    def clean(self):
        try:
            return super().clean()
        except forms.ValidationError as error:
            # Attach to the password field so the page names what to fix.
            if error.code == "invalid_login":
                self.add_error("password", error)
                return self.cleaned_data
            raise


class TokenForm(forms.Form):
    token = forms.CharField(
        label="Authentication code",
        max_length=16,
        help_text="The 6-digit code from your authenticator app, or one of your backup codes.",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}),
    )

    def clean_token(self) -> str:
        return self.cleaned_data["token"].strip().replace(" ", "").lower()


class PasswordConfirmForm(forms.Form):
    password = forms.CharField(label="Your password", strip=False,
                               widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}))

    def __init__(self, user, *args, **kwargs):
        self.user = user
        super().__init__(*args, **kwargs)

    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        if not self.user.check_password(password):
            raise forms.ValidationError("That is not your password.")
        return password


class OrgCreateForm(forms.ModelForm):
    class Meta:
        model = Organization
        fields = ["name", "slug"]
        # Help texts are HTML (the form template renders them as such): the placeholder is escaped.
        help_texts = {"slug": "Lowercase letters, digits and hyphens, filled in from the name; part of every "
                              "URL of the organization: <code>/o/&lt;slug&gt;/</code>."}
        # app.js fills the slug from the name as it is typed, until the user edits the slug.
        widgets = {"slug": forms.TextInput(attrs={"data-slug-from": "id_name", "autocomplete": "off",
                                                  "spellcheck": "false"})}
        error_messages = {"slug": {"unique": "An organization with this slug already exists; choose another slug."}}

    def clean_slug(self) -> str:
        slug = self.cleaned_data["slug"].strip().lower()
        validate_slug(slug)
        return slug


class OrgSettingsForm(forms.Form):
    name = forms.CharField(max_length=200)
    require_2fa = forms.BooleanField(
        label="Require two-factor authentication",
        required=False,
        help_text="Members without a 2FA device are sent to enrol one before they see this organization.",
    )

    def __init__(self, *args, owner_has_2fa: bool = True, **kwargs):
        self.owner_has_2fa = owner_has_2fa
        super().__init__(*args, **kwargs)

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("The name cannot be blank.")
        return name

    def clean_require_2fa(self) -> bool:
        value = self.cleaned_data["require_2fa"]
        if value and not self.owner_has_2fa:
            raise forms.ValidationError("Set up two-factor authentication on your own account first.")
        return value


class RateLimitPolicyForm(forms.Form):
    rate_limit_policy = forms.CharField(
        label="Rate limit policy",
        required=False,
        max_length=2000,
        widget=forms.TextInput(attrs={"placeholder": "1000;w=3600, 100;w=60;u=user", "spellcheck": "false"}),
        help_text="Applies to every gateway request of this organization, on top of a request's own "
        "<code>Helicone-RateLimit-Policy</code>. Comma-separated <code>QUOTA;w=WINDOW_SECONDS[;u=UNIT][;s=SEGMENT]</code>; "
        "units <code>request</code>, <code>token</code>, <code>cents</code>; segments <code>user</code> or a property "
        "name. Blank: no org-wide limit.",
    )

    def clean_rate_limit_policy(self) -> str:
        value = " ".join(self.cleaned_data["rate_limit_policy"].split())
        if not value:
            return ""
        try:
            return checks.clean("rate_limit_policy", value)
        except ValueError as error:
            raise forms.ValidationError(str(error)) from None


class SemanticCacheForm(forms.Form):
    semantic_cache_threshold = forms.FloatField(
        label="Similarity floor", min_value=0.5, max_value=1.0,
        widget=forms.NumberInput(attrs={"step": "0.01"}),
        help_text="The lowest similarity (0.5 to 1) a semantic hit needs. A request's "
        "<code>Helicone-Cache-Semantic-Threshold</code> may only raise it.",
    )
    semantic_cache_org_scope = forms.BooleanField(
        label="Allow Helicone-Cache-Semantic-Scope: org", required=False,
        help_text="Requests may then share semantic cache entries across every API key and end user of this "
        "organization. Leave off when keys or users must not see each other's answers.",
    )


def role_choices_up_to(role: str) -> list[tuple[str, str]]:
    from .models import ROLE_RANK

    return [(value, label) for value, label in Role.choices if ROLE_RANK[Role(value)] <= ROLE_RANK[Role(role)]]


class InviteForm(forms.Form):
    email = forms.EmailField(max_length=254)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)

    def __init__(self, *args, max_role: str = Role.OWNER, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = role_choices_up_to(max_role)
        self.fields["role"].initial = Role.MEMBER

    def clean_email(self) -> str:
        return self.cleaned_data["email"].strip().lower()


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What uses this key, e.g. “production backend”.")
    scopes = forms.MultipleChoiceField(
        choices=ApiKeyScope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=DEFAULT_SCOPES,
        error_messages={"required": "Choose at least one scope."},
    )

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("The name cannot be blank.")
        return name


class AuditFilterForm(forms.Form):
    action = forms.ChoiceField(required=False)
    actor = forms.CharField(required=False, max_length=254, help_text="Email, or part of it.")
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, actions: list[str] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["action"].choices = [("", "All actions")] + [(a, a) for a in actions]

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "“To” must be on or after “From”.")
        return cleaned
