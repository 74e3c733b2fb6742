"""Request logs and model prices."""

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from orgs.models import ApiKey, Organization

# The columns the metrics aggregate or group on, carried in the (org, created_at) index.
METRIC_COLUMNS = ["status", "latency_ms", "ttft_ms", "cost_usd", "prompt_tokens", "completion_tokens",
                  "cache_hit", "model", "provider", "user_id"]


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
    # How a cache hit matched ("exact", "semantic"), or "shadow" for a semantic lookup in shadow
    # mode that found a candidate it did not serve; "" otherwise.
    cache_match = models.CharField(max_length=8, blank=True)
    similarity = models.FloatField(null=True, blank=True, help_text="Of the semantic match (served or shadow)")
    source_request_id = models.UUIDField(null=True, blank=True, help_text="The request whose answer was served")
    retries = models.IntegerField(default=0)
    fallback_index = models.IntegerField(null=True, blank=True)
    prompt_id = models.CharField(max_length=100, blank=True)
    prompt_version = models.IntegerField(null=True, blank=True)
    prompt_variables = models.JSONField(null=True, blank=True)
    source = models.CharField(max_length=8, choices=[("proxy", "Proxy"), ("log", "Log API"), ("otlp", "OpenTelemetry")],
                              default="proxy", help_text="How the log came in")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # Covering on PostgreSQL: the dashboard and metrics aggregate a time window of an
            # org with an index-only scan (a fifth of the bytes of the table rows, which carry
            # the bodies). SQLite has no INCLUDE and gets the plain (org, created_at) index.
            models.Index(fields=["org", "-created_at"], name="log_org_created", include=METRIC_COLUMNS),
            # The operators' list of every org's logs, newest first (the admin), and their date filter.
            models.Index(fields=["-created_at"], name="log_created"),
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
            models.Index(fields=["org", "-completion_tokens"], name="log_org_output_tokens"),
        ]

    def __str__(self) -> str:
        return str(self.id)

    @property
    def total_tokens(self) -> int | None:
        if self.prompt_tokens is None and self.completion_tokens is None:
            return None
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)


class TraceSpan(models.Model):
    """A span of an OpenTelemetry trace that has LLM calls: its place in the trace and the context
    (user, session, properties) it gives the LLM calls under it.

    Parents end, and so are exported, after their children: the context an enclosing span carries
    often arrives after the LLM logs it applies to, which are then brought up to date from here.
    Spans of traces without an LLM call are not kept."""

    class LogKind(models.TextChoices):
        NONE = "", "No log (structure only)"
        OWN = "own", "The span's own log"
        ADOPTED = "adopted", "A proxied log of the same call, placed in the trace's session"
        PROXIED = "proxied", "A proxied log of the same call, which keeps its own session"

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    trace_id = models.CharField(max_length=32)
    span_id = models.CharField(max_length=16)
    parent_span_id = models.CharField(max_length=16, blank=True)
    name = models.CharField(max_length=255, blank=True)
    started_at = models.DateTimeField()
    # The span's own attributes that LLM calls under it inherit (formats.genai.span_context).
    context = models.JSONField(default=dict, blank=True)
    log_id = models.UUIDField(null=True, blank=True)
    log_kind = models.CharField(max_length=8, choices=LogKind.choices, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org", "trace_id", "span_id"], name="unique_trace_span")]
        indexes = [models.Index(fields=["created_at"], name="tracespan_created")]

    def __str__(self) -> str:
        return f"{self.trace_id}/{self.span_id}"

    @classmethod
    def forget_user(cls, org_id: int, user_id: str) -> int:
        """Erasing an end user also forgets the spans that named them (analytics.lifecycle)."""
        named = models.Q(context__user_id=user_id) | models.Q(context__call_user_id=user_id)
        return cls.objects.filter(org_id=org_id).filter(named).delete()[0]


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
    # No database constraint: with ClickHouse as the only log store, SQL holds no RequestLog row.
    request = models.OneToOneField(RequestLog, on_delete=models.CASCADE, related_name="feedback",
                                   db_constraint=False)
    rating = models.BooleanField()
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.request_id}: {'+' if self.rating else '-'}"


class Score(models.Model):
    """A named evaluation score on a logged request: a number, or a boolean kept as 0/1."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    request = models.ForeignKey(RequestLog, on_delete=models.CASCADE, related_name="scores", db_constraint=False)
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


class SavedView(models.Model):
    """A named explorer filter (the query string of the request explorer), shared by an org's members."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=100)
    query = models.TextField(blank=True, help_text="The explorer's URL query string: filters, range and sort.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org", "name"], name="unique_saved_view_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


