"""Request logs and model prices."""

import uuid

from django.db import models
from django.utils import timezone

from orgs.models import ApiKey, Organization


class RequestLog(models.Model):
    """One proxied (or manually logged) LLM call. The id is the `Helicone-Id`."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    provider = models.CharField(max_length=32)
    method = models.CharField(max_length=10, default="POST")
    target_url = models.TextField(blank=True)
    path = models.TextField(blank=True)
    requested_model = models.CharField(max_length=200, blank=True)
    model = models.CharField(max_length=200, blank=True, help_text="Model that served the request")

    status = models.IntegerField(help_text="HTTP status returned to the client; 0 when none was")
    error = models.TextField(blank=True)
    cancelled = models.BooleanField(default=False, help_text="The client disconnected before the end")
    streamed = models.BooleanField(default=False)

    request_headers = models.JSONField(default=dict, blank=True, help_text="Redacted: no credentials")
    request_body = models.TextField(blank=True)
    response_body = models.TextField(blank=True)
    request_omitted = models.BooleanField(default=False)
    response_omitted = models.BooleanField(default=False)

    latency_ms = models.FloatField(null=True, blank=True)
    ttft_ms = models.FloatField(null=True, blank=True)
    prompt_tokens = models.IntegerField(null=True, blank=True)
    completion_tokens = models.IntegerField(null=True, blank=True)
    cached_tokens = models.IntegerField(null=True, blank=True)
    cost_usd = models.DecimalField(
        max_digits=20, decimal_places=10, null=True, blank=True, help_text="Null when the model has no price"
    )

    user_id = models.CharField(max_length=255, blank=True)
    session_id = models.CharField(max_length=255, blank=True)
    session_path = models.CharField(max_length=500, blank=True)
    session_name = models.CharField(max_length=255, blank=True)
    properties = models.JSONField(default=dict, blank=True)
    request_name = models.CharField(max_length=255, blank=True)

    cache_hit = models.BooleanField(default=False)
    retries = models.IntegerField(default=0)
    fallback_index = models.IntegerField(null=True, blank=True)
    prompt_id = models.CharField(max_length=100, blank=True)
    prompt_version = models.IntegerField(null=True, blank=True)
    prompt_variables = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["org", "-created_at"], name="log_org_created"),
            models.Index(fields=["org", "user_id", "-created_at"], name="log_org_user"),
            models.Index(fields=["org", "session_id", "-created_at"], name="log_org_session"),
            models.Index(fields=["org", "model", "-created_at"], name="log_org_model"),
            models.Index(fields=["org", "provider", "-created_at"], name="log_org_provider"),
            models.Index(fields=["org", "status", "-created_at"], name="log_org_status"),
            models.Index(fields=["org", "request_name", "-created_at"], name="log_org_name"),
            models.Index(fields=["org", "prompt_id", "-created_at"], name="log_org_prompt"),
            models.Index(fields=["org", "cache_hit", "-created_at"], name="log_org_cache_hit"),
            # Sessions and users pages group inside a time range; the explorer sorts by these.
            models.Index(fields=["org", "-latency_ms"], name="log_org_latency"),
            models.Index(fields=["org", "-cost_usd"], name="log_org_cost"),
        ]

    def __str__(self) -> str:
        return str(self.id)

    @property
    def total_tokens(self) -> int | None:
        if self.prompt_tokens is None and self.completion_tokens is None:
            return None
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)


class ModelPrice(models.Model):
    """An operator's price for a model; wins over the bundled genai-prices data."""

    provider = models.CharField(max_length=32, blank=True, help_text="Blank: any provider")
    model = models.CharField(max_length=200)
    input_per_mtok = models.DecimalField("input $ / 1M tokens", max_digits=14, decimal_places=6)
    output_per_mtok = models.DecimalField("output $ / 1M tokens", max_digits=14, decimal_places=6)
    cached_input_per_mtok = models.DecimalField(
        "cached input $ / 1M tokens", max_digits=14, decimal_places=6, null=True, blank=True
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["provider", "model"], name="unique_model_price")]
        ordering = ["provider", "model"]

    def __str__(self) -> str:
        return f"{self.provider or '*'}/{self.model}"


class Feedback(models.Model):
    """A thumbs up or down on one logged request (one per request; the last rating wins)."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    request = models.OneToOneField(RequestLog, on_delete=models.CASCADE, related_name="feedback")
    rating = models.BooleanField()
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.request_id}: {'+' if self.rating else '-'}"


class Score(models.Model):
    """A named evaluation score on a logged request: a number, or a boolean kept as 0/1."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    request = models.ForeignKey(RequestLog, on_delete=models.CASCADE, related_name="scores")
    name = models.CharField(max_length=100)
    value = models.FloatField()
    is_boolean = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["request", "name"], name="unique_score_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.request_id}: {self.name}={self.as_json()}"

    def as_json(self) -> float | bool:
        return bool(self.value) if self.is_boolean else self.value
