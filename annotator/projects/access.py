"""Who may reach what. Every object is reached through its project: a user who is not a member
gets 404 (the project's existence is not revealed), a member with the wrong role gets 403.
Superusers reach every project with every role (they run the installation)."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404

from annotator.projects.models import Membership, Project, Role

ALL_ROLES: tuple[str, ...] = tuple(Role.values)
MANAGERS: tuple[str, ...] = (Role.MANAGER,)
EDITORS: tuple[str, ...] = (Role.MANAGER, Role.ANNOTATOR)

User = AbstractBaseUser | AnonymousUser


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


def check_project_access(user: User, project_id: int, roles: Iterable[str] = ALL_ROLES) -> str:
    """Return the user's role in the project or raise Http404 (not a member) / PermissionDenied."""
    role = role_in(user, project_id)
    if role is None or not Project.objects.filter(pk=project_id).exists():
        raise Http404("No such project.")
    if role not in tuple(roles):
        raise PermissionDenied(f"Your role in this project ({role}) does not allow this.")
    return role


def get_project(user: User, project_id: int, roles: Iterable[str] = ALL_ROLES) -> Project:
    check_project_access(user, project_id, roles)
    return Project.objects.get(pk=project_id)
