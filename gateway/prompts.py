"""Managed prompts at the gateway (Helicone-Prompt-* headers).

`apply_prompt` is called by the proxy for every request that carries
`Helicone-Prompt-Id`, on the event loop. Which form applies:

1. `Helicone-Prompt-Version` or `Helicone-Prompt-Environment` sent, or the prompt
   is managed (made in the API or pages): the chosen version (the header's, else
   the `production` label, else the latest) is rendered with
   `Helicone-Prompt-Variables` and replaces the request's messages; its model
   and parameters are defaults the request's own keys override.
2. Otherwise, the request's own messages hold `{{placeholders}}` ("prompt from
   code"): they are rendered, and the template is recorded as the prompt's
   version 1 (creating the prompt), or as a new version when it changed.
3. Otherwise, a prompt recorded from code earlier: as in 1, with the latest.
4. Otherwise (unknown prompt, no placeholders): the request passes through
   unchanged, tagged with the prompt id (as Helicone does).

Prompt state is cached in process for PROMPTS_CACHE_SECONDS (3 s), versions
(immutable) for as long as the process lives, so steady traffic costs no query.
Database work runs through `sync_to_async`; the only write (recording a new
template) happens when a template hash is seen for the first time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError

from formats.headers import GatewayOptions
from prompts import lookups, rendering
from prompts.lookups import PromptState, VersionContent

from .memo import RefreshingCache, Unavailable

log = logging.getLogger(__name__)

DEFAULT_ENVIRONMENT = "production"
_MAX_ENTRIES = 50_000
# A cached answer older than this (past its freshness) is checked before use.
_STALE_LIMIT = 30.0


class PromptError(Exception):
    """A prompt problem the client must fix; becomes a 400 with this message."""


class PromptUnavailable(Exception):
    """The prompt is not cached and the database cannot be asked."""


@dataclass(slots=True)
class AppliedPrompt:
    payload: dict[str, Any]  # the request body to send upstream
    prompt_id: str
    version: int | None
    variables: dict[str, Any]


# (prompt pk, version) -> content; versions never change.
_versions: dict[tuple[int, int], VersionContent] = {}
# (prompt pk, template hash) -> version number; a recorded template keeps its number.
_hashes: dict[tuple[int, str], int] = {}


def _ttl() -> float:
    return float(getattr(settings, "PROMPTS_CACHE_SECONDS", 3.0))


def forget(org_id: int, slug: str) -> None:
    """Drop the cached state of a prompt (prompts.lookups calls it after a change commits in this
    process; GatewayConfig.ready registers it)."""
    _states.forget((org_id, slug))


def clear_cache() -> None:
    _states.clear()
    _versions.clear()
    _hashes.clear()


# --- Cache ---------------------------------------------------------------------------


# (org_id, slug) -> the prompt's state, or None for "no such prompt".
_states = RefreshingCache("prompt", lookups.prompt_state, _ttl, _STALE_LIMIT, max_entries=_MAX_ENTRIES)


async def _state(org_id: int, slug: str) -> PromptState | None:
    try:
        return await _states.get((org_id, slug))
    except Unavailable as exc:
        raise PromptUnavailable("prompts cannot be read right now (database unavailable)") from exc


async def _version(prompt_pk: int, number: int) -> VersionContent | None:
    key = (prompt_pk, number)
    found = _versions.get(key)
    if found is None:
        try:
            found = await sync_to_async(lookups.version_content)(prompt_pk, number)
        except DatabaseError as exc:
            raise PromptUnavailable("prompts cannot be read right now (database unavailable)") from exc
        if found is not None:
            if len(_versions) >= _MAX_ENTRIES:
                _versions.clear()
            _versions[key] = found
    return found


# --- The two forms -------------------------------------------------------------------


def _render(messages: list, variables: dict[str, Any]) -> list:
    try:
        return rendering.render_messages(messages, variables)
    except rendering.VariableError as exc:
        raise PromptError(f"Helicone-Prompt-Variables: {exc.message}") from None
    except rendering.TemplateError as exc:
        raise PromptError(f"Helicone-Prompt-Id: the prompt's messages: {exc}") from None


async def _apply_managed(slug: str, state: PromptState, opts: GatewayOptions, payload: dict[str, Any],
                         variables: dict[str, Any]) -> AppliedPrompt:
    if opts.prompt_version is not None:
        number = opts.prompt_version
        if number > state.latest:
            raise PromptError(f"Helicone-Prompt-Version: prompt '{slug}' has no version {number} "
                              f"(latest is {state.latest})")
    elif opts.prompt_environment:
        number = state.environments.get(opts.prompt_environment)
        if number is None:
            raise PromptError(f"Helicone-Prompt-Environment: prompt '{slug}' has no environment "
                              f"'{opts.prompt_environment}'")
    else:
        number = state.environments.get(DEFAULT_ENVIRONMENT, state.latest)
    version = await _version(state.pk, number) if number else None
    if version is None:
        raise PromptError(f"Helicone-Prompt-Id: prompt '{slug}' has no version {number}")
    body: dict[str, Any] = dict(version.parameters)
    if version.model:
        body["model"] = version.model
    for name, value in payload.items():
        if name == "messages" or (name == "model" and not value):
            continue
        body[name] = value  # the request's own settings win over the version's defaults
    body["messages"] = _render(version.messages, variables)
    return AppliedPrompt(body, slug, number, variables)


async def _apply_from_code(org_id: int, slug: str, state: PromptState | None, payload: dict[str, Any],
                           variables: dict[str, Any]) -> AppliedPrompt:
    messages = payload["messages"]
    rendered = _render(messages, variables)  # refuses bad variables before anything is recorded
    model = payload.get("model") if isinstance(payload.get("model"), str) else ""
    digest = rendering.template_hash(messages, model, {})
    number = _hashes.get((state.pk, digest)) if state is not None else None
    try:
        if number is None and state is not None:
            number = await sync_to_async(lookups.version_of_template)(state.pk, digest)
        if number is None:
            # Rare: a template this prompt has never seen. The unique constraints make
            # concurrent first requests agree on one version.
            number = await sync_to_async(lookups.record_template)(org_id, slug, messages, model)
            state = None  # the prompt may have just been created; learn its pk next time
    except DatabaseError as exc:
        raise PromptUnavailable("prompts cannot be recorded right now (database unavailable)") from exc
    if state is not None:
        if len(_hashes) >= _MAX_ENTRIES:
            _hashes.clear()
        _hashes[(state.pk, digest)] = number
    return AppliedPrompt({**payload, "messages": rendered}, slug, number, variables)


async def apply_prompt(org_id: int, opts: GatewayOptions, payload: dict[str, Any]) -> AppliedPrompt | None:
    """Render the prompt into the request body; None leaves the request as it is."""
    slug = opts.prompt_id
    if not slug:
        return None
    variables = opts.prompt_variables if opts.prompt_variables is not None else {}
    if opts.prompt_version is not None and opts.prompt_environment:
        raise PromptError("Helicone-Prompt-Version: send either a version or Helicone-Prompt-Environment, not both")
    state = await _state(org_id, slug)
    explicit = opts.prompt_version is not None or bool(opts.prompt_environment)
    if explicit and state is None:
        raise PromptError(f"Helicone-Prompt-Id: no prompt '{slug}' in this organization")
    if state is not None and (explicit or state.source != "gateway"):
        return await _apply_managed(slug, state, opts, payload, variables)
    if rendering.has_placeholders(payload.get("messages")):
        return await _apply_from_code(org_id, slug, state, payload, variables)
    if state is not None and state.latest:
        return await _apply_managed(slug, state, opts, payload, variables)
    # Unknown prompt, nothing to render: forward untouched, only tag the log.
    return AppliedPrompt(payload, slug, None, variables)
