"""Prompt pages under /o/<slug>/prompts/. Every view goes through `org_member_required`;
viewers read, members and above change."""

from __future__ import annotations

import difflib
import json

from django.contrib import messages
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from orgs.access import org_member_required
from orgs.models import Membership, Organization, Role

from . import access, actions, usage
from .forms import ACTION_FIELD, EnvironmentForm, PromptForm, VersionForm, apply_editor_action
from .models import PromptVersion


def _actor(request: HttpRequest) -> actions.Actor:
    return actions.Actor(user=request.user, request=request)


def _editor_step(request: HttpRequest, form_class: type[VersionForm]) -> VersionForm | None:
    """The form again, its rows added to, removed or moved, when an editor button was pressed
    with JavaScript off (nothing is saved); None for a real submit."""
    action = request.POST.get(ACTION_FIELD)
    posted = form_class(request.POST)
    if not action or posted.rows is None:
        return None
    initial = {name: request.POST.get(name, "") for name in form_class.base_fields if name != "messages"}
    return form_class(initial=initial, rows=apply_editor_action(posted.rows, action))


@org_member_required()
def prompt_list(request: HttpRequest, org: Organization, membership: Membership) -> HttpResponse:
    can_edit = membership.has_role(Role.MEMBER)
    form = PromptForm(initial={"messages": [{"role": "user", "content": "{{question}}"}], "parameters": {}})
    status = 200
    if request.method == "POST":
        if not can_edit:
            return render(request, "403.html", {"org": org, "membership": membership,
                                                "reason": "Creating prompts needs the member role or higher."},
                          status=403)
        stepped = _editor_step(request, PromptForm)
        form = stepped if stepped is not None else PromptForm(request.POST)
        if stepped is None and form.is_valid():
            data = form.cleaned_data
            try:
                prompt = actions.create_prompt(org, actor=_actor(request), slug=data["id"], name=data["name"],
                                               description=data["description"], messages=data["messages"],
                                               model=data["model"], parameters=data["parameters"],
                                               message=data["message"])
            except actions.ActionError as error:
                form.add_error(error.field if error.field in form.fields else None, error.message)
            else:
                messages.success(request, f"Created prompt {prompt.slug} (version 1).")
                return redirect("prompt_detail", slug=org.slug, prompt_id=prompt.slug)
        status = 200 if stepped is not None else 400
    elif request.GET.get("editor") == "json":
        form = PromptForm(initial=form.initial, editor="json")
    prompts = list(access.prompts_of(org).annotate(version_count=Count("versions", distinct=True)))
    counts = usage.request_counts(org, [p.slug for p in prompts])
    for prompt in prompts:
        prompt.request_count = counts.get(prompt.slug, 0)
    return render(request, "prompts/list.html", {
        "org": org, "membership": membership, "prompts": prompts, "form": form, "can_edit": can_edit,
    }, status=status)


def _as_text(version: PromptVersion) -> list[str]:
    """A version as lines a person can diff: model, parameters, then each message."""
    lines = [f"model: {version.model}", f"parameters: {json.dumps(version.parameters, sort_keys=True)}"]
    for message in version.messages:
        lines.append(f"--- {message.get('role', '?')}")
        content = message.get("content")
        text = content if isinstance(content, str) else json.dumps(content, indent=2, ensure_ascii=False)
        lines.extend((text or "").splitlines() or [""])
    return lines


def _diff(old: PromptVersion, new: PromptVersion) -> list[tuple[str, str]]:
    kinds = {"+": "add", "-": "del", "@": "hunk"}
    out = []
    for line in difflib.unified_diff(_as_text(old), _as_text(new), f"version {old.version}",
                                     f"version {new.version}", lineterm="", n=3):
        if line.startswith(("+++", "---")) and line[4:].startswith("version"):
            continue
        out.append((kinds.get(line[:1], "same"), line))
    return out


