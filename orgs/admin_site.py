from django_otp.admin import OTPAdminSite


class GatewayAdminSite(OTPAdminSite):
    """Staff need a verified OTP device (the login's second step, or the admin login's token field)."""

    site_header = "Helicone Gateway administration"
    site_title = "Helicone Gateway admin"
    index_title = "Operators"

    def __init__(self, name: str = "admin"):
        # OTPAdminSite defaults to "otpadmin"; keep "admin" so admin:… URL names resolve.
        super().__init__(name)
