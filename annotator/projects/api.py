"""REST views for projects, labels and memberships (thin: validate, check access, call services)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404
from rest_framework import generics, serializers, status
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.response import Response

from annotator.projects import services
from annotator.projects.access import (
    ALL_ROLES,
    MANAGERS,
    check_project_access,
    get_project,
    projects_of,
    role_in,
)
from annotator.projects.models import Label, Membership, Project, Role, Stage

User = get_user_model()


class ProjectSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField()
    image_count = serializers.IntegerField(source="images.count", read_only=True)

    class Meta:
        model = Project
        fields = [
            "id", "name", "slug", "description", "stage", "active_model_version", "settings",
            "role", "image_count", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = ["active_model_version", "created_at", "updated_at"]
        extra_kwargs = {"slug": {"required": False}}

    def get_role(self, project: Project) -> str | None:
        return role_in(self.context["request"].user, project.pk)


class ProjectList(generics.ListCreateAPIView):
    serializer_class = ProjectSerializer

    def get_queryset(self):
        return projects_of(self.request.user).order_by("id")

    def create(self, request: Request, *args, **kwargs) -> Response:
        if not request.user.has_perm("projects.add_project"):
            raise PermissionDenied("Creating projects needs the 'add project' permission (ask an admin).")
        serializer = ProjectSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        project = services.create_project(
            name=data["name"],
            creator=request.user,
            slug=data.get("slug", ""),
            description=data.get("description", ""),
            stage=data.get("stage", Stage.ASSISTED_MANUAL),
        )
        if "settings" in data:
            services.update_project(project, settings=data["settings"])
        return Response(
            ProjectSerializer(project, context={"request": request}).data, status=status.HTTP_201_CREATED
        )


class ProjectDetail(generics.RetrieveUpdateDestroyAPIView):
    serializer_class = ProjectSerializer
    http_method_names = ["get", "patch", "delete", "head", "options"]

    def get_object(self) -> Project:
        roles = ALL_ROLES if self.request.method in SAFE_METHODS else MANAGERS
        return get_project(self.request.user, self.kwargs["pk"], roles)

    def perform_update(self, serializer: ProjectSerializer) -> None:
        services.update_project(serializer.instance, **serializer.validated_data)


class LabelSerializer(serializers.ModelSerializer):
    class Meta:
        model = Label
        fields = ["id", "project", "name", "color", "synonyms"]
        read_only_fields = ["project"]
        validators: list = []

    synonyms = serializers.ListField(
        child=serializers.CharField(max_length=100, trim_whitespace=True),
        max_length=50,
        required=False,
        help_text="other words 'find every <label>' accepts for this label (not open-vocabulary text)",
    )

    def validate_color(self, value: str) -> str:
        import re

        if not re.fullmatch(r"#[0-9a-fA-F]{6}", value):
            raise serializers.ValidationError("color must be #rrggbb")
        return value.lower()


class ProjectScopedList(generics.ListCreateAPIView):
    """A list under /projects/{pk}/...: access is checked before anything else (so a non-member
    gets 404 even for an invalid body); members read, managers write."""

    write_roles: tuple[str, ...] = MANAGERS

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        roles = ALL_ROLES if request.method in SAFE_METHODS else self.write_roles
        self.project = get_project(request.user, kwargs["pk"], roles)


class LabelList(ProjectScopedList):
    serializer_class = LabelSerializer
    pagination_class = None

    def get_queryset(self):
        return Label.objects.filter(project=self.project)

    def perform_create(self, serializer: LabelSerializer) -> None:
        serializer.instance = services.create_label(self.project, **serializer.validated_data)


class LabelDetail(generics.RetrieveUpdateDestroyAPIView):
    serializer_class = LabelSerializer
    http_method_names = ["get", "patch", "delete", "head", "options"]

    def get_object(self) -> Label:
        label = get_object_or_404(Label, pk=self.kwargs["pk"])
        check_project_access(
            self.request.user,
            label.project_id,
            ALL_ROLES if self.request.method in SAFE_METHODS else MANAGERS,
        )
        return label

    def perform_update(self, serializer: LabelSerializer) -> None:
        services.update_label(serializer.instance, **serializer.validated_data)


class MembershipSerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", queryset=User.objects.all())
    role = serializers.ChoiceField(choices=Role.choices)

    class Meta:
        model = Membership
        fields = ["id", "project", "user", "role", "created_at"]
        read_only_fields = ["project", "created_at"]
        validators: list = []


class MembershipList(ProjectScopedList):
    serializer_class = MembershipSerializer
    pagination_class = None

    def get_queryset(self):
        return Membership.objects.filter(project=self.project).select_related("user")

    def perform_create(self, serializer: MembershipSerializer) -> None:
        serializer.instance = services.add_member(self.project, **serializer.validated_data)


class MembershipDetail(generics.RetrieveUpdateDestroyAPIView):
    serializer_class = MembershipSerializer
    http_method_names = ["get", "patch", "delete", "head", "options"]

    def get_object(self) -> Membership:
        membership = get_object_or_404(Membership.objects.select_related("user"), pk=self.kwargs["pk"])
        roles = ALL_ROLES if self.request.method in SAFE_METHODS else MANAGERS
        check_project_access(self.request.user, membership.project_id, roles)
        return membership

    def perform_update(self, serializer: MembershipSerializer) -> None:
        data = serializer.validated_data
        if "user" in data and data["user"] != serializer.instance.user:
            raise serializers.ValidationError({"user": "a membership's user cannot change; add a new member"})
        if "role" in data:
            services.change_role(serializer.instance, data["role"])

    def perform_destroy(self, instance: Membership) -> None:
        services.remove_member(instance)
