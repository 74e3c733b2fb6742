"""Sign-up, login (with a second step for 2FA), logout, passwords, 2FA enrolment, invitations."""

from __future__ import annotations

import time
from urllib.parse import urlencode

import django_otp
from django.conf import settings
from django.contrib import auth, messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from . import actions, audit, otp, throttle
from .forms import LoginForm, PasswordConfirmForm, SignupForm, TokenForm
from .models import User

PENDING_LOGIN = "orgs_pending_login"
PENDING_LOGIN_MAX_AGE = 300  # seconds between the password and the token step


def safe_next(request: HttpRequest, fallback: str = settings.LOGIN_REDIRECT_URL) -> str:
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return fallback


@sensitive_post_parameters("password")
@csrf_protect
@never_cache
def signup(request: HttpRequest) -> HttpResponse:
    next_url = safe_next(request)
    if request.method == "POST":
        form = SignupForm(request.POST)
        if form.is_valid():
            try:
                user = actions.signup_user(form.cleaned_data["email"], form.cleaned_data["password"], request=request)
            except actions.ActionError as error:
                form.add_error(error.field, error.message)
            else:
                auth.login(request, user, backend="django.contrib.auth.backends.ModelBackend")
                messages.success(request, "Welcome! Your account is ready.")
                return redirect(next_url)
    else:
        form = SignupForm(initial={"email": request.GET.get("email", "")})
    return render(request, "orgs/signup.html", {"form": form, "next": next_url})


@sensitive_post_parameters("password")
@csrf_protect
@never_cache
def login(request: HttpRequest) -> HttpResponse:
    next_url = safe_next(request)
    if request.method == "POST":
        form = LoginForm(request, data=request.POST)
        if form.is_valid():
            user = form.get_user()
            if otp.has_2fa(user):
                # The password was right, but nothing is logged in until the token is too.
                request.session[PENDING_LOGIN] = {
                    "user": user.pk,
                    "backend": user.backend,
                    "next": next_url,
                    "at": time.time(),
                }
                return redirect("login_2fa")
            with transaction.atomic():
                auth.login(request, user)
                audit.record("user.login", request=request, user=user, target=user, changes={"2fa": False})
            return redirect(next_url)
        audit.record("user.login_failed", request=request, user=None,
                     changes={"email": request.POST.get("username", "")[:254], "step": "password",
                              **_lockout_changes(form.lockout)})
    else:
        form = LoginForm(request)
    status = 429 if form.lockout is not None else 200
    return render(request, "orgs/login.html", {"form": form, "next": next_url}, status=status)


def _lockout_changes(lockout: throttle.Lockout | None) -> dict:
    return {} if lockout is None else {"locked_out": lockout.scope}


@csrf_protect
@never_cache
def login_2fa(request: HttpRequest) -> HttpResponse:
    pending = request.session.get(PENDING_LOGIN)
    user = None
    if pending and time.time() - pending.get("at", 0) < PENDING_LOGIN_MAX_AGE:
        user = User.objects.filter(pk=pending["user"], is_active=True).first()
    if user is None:
        request.session.pop(PENDING_LOGIN, None)
        messages.info(request, "Please sign in again.")
        return redirect("login")
    lockout = None
    if request.method == "POST":
        form = TokenForm(request.POST)
        # Codes are guessable too: the token step counts against the same account and address.
        lockout = throttle.locked_out(request, user.email)
        if lockout is not None:
            form.add_error(None, lockout.message)
        elif form.is_valid():
            try:
                device = otp.verify_user_token(user, form.cleaned_data["token"])
            except otp.TokenRejected as error:
                form.add_error("token", error.message)
                lockout = throttle.failed(request, user.email)
                if lockout is not None:
                    form.add_error(None, lockout.message)
            else:
                throttle.succeeded(request, user.email)
                del request.session[PENDING_LOGIN]
                with transaction.atomic():
                    auth.login(request, user, backend=pending["backend"])
                    django_otp.login(request, device)
                    audit.record("user.login", request=request, user=user, target=user,
                                 changes={"2fa": True, "device": device.__class__.__name__})
                return redirect(pending["next"])
        audit.record("user.login_failed", request=request, user=None,
                     changes={"email": user.email, "step": "token", **_lockout_changes(lockout)})
    else:
        form = TokenForm()
    return render(request, "orgs/login_2fa.html", {"form": form}, status=429 if lockout is not None else 200)


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        audit.record("user.logout", request=request, target=request.user)
    auth.logout(request)
    messages.info(request, "You are signed out.")
    return redirect(settings.LOGOUT_REDIRECT_URL)


