"""Forms for the prompt pages; the checks are the API's (prompts.rendering), plus the message
editor's own: a known role, content that is not empty, and `{{` that make a placeholder."""

from __future__ import annotations

import json
from itertools import zip_longest
from typing import Any

from django import forms
from django.core.validators import RegexValidator

from . import rendering

ID_VALIDATOR = RegexValidator(r"^[A-Za-z0-9][A-Za-z0-9_-]*$",
                              "Use letters, digits, '-' and '_', starting with a letter or digit.")
ENVIRONMENT_VALIDATOR = RegexValidator(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                                       "Use letters, digits, '-', '_' and '.', starting with a letter or digit.")
MESSAGES_HELP = ('A JSON list: <code>[{"role": "system", "content": "…"}, {"role": "user", "content": '
                 '"{{question}}"}]</code>. Variables: <code>{{name}}</code>, or typed '
                 '<code>{{hc:name:number}}</code> (string, number, boolean).')


class PrettyJSONField(forms.JSONField):
    def prepare_value(self, value):
        if isinstance(value, str):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False)


# The message editor: one row per message, posted as repeated fields (their order is the rows'
# order, so reordering in the browser needs no renumbering), beside `editor=rows`. Without it the
# form reads the JSON `messages` textarea, as it always has. The roles the editor offers:
ROLES = ("system", "developer", "user", "assistant", "tool")
EDITOR_FIELD = "editor"
ROLE_FIELD = "message_role"
CONTENT_FIELD = "message_content"
# Buttons of the editor (add, remove, move) submit this when JavaScript is off: the page comes
# back with the rows changed and nothing saved.
ACTION_FIELD = "editor_action"


def row_editable(messages: Any) -> bool:
    """Whether the editor's rows can hold these messages without losing anything (content parts,
    tool calls and other keys need the JSON editor)."""
    return isinstance(messages, list) and bool(messages) and all(
        isinstance(m, dict) and set(m) <= {"role", "content"} and m.get("role") in ROLES
        and isinstance(m.get("content"), str) for m in messages)


def message_label(index: int, role: Any) -> str:
    return f"Message {index} ({role})" if isinstance(role, str) and role in ROLES else f"Message {index}"


def message_problems(message: dict, *, known_role: bool) -> list[str]:
    """What the editor refuses in one message (its structure already checked)."""
    problems = []
    role, content = message.get("role"), message.get("content")
    if known_role and role not in ROLES:
        problems.append(f"unknown role '{role}' (use {', '.join(ROLES[:-1])} or {ROLES[-1]})")
    if isinstance(content, str):
        if not content.strip() and not message.get("tool_calls"):
            problems.append("content is empty")
        problems.extend(rendering.placeholder_problems(content))
    return problems


def apply_editor_action(rows: list[dict[str, str]], action: str) -> list[dict[str, str]]:
    """The rows after one of the editor's buttons ("add", "remove-N", "up-N", "down-N"; N from 1)."""
    rows = list(rows)
    if action == "add":
        return rows + [{"role": "user", "content": ""}]
    verb, _, number = action.partition("-")
    index = int(number) - 1 if number.isdigit() else -1
    if not 0 <= index < len(rows):
        return rows
    if verb == "remove":
        del rows[index]
    elif verb == "up" and index > 0:
        rows[index - 1], rows[index] = rows[index], rows[index - 1]
    elif verb == "down" and index < len(rows) - 1:
        rows[index + 1], rows[index] = rows[index], rows[index + 1]
    return rows


def variables_in(text: str) -> list[str]:
    """The placeholders in one message, as written, each once."""
    seen: dict[str, None] = {}
    for match in rendering.PLACEHOLDER.finditer(text or ""):
        seen.setdefault(match.group(0), None)
    return list(seen)


