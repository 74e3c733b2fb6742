"""Forms for the prompt pages; the checks are the API's (prompts.rendering)."""

from __future__ import annotations

import json

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


class VersionForm(forms.Form):
    messages = PrettyJSONField(widget=forms.Textarea(attrs={"rows": 12, "class": "mono"}), help_text=MESSAGES_HELP)
    model = forms.CharField(max_length=200)
    parameters = PrettyJSONField(required=False, widget=forms.Textarea(attrs={"rows": 3, "class": "mono"}),
                                 help_text='A JSON object, e.g. <code>{"temperature": 0.2, "max_tokens": 200}</code>.')
    message = forms.CharField(label="Commit message", max_length=500, required=False)

    def clean_messages(self):
        value = self.cleaned_data["messages"]
        problems = rendering.validate_messages(value)
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
