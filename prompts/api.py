"""The prompts REST API (Django REST framework) at /api/v1/prompts/.

`Authorization: Bearer <key>`: the org is the key's; reading needs the `read`
scope, changing the `write` scope. A logged-in member (the browsable API) uses
their organization (`?org=<slug>` when they belong to several); viewers read,
members and above change. Another org's prompt is a 404.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import DefaultRouter

from orgs.access import get_org_for_member, needs_2fa
from orgs.models import ApiKey, Membership, Organization, Role

from . import access, actions, rendering
from .models import Prompt, PromptVersion

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
ENVIRONMENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


# --- Validation shared by prompt and version creation --------------------------------


def validate_messages(value: Any) -> list:
    problems = rendering.validate_messages(value)
    if problems:
        raise serializers.ValidationError(problems)
    return value


def validate_parameters(value: Any) -> dict:
    problems = rendering.parameter_problems(value)
    if problems:
        raise serializers.ValidationError(problems)
    return value


class TemplateFields(serializers.Serializer):
    messages = serializers.JSONField(
        validators=[validate_messages], initial=lambda: [{"role": "user", "content": "{{question}}"}],
        help_text='[{"role": "system", "content": "…"}, {"role": "user", "content": "{{question}}"}]',
    )
    model = serializers.CharField(max_length=200)
    parameters = serializers.JSONField(required=False, default=dict, initial=dict, validators=[validate_parameters],
                                       help_text='e.g. {"temperature": 0.2, "max_tokens": 200}')


# --- Serializers ---------------------------------------------------------------------------


class PromptSerializer(TemplateFields):
    id = serializers.RegexField(ID_PATTERN, max_length=100, source="slug", error_messages={
        "invalid": "use letters, digits, '-' and '_', starting with a letter or digit",
    })
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    message = serializers.CharField(required=False, allow_blank=True, default="", max_length=500, write_only=True,
                                    help_text="Commit message of version 1")
    source = serializers.CharField(read_only=True)
    latest_version = serializers.IntegerField(read_only=True)
    environments = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("messages", "model", "parameters"):
            self.fields[name].write_only = True

    def get_environments(self, prompt: Prompt) -> dict[str, int]:
        return {env.name: env.version.version for env in prompt.environments.all()}


class PromptUpdateSerializer(PromptSerializer):
    """PATCH: name and description only; content changes are new versions."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("messages", "model", "parameters", "message", "id"):
            self.fields[name].read_only = True
        self.fields["name"].required = False

    def validate(self, attrs):
        data = self.initial_data if isinstance(self.initial_data, dict) else {}
        errors = {}
        if "id" in data and data["id"] != self.instance.slug:
            errors["id"] = ["cannot be changed (logs refer to it); create a new prompt instead"]
        for name in ("messages", "model", "parameters"):
            if name in data:
                errors[name] = ["versions are immutable: POST a new version to versions/"]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class VersionSerializer(TemplateFields):
    version = serializers.IntegerField(read_only=True)
    message = serializers.CharField(required=False, allow_blank=True, default="", max_length=500,
                                    help_text="Commit message")
    variables = serializers.JSONField(read_only=True)
    author = serializers.CharField(source="author_label", read_only=True)
    environments = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField(read_only=True)

    def get_environments(self, version: PromptVersion) -> list[str]:
        return sorted(env.name for env in version.environments.all())


class EnvironmentSerializer(serializers.Serializer):
    environment = serializers.RegexField(ENVIRONMENT_PATTERN, max_length=100, error_messages={
        "invalid": "use letters, digits, '-', '_' and '.', starting with a letter or digit",
    })
    version = serializers.IntegerField(min_value=1)


class RenderSerializer(serializers.Serializer):
    variables = serializers.JSONField(required=False, default=dict, help_text='e.g. {"question": "Why?"}')
    version = serializers.IntegerField(required=False, min_value=1)
    environment = serializers.CharField(required=False, max_length=100)

    def validate_variables(self, value: Any) -> dict:
        if not isinstance(value, dict):
            raise serializers.ValidationError("must be a JSON object of variable names to values")
        return value

    def validate(self, attrs):
        if "version" in attrs and "environment" in attrs:
            raise serializers.ValidationError({"version": ["send either version or environment, not both"]})
        return attrs


