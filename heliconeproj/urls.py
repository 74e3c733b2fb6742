from django.contrib import admin
from django.urls import include, path

from analytics.api import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("", include("orgs.urls")),
]