# --- Alerts and webhooks (issue #7) -------------------------------------------------------------

class AlertMetric(models.TextChoices):
    ERROR_RATE = "error_rate", "Error rate (%)"
    COST = "cost_usd", "Cost (USD)"
    REQUEST_COUNT = "request_count", "Request count"
    LATENCY_P50 = "latency_p50_ms", "Latency P50 (ms)"
    LATENCY_P95 = "latency_p95_ms", "Latency P95 (ms)"
    LATENCY_P99 = "latency_p99_ms", "Latency P99 (ms)"
    TTFT = "ttft_p50_ms", "Time to first token P50 (ms)"
    TOKENS = "total_tokens", "Tokens"


class AlertComparison(models.TextChoices):
    ABOVE = "above", "above"
    BELOW = "below", "below"


class Webhook(models.Model):
    """A signed HTTP endpoint of an org: for alerts, or for every logged request."""

    class Kind(models.TextChoices):
        ALERTS = "alerts", "Alerts"
        REQUESTS = "requests", "Every logged request"

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.ALERTS)
    url = models.URLField(max_length=2000)
    secret = models.CharField(max_length=100, help_text="HMAC-SHA256 key of the Helicone-Signature header")
    enabled = models.BooleanField(default=True)
    sample_rate = models.FloatField(default=1.0, help_text="Request webhooks: the share of requests sent")
    property_filters = models.JSONField(default=dict, blank=True,
                                        help_text="Request webhooks: only requests with these properties")
    include_bodies = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["kind", "url"]

    def __str__(self) -> str:
        return self.url


