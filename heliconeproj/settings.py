"""Settings, driven by environment variables only (see docs/configuration.md).

No environment at all gives the embedded default: a SQLite file under var/,
local-memory cache, an in-memory channel layer and an in-process log writer.
DATABASE_URL and REDIS_URL switch to the scaled setup.
"""

import os
import ssl
import sys
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from csp.constants import NONCE
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {value!r}")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from None


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def parse_database_url(url: str) -> dict:
    """sqlite:///relative/path, sqlite:////absolute/path or postgres://user:pw@host:port/name."""
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query))
    if parts.scheme == "sqlite":
        path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
        if not path:
            raise ImproperlyConfigured("DATABASE_URL sqlite:/// needs a file path")
        if not os.path.isabs(path):
            path = str(BASE_DIR / path)
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": path,
            "OPTIONS": {
                # WAL lets the page readers and the log writer work at once;
                # IMMEDIATE avoids "database is locked" upgrades mid-transaction.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    if parts.scheme in ("postgres", "postgresql", "pgsql"):
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")) or "postgres",
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "CONN_MAX_AGE": env_int("DATABASE_CONN_MAX_AGE", 60),
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": {"connect_timeout": int(options.pop("connect_timeout", 5)), **options},
        }
    raise ImproperlyConfigured(f"DATABASE_URL scheme {parts.scheme!r} is not supported (use sqlite or postgres)")


TESTING = "pytest" in sys.modules or (len(sys.argv) > 1 and sys.argv[1] == "test")

DEBUG = env_bool("DEBUG", True)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. With DEBUG off a secret key is required: "
            "export SECRET_KEY to a long random string (python -c 'import secrets; print(secrets.token_urlsafe(50))')."
        )
    SECRET_KEY = "dev-insecure-secret-key-change-me-for-production-0123456789"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "daphne",
    "orgs.adminconfig.OTPAdminConfig",  # django.contrib.admin; staff need a verified OTP device
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "rest_framework",
    "ninja",  # serves the API docs' Swagger UI from our static files (no CDN, allowed by the CSP)
    "csp",
    "channels",
    "orgs",
    "gateway",
    "analytics",
    "prompts",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "heliconeproj.middleware.refuse_nul_characters",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "analytics.middleware.ClickHouseUnavailable",
]

ROOT_URLCONF = "heliconeproj.urls"
ASGI_APPLICATION = "heliconeproj.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'helicone.sqlite3'}")
DATABASES = {"default": parse_database_url(DATABASE_URL)}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not memory, so the daphne and worker processes that tests start share it.
    _db_path = Path(DATABASES["default"]["NAME"])
    DATABASES["default"]["TEST"] = {"NAME": str(_db_path.with_name("test-" + _db_path.name))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The request logs' (org, created_at) index carries INCLUDE columns on PostgreSQL
# (index-only metric scans); SQLite builds it without them, as intended.
SILENCED_SYSTEM_CHECKS = ["models.W040"]

REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "hc",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2},
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": "hc-channels"},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "helicone"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Issue #18: with CLICKHOUSE_URL, ClickHouse is the store of request logs and their aggregates
# (analytics.clickhouse), e.g. http://default:@127.0.0.1:8123/helicone (https:// for TLS; the path
# names the database). CLICKHOUSE_ONLY=0 keeps a full SQL copy beside it (dual write, for a
# migration period): docs/operations.md "ClickHouse".
CLICKHOUSE_URL = env_str("CLICKHOUSE_URL")
CLICKHOUSE_ONLY = env_bool("CLICKHOUSE_ONLY", bool(CLICKHOUSE_URL))
if CLICKHOUSE_ONLY and not CLICKHOUSE_URL:
    raise ImproperlyConfigured("CLICKHOUSE_ONLY=1 needs CLICKHOUSE_URL: set CLICKHOUSE_URL to the ClickHouse "
                               "server, or unset CLICKHOUSE_ONLY to keep request logs in the SQL database")

