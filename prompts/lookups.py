"""What the gateway reads of a prompt: its state, a version's content, the version a template
was recorded as. Plain data from the database (sync: the gateway runs them through
`sync_to_async` and caches the answers, see gateway/prompts.py, which applies them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import close_old_connections, connection
from django.db.models import Max

from . import actions
from .models import Prompt, PromptEnvironment, PromptVersion


@dataclass(frozen=True, slots=True)
class PromptState:
    pk: int
    source: str
    latest: int
    environments: dict[str, int]


@dataclass(frozen=True, slots=True)
class VersionContent:
    messages: list[Any]
    model: str
    parameters: dict[str, Any]


def _fresh_connection() -> None:
    # No request_started signal on the raw gateway path, so drop broken or expired
    # connections here (never inside a transaction: tests run this in one).
    if not connection.in_atomic_block:
        close_old_connections()


def prompt_state(org_id: int, slug: str) -> PromptState | None:
    _fresh_connection()
    row = (
        Prompt.objects.filter(org_id=org_id, slug=slug)
        .annotate(latest=Max("versions__version"))
        .values("pk", "source", "latest")
        .first()
    )
    if row is None:
        return None
    environments = dict(
        PromptEnvironment.objects.filter(prompt_id=row["pk"]).values_list("name", "version__version")
    )
    return PromptState(row["pk"], row["source"], row["latest"] or 0, environments)


def version_content(prompt_pk: int, version: int) -> VersionContent | None:
    _fresh_connection()
    row = (
        PromptVersion.objects.filter(prompt_id=prompt_pk, version=version)
        .values("messages", "model", "parameters")
        .first()
    )
    return None if row is None else VersionContent(row["messages"], row["model"], row["parameters"] or {})


def version_of_template(prompt_pk: int, digest: str) -> int | None:
    _fresh_connection()
    return (
        PromptVersion.objects.filter(prompt_id=prompt_pk, template_hash=digest)
        .values_list("version", flat=True)
        .first()
    )


def record_template(org_id: int, slug: str, messages: list, model: str) -> int:
    _fresh_connection()
    return actions.record_template(org_id, slug, messages=messages, model=model)
