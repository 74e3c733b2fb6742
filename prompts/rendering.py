"""Prompt templates: finding `{{placeholders}}` and filling them in.

Pure Python, no Django: the gateway calls this on its hot path and the REST API
uses it to validate templates.

Placeholders may appear anywhere in message content (a string, or the strings
inside content parts):

- `{{name}}`: untyped. Strings are inserted as they are, any other JSON value
  as its JSON text.
- `{{hc:name:type}}` with type `string`, `number` or `boolean`: validated.
  `string` takes a JSON string; `number` a JSON number or a string holding one;
  `boolean` true/false or the strings "true"/"false". `{{hc:name}}` is a string.

Substitution is a single pass over the template: a value is inserted as text
and never evaluated, so a value holding `{{other}}` stays literally that.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

TYPES = ("string", "number", "boolean")
UNTYPED = "any"
_NAME = r"[A-Za-z_][A-Za-z0-9_-]{0,99}"
# Anything between double braces that looks like it means to be a placeholder:
# unknown types are reported rather than passed through silently.
PLACEHOLDER = re.compile(
    r"\{\{\s*(?:hc:(?P<typed>" + _NAME + r")(?::(?P<type>[A-Za-z]+))?|(?P<plain>" + _NAME + r"))\s*\}\}"
)


class TemplateError(ValueError):
    """A template we cannot use (an unknown type, a variable declared with two types)."""


class VariableError(ValueError):
    """A variable value we refuse: missing, or not of its declared type."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name
        self.message = message


@dataclass(frozen=True, slots=True)
class Variable:
    name: str
    type: str  # one of TYPES, or UNTYPED

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type}