@org_member_required()
def prompt_detail(request: HttpRequest, org: Organization, membership: Membership, prompt_id: str) -> HttpResponse:
    prompt = access.get_prompt(org, prompt_id)
    versions = list(PromptVersion.objects.filter(org=org, prompt=prompt).prefetch_related("environments")
                    .order_by("-version"))
    stats = usage.version_stats(org, prompt.slug)
    for version in versions:
        version.stats = stats.get(version.version)
        version.labels = sorted(env.name for env in version.environments.all())
    numbers = [v.version for v in versions]
    diff = None
    a, b = request.GET.get("a", ""), request.GET.get("b", "")
    if len(versions) >= 2:
        a = int(a) if a.isdigit() and int(a) in numbers else numbers[1]
        b = int(b) if b.isdigit() and int(b) in numbers else numbers[0]
        by_number = {v.version: v for v in versions}
        diff = _diff(by_number[a], by_number[b])
    environments = [(env.name, env.version.version) for env in prompt.environments.all()]
    return render(request, "prompts/detail.html", {
        "org": org, "membership": membership, "prompt": prompt, "versions": versions, "a": a, "b": b,
        "diff": diff, "environments": environments, "unversioned": stats.get(None),
        "env_form": EnvironmentForm(initial={"environment": "production", "version": numbers[0] if numbers else 1}),
        "can_edit": membership.has_role(Role.MEMBER),
    })


@org_member_required()
def version_detail(request: HttpRequest, org: Organization, membership: Membership, prompt_id: str,
                   version: int) -> HttpResponse:
    prompt = access.get_prompt(org, prompt_id)
    found = access.get_version(org, prompt, version)
    return render(request, "prompts/version.html", {
        "org": org, "membership": membership, "prompt": prompt, "version": found,
        "messages_json": json.dumps(found.messages, indent=2, ensure_ascii=False),
        "parameters_json": json.dumps(found.parameters, indent=2, ensure_ascii=False),
        "stats": usage.version_stats(org, prompt.slug).get(found.version),
        "labels": sorted(env.name for env in found.environments.all()),
    })


@org_member_required(Role.MEMBER)
def version_new(request: HttpRequest, org: Organization, membership: Membership, prompt_id: str) -> HttpResponse:
    prompt = access.get_prompt(org, prompt_id)
    latest = PromptVersion.objects.filter(org=org, prompt=prompt).order_by("-version").first()
    status = 200
    if request.method == "POST":
        stepped = _editor_step(request, VersionForm)
        form = stepped if stepped is not None else VersionForm(request.POST)
        if stepped is None and form.is_valid():
            data = form.cleaned_data
            try:
                version = actions.create_version(org, prompt, actor=_actor(request), messages=data["messages"],
                                                 model=data["model"], parameters=data["parameters"],
                                                 message=data["message"])
            except actions.ActionError as error:
                form.add_error(error.field if error.field in form.fields else None, error.message)
            else:
                messages.success(request, f"Created version {version.version} of {prompt.slug}.")
                return redirect("prompt_detail", slug=org.slug, prompt_id=prompt.slug)
        status = 200 if stepped is not None else 400
    else:
        initial = ({"messages": latest.messages, "model": latest.model, "parameters": latest.parameters}
                   if latest else {})
        form = VersionForm(initial=initial, editor=request.GET.get("editor", "rows"))
    return render(request, "prompts/version_form.html", {
        "org": org, "membership": membership, "prompt": prompt, "form": form, "latest": latest,
    }, status=status)


@org_member_required(Role.MEMBER)
@require_POST
def environment_set(request: HttpRequest, org: Organization, membership: Membership, prompt_id: str) -> HttpResponse:
    prompt = access.get_prompt(org, prompt_id)
    form = EnvironmentForm(request.POST)
    if form.is_valid():
        try:
            env = actions.set_environment(org, prompt, actor=_actor(request),
                                          name=form.cleaned_data["environment"], version=form.cleaned_data["version"])
        except actions.ActionError as error:
            messages.error(request, f"Version: {error.message}")
        else:
            messages.success(request, f"{env.name} now points at version {env.version.version}.")
    else:
        for field, errors in form.errors.items():
            messages.error(request, f"{field.capitalize()}: {' '.join(errors)}")
    return redirect("prompt_detail", slug=org.slug, prompt_id=prompt.slug)
