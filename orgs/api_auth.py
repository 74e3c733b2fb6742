"""`Authorization: Bearer sk-helicone-…` for the DRF and ninja APIs."""

from django.http import HttpRequest
from rest_framework import authentication, exceptions

from .models import ApiKey


def bearer_token(request: HttpRequest) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


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
