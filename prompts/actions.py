"""State changes for prompts, versions and environment labels.

Each function takes the org explicitly, runs in one transaction and writes its
audit event inside it. The REST API, the pages and the gateway call these;
nothing else writes these rows. After commit, the listeners registered with
`on_change` hear of it: the gateway's cache forgets the prompt so this process's
next request sees the change at once (other processes see it within
PROMPTS_CACHE_SECONDS).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from orgs import audit
from orgs.actions import ActionError
from orgs.models import ApiKey, Organization, User

from . import rendering
from .models import Prompt, PromptEnvironment, PromptVersion

__all__ = [
    "ActionError", "Actor", "create_prompt", "update_prompt", "delete_prompt", "create_version",
    "set_environment", "record_template",
]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a change: a member (pages, browsable API) or an API key, and the request for IP/UA."""

    user: User | None = None
    api_key: ApiKey | None = None
    request: Any = None  # a Django HttpRequest, or None
    via: str = ""

    @property
    def label(self) -> str:
        if self.user is not None:
            return self.user.email
        if self.api_key is not None:
            return f"api key {self.api_key.masked}"
        return self.via

    def audit(self, action: str, *, org: Organization, target=None, target_type: str = "", target_id: str = "",
              changes: dict[str, Any] | None = None) -> None:
        # `audit.record` falls back to request.user, which for an API-key request
        # is not a User row; hand it only what it needs for the IP and user agent.
        request = SimpleNamespace(META=self.request.META, user=None) if self.request is not None else None
        if self.via:
            changes = {**(changes or {}), "via": self.via}
        audit.record(action, request=request, org=org, user=self.user, api_key=self.api_key, target=target,
                     target_type=target_type, target_id=target_id, changes=changes)


# Called with (org_id, slug) after a change to a prompt commits in this process. The gateway,
# which caches prompts and sits above this app, registers its cache's `forget` here
# (GatewayConfig.ready).
_change_listeners: list[Callable[[int, str], None]] = []


def on_change(listener: Callable[[int, str], None]) -> None:
    if listener not in _change_listeners:
        _change_listeners.append(listener)


def _forget_on_commit(org: Organization | int, slug: str) -> None:
    org_id = org if isinstance(org, int) else org.id

    def announce() -> None:
        for listener in _change_listeners:
            listener(org_id, slug)

    transaction.on_commit(announce)


def _check_template(messages: Any, model: str, parameters: Any) -> list[dict[str, str]]:
    problems = rendering.validate_messages(messages)
    if problems:
        raise ActionError("; ".join(problems), field="messages")
    problems = rendering.parameter_problems(parameters)
    if problems:
        raise ActionError("; ".join(problems), field="parameters")
    return [v.as_dict() for v in rendering.extract_variables(messages)]


def _add_version(org: Organization, prompt: Prompt, *, actor: Actor, messages: list, model: str,
                 parameters: dict, message: str, variables: list[dict[str, str]], digest: str) -> PromptVersion:
    """Inside a transaction holding the prompt's row lock."""
    last = PromptVersion.objects.filter(prompt=prompt).aggregate(n=Max("version"))["n"] or 0
    return PromptVersion.objects.create(
        org=org, prompt=prompt, version=last + 1, messages=messages, model=model, parameters=parameters,
        variables=variables, template_hash=digest, message=message, author=actor.user,
        author_api_key=actor.api_key, author_label=actor.label,
    )


def create_prompt(org: Organization, *, actor: Actor, slug: str, name: str, description: str = "",
                  messages: list, model: str, parameters: dict | None = None, message: str = "") -> Prompt:
    """A prompt and its version 1."""
    parameters = parameters or {}
    variables = _check_template(messages, model, parameters)
    try:
        with transaction.atomic():
            prompt = Prompt.objects.create(org=org, slug=slug, name=name, description=description)
            version = _add_version(org, prompt, actor=actor, messages=messages, model=model, parameters=parameters,
                                   message=message or "Initial version", variables=variables,
                                   digest=rendering.template_hash(messages, model, parameters))
            actor.audit("prompt.create", org=org, target=prompt, changes={
                "prompt": slug, "name": name, "version": version.version, "model": model,
            })
            _forget_on_commit(org, slug)
    except IntegrityError:
        raise ActionError(f"a prompt with the id '{slug}' already exists", field="id") from None
    return prompt


def update_prompt(org: Organization, prompt: Prompt, *, actor: Actor, name: str | None = None,
                  description: str | None = None) -> Prompt:
    with transaction.atomic():
        prompt = Prompt.objects.select_for_update().get(pk=prompt.pk, org=org)
        changes = {}
        if name is not None and name != prompt.name:
            changes["name"] = [prompt.name, name]
            prompt.name = name
        if description is not None and description != prompt.description:
            changes["description"] = [prompt.description, description]
            prompt.description = description
        if not changes:
            return prompt
        prompt.updated_at = timezone.now()
        prompt.save(update_fields=["name", "description", "updated_at"])
        actor.audit("prompt.update", org=org, target=prompt, changes={"prompt": prompt.slug, **changes})
    return prompt


