from django.urls import path

from . import views

urlpatterns = [
    path("o/<slug:slug>/prompts/", views.prompt_list, name="prompt_list"),
    path("o/<slug:slug>/prompts/<str:prompt_id>/", views.prompt_detail, name="prompt_detail"),
    path("o/<slug:slug>/prompts/<str:prompt_id>/versions/new/", views.version_new, name="prompt_version_new"),
    path("o/<slug:slug>/prompts/<str:prompt_id>/versions/<int:version>/", views.version_detail,
         name="prompt_version"),
    path("o/<slug:slug>/prompts/<str:prompt_id>/environments/", views.environment_set,
         name="prompt_environment_set"),
]