# --- Org-scoped base -------------------------------------------------------------------------


class OrgScopedViewSet(viewsets.GenericViewSet):
    """Resolves `self.org` from the API key or the membership before any handler runs,
    and only ever queries through `safely_get_queryset(org)`.

    Actions in `read_actions` are reads even when POSTed (e.g. render).
    """

    read_actions: frozenset[str] = frozenset()
    org: Organization
    membership: Membership | None = None

    def check_permissions(self, request: Request) -> None:
        super().check_permissions(request)  # authenticated
        is_read = request.method in SAFE_METHODS or self.action in self.read_actions
        key = request.auth if isinstance(request.auth, ApiKey) else None
        if key is not None:
            scope = "read" if is_read else "write"
            if not key.has_scope(scope):
                raise PermissionDenied(f"This API key lacks the '{scope}' scope.")
            self.org = key.org
            return
        self.org, self.membership = self._member_org(request, Role.VIEWER if is_read else Role.MEMBER)

    def _member_org(self, request: Request, role: str) -> tuple[Organization, Membership]:
        slug = request.query_params.get("org")
        if not slug:
            memberships = list(Membership.objects.filter(user=request.user).select_related("org")[:2])
            if not memberships:
                raise NotFound("You are not a member of any organization.")
            if len(memberships) > 1:
                raise ValidationError({"org": ["you belong to several organizations: add ?org=<slug>"]})
            slug = memberships[0].org.slug
        org, membership = get_org_for_member(request.user, slug, role)
        if needs_2fa(request, org):
            raise PermissionDenied("This organization requires two-factor authentication: verify a device first.")
        return org, membership

    def get_queryset(self) -> QuerySet:
        return self.safely_get_queryset(self.org)

    def safely_get_queryset(self, org: Organization) -> QuerySet:
        raise NotImplementedError

    def actor(self) -> actions.Actor:
        key = self.request.auth if isinstance(self.request.auth, ApiKey) else None
        return actions.Actor(user=None if key is not None else self.request.user, api_key=key,
                             request=self.request._request)


def _action_error(error: actions.ActionError) -> ValidationError:
    return ValidationError({error.field or "non_field_errors": [error.message]})


# --- Prompts -------------------------------------------------------------------------------------


class PromptViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrgScopedViewSet):
    lookup_field = "slug"
    lookup_url_kwarg = "id"
    lookup_value_regex = r"[A-Za-z0-9][A-Za-z0-9_-]*"
    read_actions = frozenset({"render"})

    def safely_get_queryset(self, org: Organization) -> QuerySet[Prompt]:
        return access.prompts_of(org)

    def get_object(self) -> Prompt:
        return access.get_prompt(self.org, self.kwargs["id"])

    def get_serializer_class(self):
        return {
            "partial_update": PromptUpdateSerializer,
            "update": PromptUpdateSerializer,
            "versions": VersionSerializer,
            "version_detail": VersionSerializer,
            "environments": EnvironmentSerializer,
            "render": RenderSerializer,
        }.get(self.action, PromptSerializer)

    def create(self, request: Request) -> Response:
        serializer = PromptSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            prompt = actions.create_prompt(
                self.org, actor=self.actor(), slug=data["slug"], name=data["name"],
                description=data["description"], messages=data["messages"], model=data["model"],
                parameters=data["parameters"], message=data["message"],
            )
        except actions.ActionError as error:
            raise _action_error(error) from None
        out = PromptSerializer(access.get_prompt(self.org, prompt.slug), context=self.get_serializer_context())
        return Response(out.data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, id: str, partial: bool = True) -> Response:
        prompt = self.get_object()
        serializer = PromptUpdateSerializer(prompt, data=request.data, partial=True,
                                            context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        actions.update_prompt(self.org, prompt, actor=self.actor(), name=serializer.validated_data.get("name"),
                              description=serializer.validated_data.get("description"))
        return Response(PromptSerializer(self.get_object(), context=self.get_serializer_context()).data)

    def partial_update(self, request: Request, id: str) -> Response:
        return self.update(request, id, partial=True)

    def destroy(self, request: Request, id: str) -> Response:
        actions.delete_prompt(self.org, self.get_object(), actor=self.actor())
        return Response(status=status.HTTP_204_NO_CONTENT)

    # --- Versions -----------------------------------------------------------------------------

    @action(detail=True, methods=["get", "post"], url_path="versions")
    def versions(self, request: Request, id: str) -> Response:
        prompt = self.get_object()
        if request.method == "POST":
            serializer = VersionSerializer(data=request.data, context=self.get_serializer_context())
            serializer.is_valid(raise_exception=True)
            data = serializer.validated_data
            try:
                version = actions.create_version(self.org, prompt, actor=self.actor(), messages=data["messages"],
                                                 model=data["model"], parameters=data["parameters"],
                                                 message=data["message"])
            except actions.ActionError as error:
                raise _action_error(error) from None
            return Response(VersionSerializer(version, context=self.get_serializer_context()).data,
                            status=status.HTTP_201_CREATED)
        queryset = (
            PromptVersion.objects.filter(org=self.org, prompt=prompt)
            .prefetch_related("environments").order_by("-version")
        )
        page = self.paginate_queryset(queryset)
        data = VersionSerializer(page, many=True, context=self.get_serializer_context()).data
        return self.get_paginated_response(data)

    @action(detail=True, methods=["get"], url_path=r"versions/(?P<version>[0-9]+)")
    def version_detail(self, request: Request, id: str, version: str) -> Response:
        found = access.get_version(self.org, self.get_object(), int(version))
        return Response(VersionSerializer(found, context=self.get_serializer_context()).data)

    # --- Environments and rendering -----------------------------------------------------------

    @action(detail=True, methods=["get", "post"])
    def environments(self, request: Request, id: str) -> Response:
        prompt = self.get_object()
        if request.method == "POST":
            serializer = EnvironmentSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            try:
                env = actions.set_environment(self.org, prompt, actor=self.actor(),
                                              name=serializer.validated_data["environment"],
                                              version=serializer.validated_data["version"])
            except actions.ActionError as error:
                raise _action_error(error) from None
            return Response({"environment": env.name, "version": env.version.version})
        return Response([{"environment": env.name, "version": env.version.version}
                         for env in prompt.environments.all()])

    @action(detail=True, methods=["post"])
    def render(self, request: Request, id: str) -> Response:
        prompt = self.get_object()
        serializer = RenderSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        labels = {env.name: env.version.version for env in prompt.environments.all()}
        if "version" in data:
            number = data["version"]
        elif "environment" in data:
            if data["environment"] not in labels:
                raise ValidationError({"environment": [f"prompt '{prompt.slug}' has no environment "
                                                       f"'{data['environment']}'"]})
            number = labels[data["environment"]]
        else:
            number = labels.get("production", prompt.latest_version)
        version = PromptVersion.objects.filter(org=self.org, prompt=prompt, version=number).first()
        if version is None:
            raise ValidationError({"version": [f"prompt '{prompt.slug}' has no version {number}"]})
        try:
            messages = rendering.render_messages(version.messages, data["variables"])
        except rendering.VariableError as error:
            raise ValidationError({"variables": [error.message]}) from None
        return Response({
            "id": prompt.slug, "version": version.version, "model": version.model,
            "parameters": version.parameters, "messages": messages,
        })


router = DefaultRouter()
router.include_root_view = False
# No `.json` suffix routes: the extra actions do not take a format argument (they answered 500);
# `?format=json` still picks the renderer.
router.include_format_suffixes = False
router.register("", PromptViewSet, basename="prompt")
urlpatterns = router.urls
