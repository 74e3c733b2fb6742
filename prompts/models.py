"""Managed prompts: a prompt, its immutable numbered versions, and environment labels."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from orgs.models import ApiKey, Organization


class Prompt(models.Model):
    """A prompt, known to the API and the gateway by `slug` (the public "id", unique per org)."""

    class Source(models.TextChoices):
        API = "api", "Managed (API or pages)"
        GATEWAY = "gateway", "Recorded from code at the gateway"

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="prompts")
    # Django reserves the attribute name `id` for the primary key; the API calls this field "id".
    slug = models.CharField("id", max_length=100)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    # A prompt first seen in a request's own messages keeps recording new templates
    # from code; one made in the API or pages is only ever changed there.
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.API)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["slug"]
        constraints = [models.UniqueConstraint(fields=["org", "slug"], name="unique_prompt_slug")]

    def __str__(self) -> str:
        return self.slug


class PromptVersion(models.Model):
    """One immutable version of a prompt; `version` counts 1, 2, … per prompt."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    messages = models.JSONField()
    model = models.CharField(max_length=200, blank=True)
    parameters = models.JSONField(default=dict, blank=True)
    variables = models.JSONField(default=list, blank=True, help_text='[{"name": ..., "type": ...}] used by messages')
    template_hash = models.CharField(max_length=64)
    message = models.CharField("commit message", max_length=500, blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    author_api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Kept as text so the record survives deletion of the author.
    author_label = models.CharField(max_length=254, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["prompt", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["prompt", "version"], name="unique_prompt_version"),
            # Concurrent gateway requests recording the same template create it once.
            models.UniqueConstraint(fields=["prompt", "template_hash"], name="unique_prompt_template"),
        ]

    def __str__(self) -> str:
        return f"{self.prompt_id} v{self.version}"


class PromptEnvironment(models.Model):
    """A label (`production`, `staging`, any name) pointing at one version of a prompt."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="environments")
    name = models.CharField(max_length=100)
    version = models.ForeignKey(PromptVersion, on_delete=models.CASCADE, related_name="environments")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["prompt", "name"], name="unique_prompt_environment")]

    def __str__(self) -> str:
        return f"{self.prompt_id}@{self.name}"
