from django.urls import path

from . import alert_views, ingest, lifecycle_views, panel_views, saved_views, views

urlpatterns = [
    path("o/<slug:slug>/", views.dashboard, name="org_home"),  # an org's home page
    path("o/<slug:slug>/requests/", views.request_list, name="request_list"),
    path("o/<slug:slug>/requests/<uuid:log_id>/", views.request_detail, name="request_detail"),
    path("o/<slug:slug>/requests/views/", saved_views.saved_view_save, name="saved_view_save"),
    path("o/<slug:slug>/requests/views/<int:view_id>/delete/", saved_views.saved_view_delete, name="saved_view_delete"),
    path("o/<slug:slug>/requests/<uuid:log_id>/feedback/", panel_views.request_feedback, name="request_feedback"),
    path("o/<slug:slug>/requests/<uuid:log_id>/score/", panel_views.request_score, name="request_score"),
    path("o/<slug:slug>/sessions/", views.session_list, name="session_list"),
    path("o/<slug:slug>/sessions/<path:session_id>/", views.session_detail, name="session_detail"),
    path("o/<slug:slug>/users/", views.user_list, name="user_list"),
    # One user's page: the id as ?id= (any id has a URL: slashes, "..", a trailing space, a newline).
    path("o/<slug:slug>/user/", views.user_detail, name="user_detail"),
    path("o/<slug:slug>/users/erase/", lifecycle_views.user_erase, name="user_erase"),
    path("o/<slug:slug>/settings/export/", lifecycle_views.org_export, name="org_export"),
    path("o/<slug:slug>/alerts/", alert_views.alert_list, name="alert_list"),
    path("o/<slug:slug>/alerts/new/", alert_views.alert_rule_edit, name="alert_rule_new"),
    path("o/<slug:slug>/alerts/<int:rule_id>/", alert_views.alert_rule_edit, name="alert_rule_edit"),
    path("o/<slug:slug>/alerts/<int:rule_id>/mute/", alert_views.alert_rule_mute, name="alert_rule_mute"),
    path("o/<slug:slug>/alerts/<int:rule_id>/test/", alert_views.alert_rule_test, name="alert_rule_test"),
    path("o/<slug:slug>/alerts/<int:rule_id>/delete/", alert_views.alert_rule_delete, name="alert_rule_delete"),
    path("o/<slug:slug>/alerts/history/", alert_views.alert_history, name="alert_history"),
    path("o/<slug:slug>/alerts/open.json", alert_views.alert_open_count, name="alert_open_count"),
    path("o/<slug:slug>/alerts/webhooks/", alert_views.webhook_list, name="webhook_list"),
    path("o/<slug:slug>/alerts/webhooks/<int:webhook_id>/delete/", alert_views.webhook_delete, name="webhook_delete"),
    path("o/<slug:slug>/alerts/deliveries/", alert_views.webhook_deliveries, name="webhook_deliveries"),
    # OpenTelemetry ingest (OTLP/HTTP), and the paths Helicone's async loggers export to.
    path("v1/traces", ingest.export_traces, name="otlp_traces"),
    path("v1/trace/log", ingest.export_traces, name="helicone_trace_log"),
    path("v1/trace/log-python", ingest.export_traces, name="helicone_trace_log_python"),
]