def _strings(value: Any):
    """Every string inside a content value (a string, or nested parts)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


def has_placeholders(messages: Any) -> bool:
    if not isinstance(messages, list):
        return False
    for message in messages:
        if isinstance(message, dict):
            for text in _strings(message.get("content")):
                if "{{" in text and PLACEHOLDER.search(text):
                    return True
    return False


def extract_variables(messages: list[Any]) -> list[Variable]:
    """The variables a template uses, in order of first use; TemplateError for bad declarations."""
    types: dict[str, str] = {}
    for message in messages:
        if not isinstance(message, dict):
            continue
        for text in _strings(message.get("content")):
            if "{{" not in text:
                continue
            for match in PLACEHOLDER.finditer(text):
                if match.group("plain"):
                    name, declared = match.group("plain"), UNTYPED
                else:
                    name, declared = match.group("typed"), (match.group("type") or "string")
                    if declared not in TYPES:
                        raise TemplateError(
                            f"unknown type '{declared}' in {match.group(0)} (use string, number or boolean)"
                        )
                previous = types.get(name)
                if previous is None or previous == UNTYPED:
                    types[name] = declared
                elif declared not in (UNTYPED, previous):
                    raise TemplateError(f"variable '{name}' is declared both as {previous} and as {declared}")
    return [Variable(name, kind) for name, kind in types.items()]


def _as_text(name: str, kind: str, value: Any) -> str:
    if kind == "string":
        if not isinstance(value, str):
            raise VariableError(name, f"variable '{name}' must be a string, got {_describe(value)}")
        return value
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise VariableError(name, f"variable '{name}' must be a number, got {_describe(value)}")
        if isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                raise VariableError(name, f"variable '{name}' must be a number, got {_describe(value)}") from None
            if not math.isfinite(number):
                raise VariableError(name, f"variable '{name}' must be a finite number, got {_describe(value)}")
            return value.strip()
        if isinstance(value, float) and not math.isfinite(value):
            raise VariableError(name, f"variable '{name}' must be a finite number")
        return json.dumps(value)
    if kind == "boolean":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower()
        raise VariableError(name, f"variable '{name}' must be a boolean, got {_describe(value)}")
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _describe(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def render_messages(messages: list[Any], variables: dict[str, Any] | None) -> list[Any]:
    """A copy of `messages` with every placeholder in content replaced.

    VariableError names the first missing or invalid variable; extra variables
    are ignored. TemplateError for a template with a bad declaration.
    """
    declared = {v.name: v.type for v in extract_variables(messages)}
    values = variables or {}
    texts: dict[str, str] = {}
    for name, kind in declared.items():
        if name not in values:
            raise VariableError(name, f"missing variable '{name}'")
        texts[name] = _as_text(name, kind, values[name])

    def substitute(match: re.Match) -> str:
        return texts[match.group("plain") or match.group("typed")]

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return PLACEHOLDER.sub(substitute, value) if "{{" in value else value
        if isinstance(value, list):
            return [fill(item) for item in value]
        if isinstance(value, dict):
            return {key: fill(item) for key, item in value.items()}
        return value

    rendered = []
    for message in messages:
        if isinstance(message, dict) and "content" in message:
            message = {**message, "content": fill(message["content"])}
        rendered.append(message)
    return rendered


def template_hash(messages: list[Any], model: str, parameters: dict[str, Any]) -> str:
    """A stable digest of a version's content, to spot a template seen before."""
    canonical = json.dumps(
        {"messages": messages, "model": model, "parameters": parameters},
        sort_keys=True, ensure_ascii=False, separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def validate_messages(messages: Any) -> list[str]:
    """Problems with a messages template, each naming the message; empty when fine."""
    if not isinstance(messages, list) or not messages:
        return ["must be a non-empty list of messages"]
    problems = []
    for index, message in enumerate(messages, start=1):
        if not isinstance(message, dict):
            problems.append(f"message {index} must be an object with 'role' and 'content'")
            continue
        role = message.get("role")
        if not isinstance(role, str) or not role.strip():
            problems.append(f"message {index} needs a 'role' (e.g. system, user, assistant)")
        if "content" not in message:
            problems.append(f"message {index} needs a 'content'")
        elif not isinstance(message["content"], (str, list)) and message["content"] is not None:
            problems.append(f"message {index}: 'content' must be a string or a list of content parts")
    if not problems:
        try:
            extract_variables(messages)
        except TemplateError as exc:
            problems.append(str(exc))
    return problems


_INSIDE = re.compile(r"\s*(?:hc:(?P<typed>" + _NAME + r")(?::(?P<type>[A-Za-z]+))?|(?P<plain>" + _NAME + r"))\s*")


def _snippet(text: str, start: int) -> str:
    piece = text[start:start + 24].splitlines()[0] if text[start:start + 24] else ""
    return piece + ("…" if len(text) > start + len(piece) else "")


def placeholder_problems(text: str) -> list[str]:
    """Double braces in one piece of content that do not make a placeholder: a `{{` never closed
    by `}}` (before the next `{{`), or something between them that is not a variable name.

    The prompt editor refuses these (a typo would otherwise be sent to the model as literal
    braces); the API and prompts from code keep accepting literal braces. A lone `}}` is
    ordinary text (JSON examples end that way). static/prompts/editor.js mirrors this check.
    """
    problems: list[str] = []
    position = 0
    while (start := text.find("{{", position)) >= 0:
        end = text.find("}}", start + 2)
        following = text.find("{{", start + 2)
        if end < 0 or 0 <= following < end:
            problems.append(f"'{{{{' in “{_snippet(text, start)}” is never closed with '}}}}'")
            if following < 0:
                break
            position = following
            continue
        inside = text[start + 2:end]
        placeholder = text[start:end + 2]
        match = _INSIDE.fullmatch(inside)
        if not inside.strip():
            problems.append(f"'{placeholder}' is empty: put a variable name between the braces")
        elif match is None:
            problems.append(f"'{placeholder}' is not a valid variable: a name starts with a letter or '_' "
                            "and holds only letters, digits, '_' and '-'")
        elif match.group("type") and match.group("type") not in TYPES:
            problems.append(f"unknown type '{match.group('type')}' in {placeholder} (use string, number or boolean)")
        position = end + 2
    return problems


def parameter_problems(value: Any) -> list[str]:
    """Problems with a version's parameters (temperature, max_tokens, …); empty when fine."""
    if not isinstance(value, dict):
        return ['must be a JSON object, e.g. {"temperature": 0.2, "max_tokens": 200}']
    problems = [f"'{name}' is set on its own, not in parameters" for name in ("messages", "model") if name in value]
    for name, low, high in (("temperature", 0, 2), ("top_p", 0, 1), ("frequency_penalty", -2, 2),
                            ("presence_penalty", -2, 2)):
        if name in value:
            v = value[name]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not low <= v <= high:
                problems.append(f"{name} must be a number between {low:g} and {high:g}")
    for name in ("max_tokens", "max_completion_tokens", "n"):
        if name in value:
            v = value[name]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                problems.append(f"{name} must be a positive integer")
    return problems