# Our templates live under orgs/: the admin app ships registration/* templates that would win otherwise.
class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "orgs/registration/password_change_form.html"

    def form_valid(self, form):
        with transaction.atomic():
            response = super().form_valid(form)
            audit.record("user.password_change", request=self.request, target=self.request.user)
        return response


class PasswordChangeDoneView(auth_views.PasswordChangeDoneView):
    template_name = "orgs/registration/password_change_done.html"


class PasswordResetView(auth_views.PasswordResetView):
    template_name = "orgs/registration/password_reset_form.html"
    email_template_name = "orgs/registration/password_reset_email.txt"
    subject_template_name = "orgs/registration/password_reset_subject.txt"


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "orgs/registration/password_reset_done.html"


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "orgs/registration/password_reset_complete.html"


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "orgs/registration/password_reset_confirm.html"

    def form_valid(self, form):
        with transaction.atomic():
            response = super().form_valid(form)
            audit.record("user.password_reset", request=self.request, user=form.user, target=form.user)
        return response


@sensitive_post_parameters("password")
@login_required
@never_cache
def two_factor(request: HttpRequest) -> HttpResponse:
    user = request.user
    next_url = safe_next(request, fallback="")
    context: dict = {"next": next_url, "required_by": request.GET.get("org", "")}
    token_form = TokenForm()
    remove_form = PasswordConfirmForm(user)
    status = 200
    if request.method == "POST":
        step = request.POST.get("step")
        # Enrolling again would replace the current device: only without one.
        if step == "enrol" and not otp.has_2fa(user):
            token_form = TokenForm(request.POST)
            if token_form.is_valid():
                try:
                    device = otp.confirm_totp(user, otp.pending_totp(user), token_form.cleaned_data["token"],
                                              request=request)
                except otp.TokenRejected as error:
                    token_form.add_error("token", error.message)
                else:
                    django_otp.login(request, device)
                    messages.success(request, "Two-factor authentication is on. Now save some backup codes.")
                    return redirect(next_url or reverse("two_factor"))
            status = 400
        elif step == "verify" and otp.has_2fa(user):
            token_form = TokenForm(request.POST)
            if token_form.is_valid():
                try:
                    device = otp.verify_user_token(user, token_form.cleaned_data["token"])
                except otp.TokenRejected as error:
                    token_form.add_error("token", error.message)
                else:
                    django_otp.login(request, device)
                    return redirect(next_url or reverse("two_factor"))
            status = 400
        elif step == "backup_codes" and otp.has_2fa(user) and user.is_verified():
            context["backup_codes"] = otp.generate_backup_codes(user, request=request)
        elif step == "remove" and otp.has_2fa(user):
            remove_form = PasswordConfirmForm(user, request.POST)
            if remove_form.is_valid():
                otp.remove_2fa(user, request=request)
                messages.success(request, "Two-factor authentication is off.")
                return redirect("two_factor")
            status = 400
        else:
            status = 400
    context.update(token_form=token_form, remove_form=remove_form)
    totp = otp.confirmed_totp(user)
    if otp.has_2fa(user):
        context.update(enabled=True, totp=totp, verified=user.is_verified(),
                       backup_codes_left=otp.backup_codes_left(user))
    else:
        device = otp.pending_totp(user)
        context.update(enabled=False, qr_svg=otp.qr_svg(device.config_url), secret=otp.manual_secret(device))
    return render(request, "orgs/two_factor.html", context, status=status)


@never_cache
def invite_accept(request: HttpRequest, token: str) -> HttpResponse:
    try:
        invitation = actions.load_invitation(token)
    except actions.InvitationProblem as problem:
        return render(request, "orgs/invite_error.html", {"problem": problem}, status=problem.status)
    here = reverse("invite_accept", args=[token])
    if not request.user.is_authenticated:
        context = {
            "invitation": invitation,
            "login_url": reverse("login") + "?" + urlencode({"next": here}),
            "signup_url": reverse("signup") + "?" + urlencode({"next": here, "email": invitation.email}),
        }
        return render(request, "orgs/invite.html", context)
    if request.method == "POST":
        try:
            actions.accept_invitation(invitation, user=request.user, request=request)
        except actions.InvitationProblem as problem:
            return render(request, "orgs/invite_error.html", {"problem": problem}, status=problem.status)
        messages.success(request, f"You joined {invitation.org.name} as {invitation.get_role_display().lower()}.")
        return redirect("org_home", slug=invitation.org.slug)
    wrong_account = invitation.email.lower() != request.user.email.lower()
    return render(request, "orgs/invite.html", {"invitation": invitation, "wrong_account": wrong_account})
