"""Tenants: users, organizations, memberships, invitations, API keys, audit log."""

import hashlib
import hmac
import secrets

from django.conf import settings
from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.db import models
from django.utils import timezone


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra):
        if not email:
            raise ValueError("email is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra):
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra):
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self._create_user(email, password, **extra)


class User(AbstractUser):
    """A person; signs in with email and password."""

    username = None
    email = models.EmailField("email address", unique=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = UserManager()

    def __str__(self) -> str:
        return self.email


class Organization(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=60, unique=True)
    require_2fa = models.BooleanField(default=False, help_text="Members must enrol a 2FA device to see the org.")
    rate_limit_policy = models.TextField(
        blank=True,
        help_text="Rate limits on every gateway request of the org, in the Helicone-RateLimit-Policy grammar "
        "(e.g. 1000;w=3600, 100;w=60;u=user). Blank: none.",
    )
    # Plan limits, set by operators in the admin. Blank: no limit.
    monthly_request_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Gateway requests allowed per calendar month (UTC). Blank: unlimited."
    )
    retention_days = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Request logs older than this are purged by purge_logs. Blank: the site default "
        "(LOG_RETENTION_DAYS), or kept forever when that is unset.",
    )
    # The semantic cache (Helicone-Cache-Semantic): the lowest similarity a hit needs (a request's
    # Helicone-Cache-Semantic-Threshold may only raise it), and whether requests may share
    # entries across the whole org (Helicone-Cache-Semantic-Scope: org).
    semantic_cache_threshold = models.FloatField(
        default=0.9, help_text="Lowest similarity (0.5 to 1) a semantic cache hit needs; requests may only raise it."
    )
    semantic_cache_org_scope = models.BooleanField(
        default=False, help_text="Requests may share semantic cache entries across every key and user of the org."
    )
    max_api_keys = models.PositiveIntegerField(
        null=True, blank=True, help_text="Active (unrevoked) API keys allowed. Blank: unlimited."
    )
    # Suspension, by operators: the gateway refuses the org's keys with 403.
    suspended_at = models.DateTimeField(null=True, blank=True)
    suspended_reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    @property
    def is_suspended(self) -> bool:
        return self.suspended_at is not None

    def __str__(self) -> str:
        return self.slug


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"


# Higher rank may do everything a lower rank may.
ROLE_RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}


class Membership(models.Model):
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org", "user"], name="unique_membership")]

    def __str__(self) -> str:
        return f"{self.user} in {self.org} ({self.role})"

    def has_role(self, minimum: str) -> bool:
        return ROLE_RANK[Role(self.role)] >= ROLE_RANK[Role(minimum)]


class Invitation(models.Model):
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    def __str__(self) -> str:
        return f"{self.email} to {self.org}"


KEY_PREFIX = "sk-helicone-"


class ApiKeyScope(models.TextChoices):
    PROXY = "proxy", "Proxy (gateway)"
    READ = "read", "Read (query API)"
    WRITE = "write", "Write (change via API)"
    LOG = "log", "Log (send logs only)"


ALL_SCOPES = [ApiKeyScope.PROXY.value, ApiKeyScope.READ.value, ApiKeyScope.WRITE.value, ApiKeyScope.LOG.value]
# What a new key gets unless told otherwise: `proxy` and `write` keys may send logs too, so `log`
# is for the narrow key an app embeds to log and do nothing else.
DEFAULT_SCOPES = [ApiKeyScope.PROXY.value, ApiKeyScope.READ.value, ApiKeyScope.WRITE.value]


def hash_api_key(raw_key: str) -> str:
    # The secret carries 256 bits of randomness, so a plain SHA-256 is enough
    # (no slow KDF needed) and lets the gateway look keys up by hash.
    return hashlib.sha256(raw_key.encode()).hexdigest()


class ApiKey(models.Model):
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    # First characters of the key, kept readable so users can tell keys apart.
    prefix = models.CharField(max_length=24, editable=False)
    last_four = models.CharField(max_length=4, editable=False)
    hashed_key = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=list)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.masked})"

    @property
    def masked(self) -> str:
        return f"{self.prefix}…{self.last_four}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    @classmethod
    def generate(cls, org: Organization, name: str, scopes: list[str], created_by=None) -> tuple["ApiKey", str]:
        """Create a key; returns it with the plaintext, which is never stored."""
        raw = KEY_PREFIX + secrets.token_urlsafe(32)
        key = cls.objects.create(
            org=org,
            name=name,
            prefix=raw[: len(KEY_PREFIX) + 4],
            last_four=raw[-4:],
            hashed_key=hash_api_key(raw),
            scopes=list(scopes),
            created_by=created_by,
        )
        return key, raw

    @classmethod
    def find_active(cls, raw_key: str) -> "ApiKey | None":
        """The active key matching raw_key, or None. Compared in constant time."""
        if not raw_key.startswith(KEY_PREFIX):
            return None
        digest = hash_api_key(raw_key)
        key = cls.objects.select_related("org").filter(hashed_key=digest, revoked_at__isnull=True).first()
        if key is None or not hmac.compare_digest(key.hashed_key, digest):
            return None
        return key


class AuditEvent(models.Model):
    """Append-only record of a state change."""

    org = models.ForeignKey(Organization, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Kept as text so the record survives deletion of the actor.
    actor_label = models.CharField(max_length=254, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["org", "-created_at"], name="audit_org_created")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action}"