class AlertRule(models.Model):
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=200)
    metric = models.CharField(max_length=20, choices=AlertMetric.choices)
    comparison = models.CharField(max_length=10, choices=AlertComparison.choices, default=AlertComparison.ABOVE)
    threshold = models.FloatField(help_text="Error rate in percent, cost in USD, latency in ms")
    window_seconds = models.IntegerField(default=300)
    min_requests = models.IntegerField(default=0)
    filter_field = models.CharField(max_length=20, blank=True,
                                    help_text="model, provider, user, prompt or property (blank: all requests)")
    filter_property = models.CharField(max_length=200, blank=True)
    filter_value = models.CharField(max_length=255, blank=True)
    group_by = models.CharField(max_length=20, blank=True, help_text="user, model or property (blank: no grouping)")
    group_property = models.CharField(max_length=200, blank=True)
    cooldown_seconds = models.IntegerField(default=0, help_text="After a firing, the same group does not fire again sooner")
    muted = models.BooleanField(default=False)
    email_recipients = models.ManyToManyField("orgs.User", blank=True, related_name="+")
    slack_url = models.URLField(max_length=2000, blank=True)
    webhooks = models.ManyToManyField(Webhook, blank=True, related_name="rules")
    # Claimed with a conditional UPDATE, so concurrent evaluators evaluate a rule once per tick.
    next_evaluation_at = models.DateTimeField(default=timezone.now, db_index=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AlertEvent(models.Model):
    """One firing of a rule (for one group); open until resolved."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="events")
    group_key = models.CharField(max_length=255, blank=True)
    value = models.FloatField()
    request_count = models.IntegerField(default=0)
    threshold = models.FloatField()
    fired_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_value = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-fired_at"]
        indexes = [models.Index(fields=["org", "-fired_at"], name="alertevent_org_fired")]
        constraints = [
            # Fire once: two evaluators racing on the same group cannot both open an alert.
            models.UniqueConstraint(fields=["rule", "group_key"], condition=models.Q(resolved_at__isnull=True),
                                    name="one_open_alert_per_group"),
        ]

    def __str__(self) -> str:
        return f"{self.rule_id}/{self.group_key or '*'}@{self.fired_at:%Y-%m-%d %H:%M}"


class WebhookDelivery(models.Model):
    """One attempt to POST one message; a failed attempt schedules the next as a new row."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    class Format(models.TextChoices):
        JSON = "json", "JSON (signed)"
        SLACK = "slack", "Slack"

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    webhook = models.ForeignKey(Webhook, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries")
    message_id = models.UUIDField(default=uuid.uuid4, help_text="The same for every attempt of one message")
    event_type = models.CharField(max_length=40)
    url = models.URLField(max_length=2000)
    format = models.CharField(max_length=10, choices=Format.choices, default=Format.JSON)
    body = models.TextField()
    attempt = models.IntegerField(default=1)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    response_status = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    attempted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-attempt"]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due"),
            models.Index(fields=["org", "-created_at"], name="delivery_org_created"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} #{self.attempt} -> {self.url}"


# --- Rollups (issue #17): what the aggregate pages read instead of the raw rows -------------------


class Rollup(models.Model):
    """The measures of an org's logs in one bucket of time (a minute, an hour, a day or a week) for one
    value of one dimension ("" for all the org's logs). Maintained by analytics.rollups in the
    transactions that change the logs, so a sum over rollups equals the same sum over the rows.

    Values beyond a dimension's cap per bucket are folded into that bucket's overflow row."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+", db_index=False)
    grain = models.CharField(max_length=1, help_text="m: minute, h: hour, d: day, w: week (from Monday), "
                                                     "a: all time (sessions; bucket 2000-01-01)")
    bucket = models.DateTimeField(help_text="Start of the bucket, UTC")
    dim = models.CharField(max_length=210, blank=True, help_text="'' (every log), model, user, p:<property>…")
    value = models.CharField(max_length=255, blank=True)
    overflow = models.BooleanField(default=False, help_text="Folds the values beyond the cap")

    requests = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    cache_hits = models.BigIntegerField(default=0)
    unpriced = models.BigIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=24, decimal_places=10, default=0)
    saved_usd = models.DecimalField(max_digits=24, decimal_places=10, default=0)
    # JSON as text: PostgreSQL's jsonb parsed every sketch the writer sent (~15x the cost of text) and
    # rendered every one a page read back (~3x); only this code reads them.
    latency = models.TextField(default="{}", blank=True, help_text="analytics.sketch of latency_ms, as JSON")
    ttft = models.TextField(default="{}", blank=True, help_text="analytics.sketch of ttft_ms, as JSON")
    # Users and sessions only: when their requests of the bucket started and ended.
    first_at = models.DateTimeField(null=True, blank=True)
    last_at = models.DateTimeField(null=True, blank=True)
    # A session's all-time row: its name (the greatest its logs gave), for the sessions search.
    label = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        constraints = [
            # Also the index of a dimension's values in a time range (group by).
            models.UniqueConstraint(fields=["org", "dim", "grain", "bucket", "overflow", "value"],
                                    name="unique_rollup"),
        ]
        # One value of a dimension in a time range (a filter); the sessions' all-time rows largest
        # first by each measure the sessions list sorts by (analytics.rollup_reads walks them).
        indexes = [models.Index(fields=["org", "dim", "value", "grain", "bucket"], name="rollup_value"),
                   *(models.Index(fields=["org", "dim", f"-{measure}", "value"], condition=models.Q(grain="a"),
                                  name=f"rollup_alltime_{measure}")
                     for measure in ("requests", "cost_usd", "errors", "last_at"))]

    def __str__(self) -> str:
        return f"{self.org_id}/{self.grain}/{self.bucket:%Y-%m-%d %H:%M}/{self.dim}={self.value}"


class RollupCoverage(models.Model):
    """From when an org's rollups hold every one of its logs: reads of earlier times use the raw
    rows. A new org is covered from the start; one that had logs before rollups existed is covered
    once `manage.py rebuild_rollups` has run for it."""

    org = models.OneToOneField(Organization, on_delete=models.CASCADE, primary_key=True, related_name="+")
    covered_from = models.DateTimeField(null=True, blank=True, help_text="Null: not yet built")
    rebuilt_at = models.DateTimeField(null=True, blank=True)
    alltime_at = models.DateTimeField(null=True, blank=True,
                                      help_text="When the sessions' all-time rows were counted from every log "
                                                "(null: not yet; the sessions list adds up days instead)")

    def __str__(self) -> str:
        return f"{self.org_id}: {self.covered_from}"


# --- Semantic cache (issue #21) --------------------------------------------------------------


class SemanticEntry(models.Model):
    """A cached answer's question, for the semantic tier: the last user text, its vector, and
    the exact cache entry holding the answer. Searched only within its scope (an equality key
    over org, key or user, provider, path and the whole body but that text). Holds prompt
    text, so retention, purge and erase delete it with the logs."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    scope = models.CharField(max_length=64, help_text="sha256 of the scope key")
    text = models.TextField()
    vector = models.BinaryField(help_text="float32, unit length")
    cache_key = models.CharField(max_length=200, help_text="The exact cache entry holding the answer")
    bucket_size = models.PositiveIntegerField(default=1)
    source_request_id = models.UUIDField()
    user_id = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    last_hit_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["org", "scope", "-created_at"], name="semantic_scope"),
            models.Index(fields=["org", "source_request_id"], name="semantic_source"),
            models.Index(fields=["org", "user_id"], name="semantic_user"),
            models.Index(fields=["org", "last_hit_at"], name="semantic_lru"),
            models.Index(fields=["expires_at"], name="semantic_expiry"),
        ]
