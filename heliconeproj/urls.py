from django.contrib import admin
from django.shortcuts import redirect
from django.templatetags.static import static
from django.urls import include, path

from analytics.api import api
from analytics.helicone_api import helicone


def favicon(request):
    """Pages link the SVG icon; this answers what asks for /favicon.ico anyway (the API docs, feed readers)."""
    return redirect(static("favicon.svg"), permanent=True)


urlpatterns = [
    path("favicon.ico", favicon),
    path("admin/", admin.site.urls),
    path("api/v1/prompts/", include("prompts.api")),
    path("api/v1/", api.urls),
    # Helicone's own routes (/v1/request/…, /custom/v1/log, …): docs/helicone-compat.md
    path("", helicone.urls),
    path("", include("prompts.urls")),
    path("", include("analytics.urls")),
    path("", include("orgs.urls")),
]
