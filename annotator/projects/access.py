"""Who may reach what. Every object is reached through its project: a user who is not a member
gets 404 (the project's existence is not revealed), a member with the wrong role gets 403.
Superusers reach every project with every role (they run the installation)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db.models import Model, OuterRef, QuerySet, Subquery
from django.http import Http404

from annotator.projects.models import Membership, Project, Role

ALL_ROLES: tuple[str, ...] = tuple(Role.values)
MANAGERS: tuple[str, ...] = (Role.MANAGER,)
EDITORS: tuple[str, ...] = (Role.MANAGER, Role.ANNOTATOR)

User = AbstractBaseUser | AnonymousUser
ModelT = TypeVar("ModelT", bound=Model)


def projects_of(user: User) -> QuerySet[Project]:
    """The projects ``user`` belongs to (all of them for a superuser)."""
    if not user.is_authenticated:
        return Project.objects.none()
    if user.is_superuser:
        return Project.objects.all()
    return Project.objects.filter(memberships__user=user).distinct()


def role_in(user: User, project_id: int) -> str | None:
    if not user.is_authenticated:
        return None
    if user.is_superuser:
        return Role.MANAGER
    return Membership.objects.filter(user=user, project_id=project_id).values_list("role", flat=True).first()


def check_role(role: str | None, roles: Iterable[str] = ALL_ROLES) -> str:
    """``role`` (the user's role in a project, None for a non-member) if it is one of ``roles``;
    else Http404 (not a member) or PermissionDenied (another role)."""
    if role is None:
        raise Http404("No such project.")
    if role not in tuple(roles):
        raise PermissionDenied(f"Your role in this project ({role}) does not allow this.")
    return role


def check_project_access(user: User, project_id: int, roles: Iterable[str] = ALL_ROLES) -> str:
    """Return the user's role in the project or raise Http404 (not a member) / PermissionDenied."""
    role = role_in(user, project_id)
    # A membership row means the project exists; only a superuser's role says nothing about it.
    if role is not None and user.is_superuser and not Project.objects.filter(pk=project_id).exists():
        role = None
    return check_role(role, roles)


def get_checked(
    queryset: QuerySet[ModelT],
    user: User,
    roles: Iterable[str] = ALL_ROLES,
    *,
    project_field: str = "project",
    **lookup,
) -> ModelT:
    """The one row of ``queryset`` matching ``lookup``, reached through its project
    (``project_field``), with ``check_project_access``'s rules (404 for a missing row or a
    non-member, 403 for another role) in the same query: the caller's role is a subquery of it.
    For the views a request reaches many times a second (a click), where each query counts."""
    if not user.is_authenticated:
        raise Http404("No such project.")
    if not user.is_superuser:
        memberships = Membership.objects.filter(user_id=user.pk, project_id=OuterRef(f"{project_field}_id"))
        queryset = queryset.annotate(caller_role=Subquery(memberships.values("role")[:1]))
    try:
        row = queryset.get(**lookup)
    except queryset.model.DoesNotExist:
        raise Http404(f"No {queryset.model._meta.object_name} matches the given query.") from None
    check_role(Role.MANAGER if user.is_superuser else row.caller_role, roles)
    return row


def get_project(user: User, project_id: int, roles: Iterable[str] = ALL_ROLES) -> Project:
    check_project_access(user, project_id, roles)
    return Project.objects.get(pk=project_id)
