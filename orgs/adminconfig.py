"""Listed in INSTALLED_APPS instead of "django.contrib.admin".

Its default site requires a verified OTP device for every staff user. A module
of its own because the site class imports forms, which cannot load this early.
"""

from django.contrib.admin.apps import AdminConfig


class OTPAdminConfig(AdminConfig):
    default_site = "orgs.admin_site.GatewayAdminSite"