AUTH_USER_MODEL = "orgs.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/orgs/"
LOGOUT_REDIRECT_URL = "/login/"
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 14 * 24 * 3600)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Pages only (the proxy path never runs Django middleware). Inline <script>/<style> elements carry
# the request's nonce; style attributes stay allowed (bar widths), inline event handlers do not.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'", NONCE],
        "style-src": ["'self'", NONCE],
        "style-src-attr": ["'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],  # fetch and the live WebSocket, same host only
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
# Login throttling (orgs/throttle.py): this many failed logins for one account or from one
# address within LOGIN_LOCKOUT_SECONDS lock it out for LOGIN_LOCKOUT_SECONDS.
LOGIN_MAX_FAILURES = env_int("LOGIN_MAX_FAILURES", 5)
LOGIN_LOCKOUT_SECONDS = env_int("LOGIN_LOCKOUT_SECONDS", 900)
if env_bool("BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# /metrics answers only `Authorization: Bearer <METRICS_TOKEN>` when set (docs/operations.md "Health and metrics").
METRICS_TOKEN = env_str("METRICS_TOKEN")

OTP_TOTP_ISSUER = env_str("OTP_ISSUER", "Helicone Gateway")
INVITATION_MAX_AGE_DAYS = env_int("INVITATION_MAX_AGE_DAYS", 7)

# Email: console output unless an SMTP host is configured.
EMAIL_HOST = env_str("EMAIL_HOST")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env_int("EMAIL_PORT", 587)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Helicone Gateway <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
# The charting library's dist files, installed by `npm ci` (package.json; the Makefile runs it), served as
# /static/vendor/uplot/...: never a CDN, never committed.
if (BASE_DIR / "node_modules" / "uplot" / "dist").is_dir():
    STATICFILES_DIRS.append(("vendor/uplot", BASE_DIR / "node_modules" / "uplot" / "dist"))
# Serving from the finders means no collectstatic step before `make serve`.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "orgs.api_auth.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
}

# --- Gateway -----------------------------------------------------------------
UPSTREAM_URLS = {
    "openai": env_str("UPSTREAM_OPENAI_URL", "https://api.openai.com"),
    "anthropic": env_str("UPSTREAM_ANTHROPIC_URL", "https://api.anthropic.com"),
    "together": env_str("UPSTREAM_TOGETHER_URL", "https://api.together.xyz"),
    "groq": env_str("UPSTREAM_GROQ_URL", "https://api.groq.com/openai"),
    "mistral": env_str("UPSTREAM_MISTRAL_URL", "https://api.mistral.ai"),
    "deepseek": env_str("UPSTREAM_DEEPSEEK_URL", "https://api.deepseek.com"),
    "openrouter": env_str("UPSTREAM_OPENROUTER_URL", "https://openrouter.ai/api"),
    "fireworks": env_str("UPSTREAM_FIREWORKS_URL", "https://api.fireworks.ai/inference"),
    "xai": env_str("UPSTREAM_XAI_URL", "https://api.x.ai"),
    "gemini": env_str("UPSTREAM_GEMINI_URL", "https://generativelanguage.googleapis.com/v1beta/openai"),
}
# Allow Helicone-Target-Url / Helicone-OpenAI-Api-Base to reach private addresses.
GATEWAY_ALLOW_PRIVATE_TARGETS = env_bool("GATEWAY_ALLOW_PRIVATE_TARGETS", False)
GATEWAY_ALLOWED_TARGET_HOSTS = env_list("GATEWAY_ALLOWED_TARGET_HOSTS")
GATEWAY_UPSTREAM_TIMEOUT = env_float("GATEWAY_UPSTREAM_TIMEOUT", 600.0)
GATEWAY_CONNECT_TIMEOUT = env_float("GATEWAY_CONNECT_TIMEOUT", 10.0)
GATEWAY_MAX_BODY_BYTES = env_int("GATEWAY_MAX_BODY_BYTES", 32 * 1024 * 1024)
# Bodies longer than this are stored truncated in the log (the full body is proxied).
GATEWAY_MAX_LOGGED_BODY_BYTES = env_int("GATEWAY_MAX_LOGGED_BODY_BYTES", 2 * 1024 * 1024)
# Bodies of Helicone's logging endpoints (/custom/v1/log, /oai/v1/log, …) larger than this are refused
# (413); 10 MiB is Helicone's own limit.
MANUAL_LOG_MAX_BYTES = env_int("MANUAL_LOG_MAX_BYTES", 10 * 1024 * 1024)
# Idle keep-alive connections kept per upstream host.
GATEWAY_MAX_IDLE_CONNECTIONS = env_int("GATEWAY_MAX_IDLE_CONNECTIONS", 256)
# Seconds an API key lookup is trusted in process; bounds how long a revoked key keeps working.
GATEWAY_AUTH_CACHE_SECONDS = env_float("GATEWAY_AUTH_CACHE_SECONDS", 3.0)
# Rate limits: refuse (503) instead of allowing when Redis cannot be asked.
GATEWAY_RATE_LIMIT_FAIL_CLOSED = env_bool("GATEWAY_RATE_LIMIT_FAIL_CLOSED", False)
# Seconds the gateway waits for Redis (rate-limit counters and the response
# cache) before treating it as unavailable: a hung Redis must not stall requests.
GATEWAY_REDIS_TIMEOUT = env_float("GATEWAY_REDIS_TIMEOUT", 0.5)
# Responses larger than this are served but not cached.
GATEWAY_CACHE_MAX_ENTRY_BYTES = env_int("GATEWAY_CACHE_MAX_ENTRY_BYTES", 8 * 1024 * 1024)
# The semantic cache: each process holds the vectors of at most this many scopes (least recently
# used dropped), and reloads a scope at least this often. With Redis, version counters make every
# change visible at once and the reload is only a backstop; without, a change made by another
# process (purge_logs from cron) reaches a serving process within that time.
GATEWAY_SEMANTIC_MAX_SCOPES = env_int("GATEWAY_SEMANTIC_MAX_SCOPES", 512)
GATEWAY_SEMANTIC_RELOAD_SECONDS = env_float("GATEWAY_SEMANTIC_RELOAD_SECONDS", 300.0 if REDIS_URL else 10.0)


def env_either_case(name: str) -> tuple[str, str]:
    """(the variable's name as set, its value) for a proxy variable, the lowercase name first,
    as curl and requests read them."""
    for spelled in (name.lower(), name.upper()):
        value = os.environ.get(spelled, "").strip()
        if value:
            return spelled, value
    return name.upper(), ""


def env_proxy(name: str) -> str:
    """A forward proxy URL, http://[user:password@]host:port (a bare host:port means http://)."""
    spelled, value = env_either_case(name)
    if not value:
        return ""
    if "://" not in value:
        value = "http://" + value
    parts = urlsplit(value)
    try:
        parts.port
    except ValueError:
        raise ImproperlyConfigured(f"{spelled} has a bad port: {value!r}") from None
    if parts.scheme != "http" or not parts.hostname:
        raise ImproperlyConfigured(f"{spelled} must be an http:// proxy URL (http://[user:password@]host:port); "
                                   f"{parts.scheme}:// proxies are not supported")
    return value


def ca_bundle() -> str:
    """GATEWAY_CA_BUNDLE (a PEM file of CAs trusted for upstream TLS besides the system's),
    falling back to SSL_CERT_FILE; checked now so a bad file stops the start, not a request."""
    path = env_str("GATEWAY_CA_BUNDLE")
    if not path:
        fallback = env_str("SSL_CERT_FILE")
        return fallback if fallback and os.path.isfile(fallback) else ""  # as OpenSSL ignores a missing one
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise ImproperlyConfigured(f"GATEWAY_CA_BUNDLE={path!r} cannot be loaded as a PEM bundle of CAs: "
                                   f"{exc}") from None
    return path


# Upstream calls go through these forward proxies (HTTPS_PROXY for https upstreams, over a
# CONNECT tunnel; HTTP_PROXY for http ones) except to the hosts NO_PROXY lists.
UPSTREAM_HTTPS_PROXY = env_proxy("https_proxy")
UPSTREAM_HTTP_PROXY = env_proxy("http_proxy")
UPSTREAM_NO_PROXY = [item.strip() for item in env_either_case("no_proxy")[1].split(",") if item.strip()]
GATEWAY_CA_BUNDLE = ca_bundle()

# Seconds a managed prompt is trusted in process by the gateway.
PROMPTS_CACHE_SECONDS = env_float("PROMPTS_CACHE_SECONDS", 3.0)

# Alerts: how often a rule is evaluated, the first webhook retry delay (doubling after), and whether
# the embedded log writer evaluates too (default: when there is no REDIS_URL and not under tests).
ALERTS_TICK_SECONDS = env_float("ALERTS_TICK_SECONDS", 30.0)
ALERTS_RETRY_BASE_SECONDS = env_float("ALERTS_RETRY_BASE_SECONDS", 30.0)
ALERTS_EMBEDDED_SECONDS = env_float("ALERTS_EMBEDDED_SECONDS", 10.0)
ALERTS_EMBEDDED = env_bool("ALERTS_EMBEDDED", not TESTING)

# --- Log pipeline --------------------------------------------------------------
# Run a log writer inside the web process (embedded default; with REDIS_URL it
# consumes the shared stream like any `run_log_writer` worker).
LOG_WRITER_IN_PROCESS = env_bool("LOG_WRITER_IN_PROCESS", True)
LOG_STREAM_KEY = env_str("LOG_STREAM_KEY", "hc:logs")
# The most records a writer inserts in one transaction. Under load batches fill up: each rollup row a
# batch touches is written once per batch, so 2,000 logs cost about half as much each as 500 (benchmark.md).
# ClickHouse wants fewer, larger inserts (each is a part in every table and a run of every view):
# 20,000 halved the server's CPU a log against 5,000, and one writer wrote 52,000-56,000 logs/s from the
# stream against 43,000 (benchmark.md, "The writer into ClickHouse"). A stream writer's batch also holds
# at most 32 MiB of records (analytics.writer.BATCH_BYTES), fewer logs when their bodies are large.
LOG_WRITER_BATCH_SIZE = env_int("LOG_WRITER_BATCH_SIZE", 20000 if CLICKHOUSE_URL else 2000)
LOG_SPOOL_DIR = Path(env_str("LOG_SPOOL_DIR", str(VAR_DIR / "spool")))
# Every record is appended here before its client gets the last byte (analytics/journal.py):
# one directory per process, on local disk. "off" turns the journal off (a crash then loses
# the records not yet written). Seconds between fsyncs of the open segment: 0 leaves flushing
# to the kernel (a process's death loses nothing; a power loss may lose its last seconds).
_journal_dir = env_str("LOG_JOURNAL_DIR", str(VAR_DIR / "journal"))
LOG_JOURNAL_DIR = None if _journal_dir.lower() in ("", "off", "0") else Path(_journal_dir)
LOG_JOURNAL_FSYNC_SECONDS = env_float("LOG_JOURNAL_FSYNC_SECONDS", 0.0)
# Days request logs are kept for orgs without their own retention (`purge_logs`); 0 or unset: forever.
LOG_RETENTION_DAYS = env_int("LOG_RETENTION_DAYS", 0) or None
# Aggregates the rollups cannot answer read the raw rows for at most this long (then a notice).
ANALYTICS_RAW_BUDGET_SECONDS = env_float("ANALYTICS_RAW_BUDGET_SECONDS", 3.0) or None

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}
