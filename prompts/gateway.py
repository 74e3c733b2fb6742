"""Managed prompts at the gateway (Helicone-Prompt-* headers).

Placeholder until the prompts feature lands: `apply_prompt` is called by the
proxy for every request that carries `Helicone-Prompt-Id`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.headers import GatewayOptions


class PromptError(Exception):
    """A prompt problem the client must fix; becomes a 400 with this message."""


@dataclass(slots=True)
class AppliedPrompt:
    payload: dict[str, Any]  # the request body to send upstream
    prompt_id: str
    version: int | None
    variables: dict[str, Any]


async def apply_prompt(org_id: int, opts: GatewayOptions, payload: dict[str, Any]) -> AppliedPrompt | None:
    """Render the prompt into the request body; None leaves the request as it is."""
    return None
