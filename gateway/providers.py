"""Where a proxied request goes: the provider routes, and the SSRF guard on the hot path
(formats/providers.py holds the provider detection and the guard's rules)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from formats.headers import GatewayOptions, HeaderError
from formats.providers import (
    NAMED_PROVIDERS,
    operator_allows,
    provider_from_host,
    shape_problem,
    target_problem,
)


class RouteError(Exception):
    def __init__(self, status: int, message: str, error_type: str = "helicone_request_error"):
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type


@dataclass(slots=True)
class Route:
    provider: str
    # Upstream base (scheme://host[/base]) and the path appended to it.
    base_url: str
    path: str
    # True when the base came from a client header and must pass the SSRF check.
    client_chosen: bool = False

    @property
    def url(self) -> str:
        return self.base_url + self.path


def match_prefix(path: str) -> str | None:
    """The provider whose prefix `path` starts with, or None (not a proxy path).
    `/oai/v1/log` and `/anthropic/v1/log` are Helicone's logging endpoints, served by Django:
    a log sent there is never forwarded to the provider."""
    first = path[1:].split("/", 1)[0]
    if first == "oai":
        return "openai" if (path == "/oai/v1" or path.startswith("/oai/v1/")) and path != "/oai/v1/log" else None
    if first == "anthropic":
        return None if path == "/anthropic/v1/log" else "anthropic"
    if first == "gateway":
        return "gateway"
    if first in NAMED_PROVIDERS:
        return first
    return None


def resolve_route(provider: str, raw_path: str, opts: GatewayOptions) -> Route:
    """Turn the incoming (still percent-encoded) path into the upstream route."""
    _check_traversal(raw_path)
    if provider == "openai":
        rest = raw_path[len("/oai/v1") :]
        if opts.openai_api_base:
            # Azure and OpenAI-compatible bases: the SDK's own path is kept as is.
            return Route("azure" if "azure" in opts.openai_api_base else "openai", opts.openai_api_base, rest, True)
        return Route("openai", settings.UPSTREAM_URLS["openai"].rstrip("/"), "/v1" + rest)
    if provider == "gateway":
        if not opts.target_url:
            raise RouteError(400, "Helicone-Target-Url header is required on /gateway/ routes")
        return Route(provider_from_host(opts.target_url), opts.target_url, raw_path[len("/gateway") :], True)
    rest = raw_path[len(provider) + 1 :]
    return Route(provider, settings.UPSTREAM_URLS[provider].rstrip("/"), rest)


def _check_traversal(raw_path: str) -> None:
    lowered = raw_path.lower()
    segments = lowered.split("/")
    if (".." in segments or "." in segments or "%2e" in lowered or "%2f" in lowered or "%5c" in lowered
            or "\\" in lowered):
        raise RouteError(400, "path traversal is not allowed in proxy paths")


# host -> (expires_at, error message or None). Resolving on every request would
# put a DNS round trip on the hot path.
_ssrf_cache: dict[str, tuple[float, str | None]] = {}
_SSRF_CACHE_SECONDS = 60.0


async def check_target(url: str, header: str) -> None:
    """target_problem for the hot path: the answer is cached per host, DNS runs off the loop."""
    parts = urlsplit(url)
    problem = shape_problem(parts)
    if problem:
        raise HeaderError(header, problem)
    host = parts.hostname.lower()
    if operator_allows(host):
        return
    key = f"{parts.scheme}://{host}:{parts.port}"
    now = time.monotonic()
    cached = _ssrf_cache.get(key)
    if cached is None or cached[0] < now:
        # loop.getaddrinfo runs in the default executor too; this keeps one implementation.
        problem = await asyncio.get_running_loop().run_in_executor(None, target_problem, url)
        _ssrf_cache[key] = cached = (now + _SSRF_CACHE_SECONDS, problem)
    if cached[1]:
        raise HeaderError(header, cached[1])
