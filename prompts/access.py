"""The one way to reach a prompt: through its org. Missing and "not yours" are both 404."""

from __future__ import annotations

from django.db.models import Max, QuerySet
from django.http import Http404

from orgs.models import Organization

from .models import Prompt, PromptVersion


def prompts_of(org: Organization) -> QuerySet[Prompt]:
    return (
        Prompt.objects.filter(org=org)
        .annotate(latest_version=Max("versions__version"))
        .prefetch_related("environments__version")
    )


def get_prompt(org: Organization, slug: str) -> Prompt:
    prompt = prompts_of(org).filter(slug=slug).first()
    if prompt is None:
        raise Http404("No such prompt.")
    return prompt


def get_version(org: Organization, prompt: Prompt, version: int) -> PromptVersion:
    found = PromptVersion.objects.filter(org=org, prompt=prompt, version=version).first()
    if found is None:
        raise Http404(f"Prompt '{prompt.slug}' has no version {version}.")
    return found
