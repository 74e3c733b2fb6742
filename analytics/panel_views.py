"""The request panel's writes (👍/👎 feedback, scores) and the replay `curl` it offers to copy.

Plain session-authenticated form posts with CSRF: members and above may rate and score, a viewer
gets 403, an outsider 404 (the log is reached through `get_log` with the membership's org). The
panel's script sends them with `X-Requested-With: fetch` and gets JSON; without JavaScript the form
post is answered with a redirect back to the page it came from.
"""

from __future__ import annotations

import math
import shlex
from urllib.parse import urlsplit

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from formats.providers import NAMED_PROVIDERS
from orgs import audit
from orgs.access import org_member_required
from orgs.models import Membership, Organization, Role

from . import actions
from .models import RequestLog

RATINGS = {"up": True, "true": True, "1": True, "down": False, "false": False, "0": False}
# Request headers worth replaying: the gateway's own options (never its key) and API versions.
_REPLAYED_PREFIXES = ("helicone-", "anthropic-version", "anthropic-beta", "openai-beta")
_NEVER_REPLAYED = frozenset({"helicone-auth", "helicone-fallbacks", "helicone-openai-api-base",
                             "helicone-target-url"})
_SECRET_WORDS = ("auth", "key", "secret", "token", "cookie", "password")
_PROVIDER_KEYS = {"anthropic": ("x-api-key", "ANTHROPIC_API_KEY")}


def _wants_json(request: HttpRequest) -> bool:
    return request.headers.get("X-Requested-With") == "fetch"


def _answer(request: HttpRequest, org: Organization, log: RequestLog, payload: dict, note: str) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse({"id": str(log.id), **payload})
    messages.success(request, note)
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        back = reverse("request_detail", args=[org.slug, log.id])
    return HttpResponseRedirect(back)


def _refuse(request: HttpRequest, message: str) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse({"error": message}, status=400)
    return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")


@require_POST
@org_member_required(Role.MEMBER)
def request_feedback(request: HttpRequest, org: Organization, membership: Membership, log_id) -> HttpResponse:
    log = actions.get_log(org, log_id)
    rating = RATINGS.get(request.POST.get("rating", "").strip().lower())
    if rating is None:
        return _refuse(request, "rating: give up (👍) or down (👎)")
    with transaction.atomic():
        actions.set_feedback(org, log, rating)
        audit.record("request.feedback_set", request=request, org=org, target_type="analytics.requestlog",
                     target_id=str(log.id), changes={"rating": "up" if rating else "down"})
    return _answer(request, org, log, {"rating": rating}, "Feedback saved: " + ("👍" if rating else "👎"))


@require_POST
@org_member_required(Role.MEMBER)
def request_score(request: HttpRequest, org: Organization, membership: Membership, log_id) -> HttpResponse:
    log = actions.get_log(org, log_id)
    name = request.POST.get("name", "").strip()
    text = request.POST.get("value", "").strip()
    if not name:
        return _refuse(request, "name: give the score a name (e.g. accuracy)")
    if text.lower() in ("true", "false"):
        value: float | bool = text.lower() == "true"
    else:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            return _refuse(request, f"value: {text[:40]!r} is not a number, true or false")
    try:
        with transaction.atomic():
            scores = actions.set_scores(org, log, {name: value})
            audit.record("request.score_set", request=request, org=org, target_type="analytics.requestlog",
                         target_id=str(log.id), changes={"name": name, "value": value})
    except actions.ActionError as exc:
        return _refuse(request, str(exc))
    return _answer(request, org, log, {"scores": scores}, f"Score saved: {name} = {value}")


def replay_curl(log: RequestLog, base_url: str) -> str:
    """A `curl` that sends this request again through this gateway. Credentials are shell
    variables ($HELICONE_API_KEY and the provider's), never values: the log holds none, and the
    command is meant to be pasted into chats and tickets."""
    path = log.path or (urlsplit(log.target_url).path if log.target_url else "")
    provider = log.provider or ""
    headers: list[tuple[str, str]] = []
    if provider == "openai" and path.startswith("/v1"):
        url = f"{base_url}/oai{path}"
    elif provider == "anthropic":
        url = f"{base_url}/anthropic{path}"
    elif provider in NAMED_PROVIDERS:
        url = f"{base_url}/{provider}{path}"
    else:
        target = urlsplit(log.target_url or "")
        base_path = target.path[: len(target.path) - len(path)] if path and target.path.endswith(path) else ""
        url = f"{base_url}/gateway{path}"
        headers.append(("Helicone-Target-Url", f"{target.scheme}://{target.netloc}{base_path}" if target.netloc
                        else "<the provider's base URL>"))
    query = urlsplit(log.target_url or "").query
    if query:
        url += "?" + query
    key_header, key_variable = _PROVIDER_KEYS.get(provider, ("Authorization", "PROVIDER_API_KEY"))
    if provider == "openai":
        key_variable = "OPENAI_API_KEY"
    key_value = f"Bearer ${key_variable}" if key_header == "Authorization" else f"${key_variable}"
    # Shell variables stay expandable (double quotes); every logged value is quoted as a literal.
    lines = [f"curl -X {shlex.quote(log.method or 'POST')} {shlex.quote(url)}",
             '-H "Helicone-Auth: Bearer $HELICONE_API_KEY"', f'-H "{key_header}: {key_value}"']
    for name, value in (log.request_headers or {}).items():
        lowered = name.lower()
        if (not lowered.startswith(_REPLAYED_PREFIXES) or lowered in _NEVER_REPLAYED
                or any(word in lowered for word in _SECRET_WORDS) or not isinstance(value, str)
                or "redacted" in value):
            continue
        headers.append((name, value))
    if log.request_body and not log.request_omitted:
        headers.append(("Content-Type", "application/json"))
    lines.extend(f"-H {shlex.quote(f'{name}: {value}')}" for name, value in headers)
    if log.request_omitted:
        lines.append("# the request body was omitted from the log (Helicone-Omit-Request)")
    elif log.request_body:
        lines.append(f"--data-raw {shlex.quote(log.request_body)}")
    return " \\\n  ".join(lines)
