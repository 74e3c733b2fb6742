"""`Authorization: Bearer sk-helicone-…` for the DRF and ninja APIs, and `key_for`, the one check
of a key sent as `Helicone-Auth` or `Authorization` (the Helicone-compatible routes, OTLP ingest)."""

from django.http import HttpRequest
from rest_framework import authentication, exceptions

from .models import ApiKey


def bearer_token(request: HttpRequest) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class KeyRefused(Exception):
    """No usable key: `status` 401 (missing, malformed, unknown, revoked) or 403 (scope, suspension)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def key_for(request: HttpRequest, scopes: tuple[str, ...]) -> ApiKey:
    """The active key of `Helicone-Auth: Bearer <key>`, else `Authorization: Bearer <key>`, holding one
    of `scopes`, of an organization that is not suspended; KeyRefused naming what is wrong."""
    name = "Helicone-Auth" if request.headers.get("Helicone-Auth") else "Authorization"
    header = request.headers.get(name, "").strip()
    if not header:
        raise KeyRefused(401, "Missing API key: send 'Authorization: Bearer <key>' or 'Helicone-Auth: Bearer <key>'")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise KeyRefused(401, f"Malformed {name} header: expected 'Bearer <key>'")
    key = ApiKey.find_active(token.strip())
    if key is None:
        raise KeyRefused(401, "Invalid or revoked API key")
    if not any(key.has_scope(scope) for scope in scopes):
        names = " or ".join(f"'{scope}'" for scope in scopes)
        raise KeyRefused(403, f"This API key lacks the {names} scope")
    if key.org.is_suspended:
        raise KeyRefused(403, f"Organization {key.org.slug} is suspended: {key.org.suspended_reason}")
    return key


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """DRF authentication: request.user is the key's creator-less AnonymousUser stand-in,
    request.auth the ApiKey. Views read the org from request.auth."""

    def authenticate(self, request):
        token = bearer_token(request._request)
        if token is None:
            return None
        key = ApiKey.find_active(token)
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        return (ApiKeyUser(key), key)

    def authenticate_header(self, request) -> str:
        return "Bearer"


class ApiKeyUser:
    """The principal behind an API key: authenticated, but not a person."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(self, key: ApiKey):
        self.api_key = key
        self.email = f"api key {key.masked}"

    def __str__(self) -> str:
        return self.email
