from django.db import transaction
from django_otp.admin import OTPAdminSite


class GatewayAdminSite(OTPAdminSite):
    """Staff need a verified OTP device (the login's second step, or the admin login's token field)."""

    site_header = "Helicone Gateway administration"
    site_title = "Helicone Gateway admin"
    index_title = "Operators"

    def __init__(self, name: str = "admin"):
        # OTPAdminSite defaults to "otpadmin"; keep "admin" so admin:… URL names resolve.
        super().__init__(name)

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
                    audit.record("user.login_failed", request=request,
                                 changes={"email": request.POST.get("username", "")[:254], "via": "admin"})
        return response
