"""The last user turn of a chat request, as the semantic cache sees it.

An OpenAI chat completion, an Anthropic message or a Responses API call whose
last turn is plain user text (1 to 2,000 characters, text parts only, `n` at
most 1) is split into that text and the rest of the body with the text
replaced by a marker. The rest is what must match byte for byte (model,
parameters, system prompt, earlier turns, tools); only the text is compared by
meaning.
"""

from __future__ import annotations

import copy
from typing import Any

MAX_TEXT = 2000
MARKER = "\x00helicone-last-user-text\x00"
_TEXT_PARTS = {"chat": "text", "messages": "text", "responses": "input_text"}


def kind_of(path: str) -> str | None:
    """Which request shape the path serves, if the semantic cache knows it."""
    path = path.split("?", 1)[0].rstrip("/")
    if path.endswith("/chat/completions"):
        return "chat"
    if path.endswith("/messages"):
        return "messages"
    if path.endswith("/responses"):
        return "responses"
    return None


def split(path: str, payload: Any) -> tuple[str, dict[str, Any]] | None:
    """(the last user text, the body with it replaced by MARKER), or None when not eligible."""
    kind = kind_of(path)
    if kind is None or not isinstance(payload, dict):
        return None
    n = payload.get("n")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n > 1):
        return None
    if kind == "responses":
        turns = payload.get("input")
        if isinstance(turns, str):
            return _checked(turns, {**payload, "input": MARKER})
    else:
        turns = payload.get("messages")
    if not isinstance(turns, list) or not turns:
        return None
    last = turns[-1]
    if not isinstance(last, dict) or last.get("role") != "user":
        return None
    if kind == "responses" and last.get("type", "message") != "message":
        return None
    found = _content_text(last.get("content"), _TEXT_PARTS[kind])
    if found is None:
        return None
    text, content = found
    rest = {**payload, ("input" if kind == "responses" else "messages"): [*turns[:-1], {**last, "content": content}]}
    return _checked(text, rest)


def _content_text(content: Any, part_type: str) -> tuple[str, Any] | None:
    if isinstance(content, str):
        return content, MARKER
    if not isinstance(content, list) or not content:
        return None
    texts = []
    parts = copy.copy(content)
    for index, part in enumerate(content):
        # Images, files, tool results: not plain text, never compared by meaning.
        if not (isinstance(part, dict) and part.get("type") == part_type and isinstance(part.get("text"), str)):
            return None
        texts.append(part["text"])
        parts[index] = {**part, "text": MARKER}
    return "\n".join(texts), parts


def _checked(text: str, rest: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    if not text.strip() or len(text) > MAX_TEXT:
        return None
    return text, rest
