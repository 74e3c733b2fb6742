from django.contrib import admin
from django.urls import include, path

from analytics.api import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/prompts/", include("prompts.api")),
    path("api/v1/", api.urls),
    path("", include("prompts.urls")),
    path("", include("analytics.urls")),
    path("", include("orgs.urls")),
]