class VersionForm(forms.Form):
    messages = PrettyJSONField(widget=forms.Textarea(attrs={"rows": 12, "class": "mono"}), help_text=MESSAGES_HELP)
    model = forms.CharField(max_length=200)
    parameters = PrettyJSONField(required=False, widget=forms.Textarea(attrs={"rows": 3, "class": "mono"}),
                                 help_text='A JSON object, e.g. <code>{"temperature": 0.2, "max_tokens": 200}</code>.')
    message = forms.CharField(label="Commit message", max_length=500, required=False)
    roles = ROLES

    def __init__(self, *args, rows: list[dict[str, str]] | None = None, editor: str = "rows", **kwargs):
        """Bound: the rows editor when the post says `editor=rows`, else the JSON textarea. Unbound:
        `rows` as given, else the initial messages as rows when they fit, else JSON."""
        super().__init__(*args, **kwargs)
        self.row_errors: dict[int, list[str]] = {}
        if self.is_bound:
            self.rows = None
            if self.data.get(EDITOR_FIELD) == "rows":
                roles, contents = self.data.getlist(ROLE_FIELD), self.data.getlist(CONTENT_FIELD)
                # Browsers send a textarea's line breaks as CRLF.
                self.rows = [{"role": role, "content": content.replace("\r\n", "\n")}
                             for role, content in zip_longest(roles, contents, fillvalue="")]
        elif rows is not None:
            self.rows = rows
        else:
            initial = self.initial.get("messages")
            self.rows = ([{"role": m["role"], "content": m["content"]} for m in initial]
                         if editor != "json" and row_editable(initial) else None)
        self.editor = "rows" if self.rows is not None else "json"
        # Messages the rows cannot hold, offered in the JSON editor instead.
        self.needs_json = (not self.is_bound and self.rows is None and editor != "json"
                           and bool(self.initial.get("messages")))
        if self.rows is not None:
            self.fields["messages"].required = False

    def editor_rows(self) -> list[dict[str, Any]]:
        rows = self.rows or []
        return [{
            "index": index, "role": row["role"], "content": row["content"],
            "label": message_label(index, row["role"]),
            "lines": min(max(3, row["content"].count("\n") + 2), 20),
            "roles": ROLES if row["role"] in ROLES else (row["role"], *ROLES),
            "variables": variables_in(row["content"]), "errors": self.row_errors.get(index, []),
            "first": index == 1, "last": index == len(rows),
        } for index, row in enumerate(rows, start=1)]

    def clean_messages(self):
        if self.rows is not None:
            if not self.rows:
                raise forms.ValidationError("add at least one message")
            value = [{"role": row["role"], "content": row["content"]} for row in self.rows]
            for index, message in enumerate(value, start=1):
                problems = message_problems(message, known_role=True)
                if problems:
                    self.row_errors[index] = problems
            if self.row_errors:
                raise forms.ValidationError([f"{message_label(index, value[index - 1]['role'])}: {problem}"
                                             for index, problems in self.row_errors.items() for problem in problems])
        else:
            value = self.cleaned_data["messages"]
        problems = rendering.validate_messages(value)
        if not problems and self.rows is None:
            problems = [f"{message_label(index, message.get('role'))}: {problem}"
                        for index, message in enumerate(value, start=1)
                        for problem in message_problems(message, known_role=False)]
        if problems:
            raise forms.ValidationError(problems)
        return value

    def clean_parameters(self):
        value = self.cleaned_data.get("parameters") or {}
        problems = rendering.parameter_problems(value)
        if problems:
            raise forms.ValidationError(problems)
        return value


class PromptForm(VersionForm):
    id = forms.CharField(label="Id", max_length=100, validators=[ID_VALIDATOR],
                         help_text="Sent as <code>Helicone-Prompt-Id</code>; cannot change later.")
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    field_order = ["id", "name", "description", "model", "messages", "parameters", "message"]


class EnvironmentForm(forms.Form):
    environment = forms.CharField(max_length=100, validators=[ENVIRONMENT_VALIDATOR])
    version = forms.IntegerField(min_value=1)
