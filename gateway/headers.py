"""Parsing of every `Helicone-*` request header into one typed options object.

Pure Python, no Django: the hot path calls `parse_options` once per request, and a
bad value raises `HeaderError` naming the header, which becomes a 400.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

PROPERTY_PREFIX = "helicone-property-"
MAX_VALUE_LENGTH = 1000
MAX_PROPERTIES = 50
_PROPERTY_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
# Control characters (other than tab) are never legal in a value we store.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


class HeaderError(ValueError):
    """A Helicone header with a value we refuse; becomes a 400 naming the header."""

    def __init__(self, header: str, message: str):
        super().__init__(f"{header}: {message}")
        self.header = header
        self.message = message


@dataclass(slots=True)
class GatewayOptions:
    auth_key: str | None = None
    request_id: str | None = None
    user_id: str = ""
    session_id: str = ""
    session_path: str = ""
    session_name: str = ""
    request_name: str = ""
    properties: dict[str, str] = field(default_factory=dict)
    omit_request: bool = False
    omit_response: bool = False
    model_override: str = ""
    target_url: str = ""
    openai_api_base: str = ""
    prompt_id: str = ""
    prompt_variables: dict[str, Any] | None = None
    prompt_version: int | None = None
    prompt_environment: str = ""


def _text(header: str, value: str, limit: int = MAX_VALUE_LENGTH) -> str:
    if len(value) > limit:
        raise HeaderError(header, f"value is longer than {limit} characters")
    if _CONTROL.search(value):
        raise HeaderError(header, "value contains control characters")
    return value.strip()


def parse_bool(header: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise HeaderError(header, f"expected true or false, got {value[:40]!r}")


def parse_options(headers: dict[str, str]) -> GatewayOptions:
    """Build the options from lower-cased request headers.

    Only `helicone-*` names are looked at; unknown Helicone headers are ignored
    (a newer SDK may send ones we do not know yet).
    """
    opts = GatewayOptions()
    for name, value in headers.items():
        if not name.startswith("helicone-"):
            continue
        if name.startswith(PROPERTY_PREFIX):
            prop = name[len(PROPERTY_PREFIX) :]
            display = "Helicone-Property-" + prop
            if not _PROPERTY_NAME.match(prop):
                raise HeaderError(display, "property names use letters, digits, '_', '-' and '.'")
            if len(opts.properties) >= MAX_PROPERTIES:
                raise HeaderError(display, f"at most {MAX_PROPERTIES} properties per request")
            opts.properties[_property_key(prop)] = _text(display, value)
            continue
        handler = _HANDLERS.get(name)
        if handler is not None:
            handler(opts, value)
    return opts


def _property_key(lowered: str) -> str:
    # Header names reach us lower-cased; store them the way people write them
    # ("feature" -> "Feature", "app-name" -> "App-Name") so pages read naturally.
    return "-".join(part[:1].upper() + part[1:] for part in lowered.split("-"))


def _auth(opts: GatewayOptions, value: str) -> None:
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HeaderError("Helicone-Auth", "expected 'Bearer <key>'")
    opts.auth_key = token.strip()


def _request_id(opts: GatewayOptions, value: str) -> None:
    try:
        opts.request_id = str(uuid.UUID(value.strip()))
    except ValueError:
        raise HeaderError("Helicone-Request-Id", "must be a UUID") from None


def _url(header: str):
    def setter(opts: GatewayOptions, value: str) -> None:
        value = _text(header, value, 2000).rstrip("/")
        if not value.lower().startswith(("http://", "https://")):
            raise HeaderError(header, "must be an http(s) URL")
        setattr(opts, "target_url" if header == "Helicone-Target-Url" else "openai_api_base", value)

    return setter


def _simple(attr: str, header: str, limit: int = MAX_VALUE_LENGTH):
    def setter(opts: GatewayOptions, value: str) -> None:
        setattr(opts, attr, _text(header, value, limit))

    return setter


def _flag(attr: str, header: str):
    def setter(opts: GatewayOptions, value: str) -> None:
        setattr(opts, attr, parse_bool(header, value))

    return setter


def _prompt_variables(opts: GatewayOptions, value: str) -> None:
    try:
        variables = json.loads(value)
    except ValueError:
        raise HeaderError("Helicone-Prompt-Variables", "must be a JSON object") from None
    if not isinstance(variables, dict):
        raise HeaderError("Helicone-Prompt-Variables", "must be a JSON object")
    opts.prompt_variables = variables


def _prompt_version(opts: GatewayOptions, value: str) -> None:
    if not value.strip().isdigit() or int(value) < 1:
        raise HeaderError("Helicone-Prompt-Version", "must be a positive integer")
    opts.prompt_version = int(value)


_HANDLERS = {
    "helicone-auth": _auth,
    "helicone-request-id": _request_id,
    "helicone-user-id": _simple("user_id", "Helicone-User-Id", 255),
    "helicone-session-id": _simple("session_id", "Helicone-Session-Id", 255),
    "helicone-session-path": _simple("session_path", "Helicone-Session-Path", 500),
    "helicone-session-name": _simple("session_name", "Helicone-Session-Name", 255),
    "helicone-request-name": _simple("request_name", "Helicone-Request-Name", 255),
    "helicone-model-override": _simple("model_override", "Helicone-Model-Override", 200),
    "helicone-omit-request": _flag("omit_request", "Helicone-Omit-Request"),
    "helicone-omit-response": _flag("omit_response", "Helicone-Omit-Response"),
    "helicone-target-url": _url("Helicone-Target-Url"),
    "helicone-openai-api-base": _url("Helicone-OpenAI-Api-Base"),
    "helicone-prompt-id": _simple("prompt_id", "Helicone-Prompt-Id", 100),
    "helicone-prompt-variables": _prompt_variables,
    "helicone-prompt-version": _prompt_version,
    "helicone-prompt-environment": _simple("prompt_environment", "Helicone-Prompt-Environment", 100),
}