def delete_prompt(org: Organization, prompt: Prompt, *, actor: Actor) -> None:
    """Deletes the prompt with its versions and labels; request logs keep its id and version numbers."""
    with transaction.atomic():
        prompt = Prompt.objects.select_for_update().get(pk=prompt.pk, org=org)
        slug, pk = prompt.slug, prompt.pk
        versions = prompt.versions.count()
        prompt.delete()
        actor.audit("prompt.delete", org=org, target_type="prompts.prompt", target_id=str(pk),
                    changes={"prompt": slug, "versions": versions})
        _forget_on_commit(org, slug)


def create_version(org: Organization, prompt: Prompt, *, actor: Actor, messages: list, model: str,
                   parameters: dict | None = None, message: str = "") -> PromptVersion:
    """The next version. Versions are immutable, so an identical one is refused: point a label at it instead."""
    parameters = parameters or {}
    variables = _check_template(messages, model, parameters)
    digest = rendering.template_hash(messages, model, parameters)
    with transaction.atomic():
        # The row lock orders concurrent creators, so version numbers never collide.
        prompt = Prompt.objects.select_for_update().get(pk=prompt.pk, org=org)
        same = PromptVersion.objects.filter(prompt=prompt, template_hash=digest).values_list("version", flat=True)
        if same:
            raise ActionError(f"identical to version {same[0]} (messages, model and parameters); "
                              f"point an environment at version {same[0]} instead", field="messages")
        version = _add_version(org, prompt, actor=actor, messages=messages, model=model, parameters=parameters,
                               message=message, variables=variables, digest=digest)
        prompt.updated_at = timezone.now()
        prompt.save(update_fields=["updated_at"])
        actor.audit("prompt.version.create", org=org, target=version, changes={
            "prompt": prompt.slug, "version": version.version, "model": model, "message": message,
        })
        _forget_on_commit(org, prompt.slug)
    return version


def set_environment(org: Organization, prompt: Prompt, *, actor: Actor, name: str, version: int) -> PromptEnvironment:
    """Point the label `name` at `version` (creating the label if needed)."""
    with transaction.atomic():
        prompt = Prompt.objects.select_for_update().get(pk=prompt.pk, org=org)
        target = PromptVersion.objects.filter(prompt=prompt, version=version).first()
        if target is None:
            raise ActionError(f"prompt '{prompt.slug}' has no version {version}", field="version")
        env = PromptEnvironment.objects.select_for_update().filter(prompt=prompt, name=name).first()
        old = None
        if env is None:
            env = PromptEnvironment.objects.create(org=org, prompt=prompt, name=name, version=target)
        else:
            old = env.version.version
            if old == version:
                return env
            env.version = target
            env.updated_at = timezone.now()
            env.save(update_fields=["version", "updated_at"])
        actor.audit("prompt.environment.set", org=org, target=env, changes={
            "prompt": prompt.slug, "environment": name, "version": [old, version],
        })
        _forget_on_commit(org, prompt.slug)
    return env


def record_template(org_id: int, slug: str, *, messages: list, model: str) -> int:
    """The version number of this template from code, recording it when new (the gateway, off its hot path).

    Creates the prompt (source "gateway") on first sight. Safe under concurrency:
    the unique constraints on (org, slug), (prompt, version) and (prompt, template
    hash) decide races, and the loser reads what the winner wrote.
    """
    variables = [v.as_dict() for v in rendering.extract_variables(messages)]
    digest = rendering.template_hash(messages, model, {})
    actor = Actor(via="gateway")
    for _attempt in range(5):
        try:
            with transaction.atomic():
                org = Organization.objects.get(pk=org_id)
                prompt = Prompt.objects.select_for_update().filter(org=org, slug=slug).first()
                created_prompt = prompt is None
                if created_prompt:
                    prompt = Prompt.objects.create(org=org, slug=slug, name=slug, source=Prompt.Source.GATEWAY)
                existing = PromptVersion.objects.filter(prompt=prompt, template_hash=digest).values_list(
                    "version", flat=True).first()
                if existing is not None:
                    return existing
                version = _add_version(org, prompt, actor=actor, messages=messages, model=model, parameters={},
                                       message="Recorded from a request", variables=variables, digest=digest)
                if created_prompt:
                    actor.audit("prompt.create", org=org, target=prompt,
                                changes={"prompt": slug, "name": slug, "version": version.version, "model": model})
                else:
                    prompt.updated_at = timezone.now()
                    prompt.save(update_fields=["updated_at"])
                    actor.audit("prompt.version.create", org=org, target=version,
                                changes={"prompt": slug, "version": version.version, "model": model,
                                         "message": version.message})
                _forget_on_commit(org_id, slug)
                return version.version
        except IntegrityError:
            # Another process created the prompt or this very template first: read theirs.
            continue
    raise RuntimeError(f"could not record a version of prompt {slug!r} after 5 attempts")
