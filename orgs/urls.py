from django.urls import path

from . import account_views, views

# An org's home page (`org_home`, /o/<slug>/) is the analytics dashboard: analytics routes it.
urlpatterns = [
    path("", views.index, name="index"),
    # Accounts
    path("signup/", account_views.signup, name="signup"),
    path("login/", account_views.login, name="login"),
    path("login/2fa/", account_views.login_2fa, name="login_2fa"),
    path("logout/", account_views.logout, name="logout"),
    path("account/2fa/", account_views.two_factor, name="two_factor"),
    path("account/password/", account_views.PasswordChangeView.as_view(), name="password_change"),
    path("account/password/done/", account_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("password-reset/", account_views.PasswordResetView.as_view(), name="password_reset"),
    path("password-reset/sent/", account_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path("password-reset/<uidb64>/<token>/", account_views.PasswordResetConfirmView.as_view(),
         name="password_reset_confirm"),
    path("password-reset/done/", account_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path("invite/<str:token>/", account_views.invite_accept, name="invite_accept"),
    # Organizations
    path("orgs/", views.org_list, name="org_list"),
    path("o/<slug:slug>/settings/", views.org_settings, name="org_settings"),
    path("o/<slug:slug>/settings/rate-limits/", views.org_rate_limits, name="org_rate_limits"),
    path("o/<slug:slug>/settings/semantic-cache/", views.org_semantic_cache, name="org_semantic_cache"),
    path("o/<slug:slug>/settings/members/", views.members, name="org_members"),
    path("o/<slug:slug>/settings/members/<int:member_id>/role/", views.member_role, name="org_member_role"),
    path("o/<slug:slug>/settings/members/<int:member_id>/remove/", views.member_remove, name="org_member_remove"),
    path("o/<slug:slug>/settings/keys/", views.keys, name="org_keys"),
    path("o/<slug:slug>/settings/keys/<int:key_id>/revoke/", views.key_revoke, name="org_key_revoke"),
    path("o/<slug:slug>/settings/audit/", views.audit_log, name="org_audit"),
    path("o/<slug:slug>/settings/audit/export.csv", views.audit_export, name="org_audit_export"),
]
