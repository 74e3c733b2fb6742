from django.urls import path

from . import views

urlpatterns = [
    path("o/<slug:slug>/requests/", views.request_list, name="request_list"),
    path("o/<slug:slug>/requests/<uuid:log_id>/", views.request_detail, name="request_detail"),
    path("o/<slug:slug>/sessions/", views.session_list, name="session_list"),
    path("o/<slug:slug>/sessions/<path:session_id>/", views.session_detail, name="session_detail"),
    path("o/<slug:slug>/users/", views.user_list, name="user_list"),
]
