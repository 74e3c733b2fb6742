"""Which provider a URL belongs to, and which client-chosen URLs may be called at all.

Shared by the proxy (routes and `Helicone-Target-Url`), the manual log and the ingest APIs
(the provider of a logged URL) and webhooks (the same SSRF guard for their targets).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

# Path prefix -> provider. The named routes forward `/<name>/<rest>` to
# UPSTREAM_<NAME>_URL + `/<rest>`.
NAMED_PROVIDERS = ("together", "groq", "mistral", "deepseek", "openrouter", "fireworks", "xai", "gemini")

_KNOWN_HOSTS = {
    "api.openai.com": "openai",
    "api.anthropic.com": "anthropic",
    "api.together.xyz": "together",
    "api.groq.com": "groq",
    "api.mistral.ai": "mistral",
    "api.deepseek.com": "deepseek",
    "openrouter.ai": "openrouter",
    "api.fireworks.ai": "fireworks",
    "api.x.ai": "xai",
    "generativelanguage.googleapis.com": "gemini",
}


def provider_from_host(url: str) -> str:
    host = (urlsplit(url).hostname or "").lower()
    if host.endswith(".openai.azure.com"):
        return "azure"
    return _KNOWN_HOSTS.get(host, "custom")


def shape_problem(parts) -> str | None:
    """What is wrong with the form of a client-chosen URL (split with urlsplit), or None."""
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http(s) URL with a host"
    if parts.username or parts.password:
        return "must not contain credentials"
    return None


def operator_allows(host: str) -> bool:
    return settings.GATEWAY_ALLOW_PRIVATE_TARGETS or host in settings.GATEWAY_ALLOWED_TARGET_HOSTS


def target_problem(url: str) -> str | None:
    """Why a client-chosen URL (upstream target, webhook) may not be used, or None:
    it must be http(s) and must not resolve to a loopback, private, link-local or
    cloud-metadata address, unless the operator allows it. Blocks on DNS."""
    parts = urlsplit(url)
    problem = shape_problem(parts)
    if problem or operator_allows(parts.hostname.lower()):
        return problem
    host = parts.hostname.lower()
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80),
                                       type=socket.SOCK_STREAM)
        except OSError:
            return f"host {host} does not resolve"
        addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    for address in addresses:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if not address.is_global or address.is_multicast:
            return f"{host} resolves to a private, loopback or link-local address ({address}), which is not allowed"
    return None
