from django.contrib import admin
from django.urls import include, path

from analytics.api import api
from analytics.helicone_api import helicone

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/prompts/", include("prompts.api")),
    path("api/v1/", api.urls),
    # Helicone's own routes (/v1/request/…, /custom/v1/log, …): docs/helicone-compat.md
    path("", helicone.urls),
    path("", include("prompts.urls")),
    path("", include("analytics.urls")),
    path("", include("orgs.urls")),
]
