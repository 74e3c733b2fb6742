"""Helicone's prompt routes as `HeliconePromptManager` (helicone-helpers, @helicone/helpers) reads them:
`POST /v1/prompt-2025/query/version`, `/query/production-version`, `/query/environment-version`,
and the signed, expiring body URL they answer with (Helicone's `s3_url`).

Our prompts map onto Helicone's 2025 prompts: a prompt's id is its slug; a version's id is
`<prompt id>:<version number>` (`support-bot:3`), its `major_version` the number and
`minor_version` 0. The body behind `s3_url` is the version as an OpenAI chat body, its placeholders
in Helicone's `{{hc:name:type}}` form (`{{name}}` becomes `{{hc:name:any}}`, which the helpers fill
with any value). The router is mounted on the Helicone-compatible API (analytics/helicone_api.py),
which answers errors in Helicone's shape.
"""

from __future__ import annotations

import re
from typing import Any

from django.core import signing
from django.db.models import Max
from django.http import Http404, HttpRequest
from ninja import Router, Schema
from ninja.errors import HttpError

from . import access
from .models import Prompt, PromptVersion
from .rendering import PLACEHOLDER

router = Router(tags=["Prompts"])

BODY_URL_SECONDS = 600  # how long an `s3_url` works: the helpers fetch it at once
_SALT = "prompts.helicone.body"
_VERSION_ID = re.compile(r"^(?P<prompt>[A-Za-z0-9][A-Za-z0-9_-]*):(?P<version>[1-9][0-9]{0,9})$")


def version_id(version: PromptVersion) -> str:
    return f"{version.prompt.slug}:{version.version}"


def helicone_placeholders(value: Any) -> Any:
    """Our placeholders in Helicone's `{{hc:name:type}}` form, everywhere in a message's content."""
    if isinstance(value, str):
        def helicone(match: re.Match) -> str:
            if match.group("plain"):
                return "{{hc:%s:any}}" % match.group("plain")
            return "{{hc:%s:%s}}" % (match.group("typed"), match.group("type") or "string")
        return PLACEHOLDER.sub(helicone, value) if "{{" in value else value
    if isinstance(value, list):
        return [helicone_placeholders(item) for item in value]
    if isinstance(value, dict):
        return {key: helicone_placeholders(item) for key, item in value.items()}
    return value


def version_body(version: PromptVersion) -> dict[str, Any]:
    """The version as the OpenAI chat body Helicone stores for it."""
    messages = [{**message, "content": helicone_placeholders(message["content"])}
                if isinstance(message, dict) and "content" in message else message
                for message in version.messages]
    return {**(version.parameters or {}), "model": version.model, "messages": messages}


def _signed_url(request: HttpRequest, version: PromptVersion) -> str:
    token = signing.dumps({"o": version.org_id, "p": version.prompt_id, "v": version.version}, salt=_SALT,
                          compress=True)
    return request.build_absolute_uri(f"/v1/prompt-2025/body/{token}")


def _answer(request: HttpRequest, version: PromptVersion, environment: str | None = None) -> dict[str, Any]:
    environments = sorted(env.name for env in version.environments.all())
    return {"data": {
        "id": version_id(version),
        "model": version.model,
        "prompt_id": version.prompt.slug,
        "major_version": version.version,
        "minor_version": 0,
        "commit_message": version.message,
        "created_at": version.created_at.isoformat(),
        "environment": environment,
        "environments": environments,
        "s3_url": _signed_url(request, version),
    }, "error": None}


def _version(org, prompt: Prompt, number: int) -> PromptVersion:
    found = (PromptVersion.objects.filter(org=org, prompt=prompt, version=number)
             .select_related("prompt").prefetch_related("environments").first())
    if found is None:
        raise Http404(f"Prompt '{prompt.slug}' has no version {number}")
    return found


class VersionQuery(Schema):
    promptVersionId: str


class PromptQuery(Schema):
    promptId: str


class EnvironmentQuery(Schema):
    promptId: str
    environment: str


@router.post("/query/version", summary="A prompt version by its id (`<prompt id>:<version number>`)")
def query_version(request: HttpRequest, body: VersionQuery):
    match = _VERSION_ID.match(body.promptVersionId.strip())
    if match is None:
        raise Http404("No prompt version with this id: ids are '<prompt id>:<version number>', e.g. 'support-bot:3'")
    prompt = access.get_prompt(request.org, match["prompt"])
    return _answer(request, _version(request.org, prompt, int(match["version"])))


def _environment_version(org, prompt: Prompt, environment: str) -> PromptVersion:
    """The version an environment points at; `production` unset means the latest version, as the
    gateway reads it."""
    environments = {env.name: env.version.version for env in prompt.environments.all()}
    number = environments.get(environment)
    if number is None and environment == "production":
        number = prompt.versions.aggregate(n=Max("version"))["n"]
        if number is None:
            raise Http404(f"Prompt '{prompt.slug}' has no versions")
    if number is None:
        raise Http404(f"Prompt '{prompt.slug}' has no environment '{environment}'")
    return _version(org, prompt, number)


@router.post("/query/production-version",
             summary="The version the `production` environment points at (else the latest version)")
def query_production_version(request: HttpRequest, body: PromptQuery):
    prompt = access.get_prompt(request.org, body.promptId.strip())
    return _answer(request, _environment_version(request.org, prompt, "production"), "production")


@router.post("/query/environment-version", summary="The version an environment points at")
def query_environment_version(request: HttpRequest, body: EnvironmentQuery):
    prompt = access.get_prompt(request.org, body.promptId.strip())
    environment = body.environment.strip()
    return _answer(request, _environment_version(request.org, prompt, environment), environment)


@router.get("/body/{token}", auth=None, summary="A version's body (the signed `s3_url` the queries answer with)",
            description=f"No key: the signature is the permission. Links work for {BODY_URL_SECONDS} seconds.")
def version_body_by_link(request: HttpRequest, token: str):
    try:
        found = signing.loads(token, salt=_SALT, max_age=BODY_URL_SECONDS)
    except signing.SignatureExpired:
        raise HttpError(403, "This prompt body link has expired: query the version again for a new one") from None
    except signing.BadSignature:
        raise Http404("No prompt body at this link") from None
    version = (PromptVersion.objects.filter(org_id=found["o"], prompt_id=found["p"], version=found["v"])
               .select_related("prompt").first())
    if version is None:
        raise Http404("No prompt body at this link")
    return version_body(version)
