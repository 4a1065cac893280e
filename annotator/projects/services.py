"""Writes on projects, labels and memberships."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.text import slugify

from annotator.projects.models import Label, Membership, Project, Role, Stage


def unique_slug(name: str) -> str:
    base = slugify(name)[:90] or "project"
    slug, n = base, 2
    while Project.objects.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


@transaction.atomic
def create_project(
    *,
    name: str,
    creator: AbstractBaseUser | None,
    slug: str = "",
    description: str = "",
    stage: str = Stage.ASSISTED_MANUAL,
) -> Project:
    """A project whose creator becomes its first manager."""
    if not name.strip():
        raise ValidationError({"name": "a project needs a name"})
    if stage not in Stage.values:
        raise ValidationError({"stage": f"unknown stage {stage!r}; one of {', '.join(Stage.values)}"})
    slug = slug or unique_slug(name)
    if Project.objects.filter(slug=slug).exists():
        raise ValidationError({"slug": f"a project with slug {slug!r} exists"})
    project = Project.objects.create(
        name=name.strip(), slug=slug, description=description, stage=stage, created_by=creator
    )
    if creator is not None:
        Membership.objects.create(project=project, user=creator, role=Role.MANAGER)
    return project


def update_project(project: Project, **fields: Any) -> Project:
    if "stage" in fields and fields["stage"] not in Stage.values:
        raise ValidationError(
            {"stage": f"unknown stage {fields['stage']!r}; one of {', '.join(Stage.values)}"}
        )
    if "settings" in fields:
        fields["settings"] = validate_project_settings(fields["settings"])
    for key, value in fields.items():
        setattr(project, key, value)
    project.save()
    return project


def validate_project_settings(value: Any) -> dict[str, Any]:
    """Project settings are a JSON object; the keys Maskmill reads are checked for type."""
    if not isinstance(value, dict):
        raise ValidationError({"settings": "must be a JSON object"})
    hint = value.get("seconds_per_mask_hint", 30)
    if not isinstance(hint, (int, float)) or isinstance(hint, bool) or hint <= 0:
        raise ValidationError({"settings": "seconds_per_mask_hint must be a positive number"})
    generation = value.get("generation", {})
    if not isinstance(generation, dict) or set(generation) - {Stage.SEMI_AUTOMATIC, Stage.FULLY_AUTOMATIC}:
        raise ValidationError(
            {"settings": "generation must map semi_automatic/fully_automatic to parameters"}
        )
    if not all(isinstance(params, dict) for params in generation.values()):
        raise ValidationError({"settings": "generation parameters must be JSON objects"})
    if "training" in value:
        from annotator.training.config import parse_training_settings

        parse_training_settings(value["training"])
    return value


def create_label(
    project: Project, *, name: str, color: str = "#ff0000", synonyms: list[str] | None = None
) -> Label:
    if not name.strip():
        raise ValidationError({"name": "a label needs a name"})
    try:
        with transaction.atomic():
            return Label.objects.create(
                project=project, name=name.strip(), color=color, synonyms=clean_synonyms(synonyms)
            )
    except IntegrityError as exc:
        raise ValidationError({"name": f"the project already has a label named {name.strip()!r}"}) from exc


def clean_synonyms(synonyms: list[str] | None) -> list[str]:
    """Distinct, stripped, non-empty synonyms in their given order."""
    seen: dict[str, str] = {}
    for word in synonyms or []:
        word = str(word).strip()
        if word and word.casefold() not in seen:
            seen[word.casefold()] = word
    return list(seen.values())


def update_label(label: Label, **fields: Any) -> Label:
    if "synonyms" in fields:
        fields["synonyms"] = clean_synonyms(fields["synonyms"])
    for key, value in fields.items():
        setattr(label, key, value)
    try:
        with transaction.atomic():
            label.save()
    except IntegrityError as exc:
        raise ValidationError({"name": f"the project already has a label named {label.name!r}"}) from exc
    return label


def add_member(project: Project, *, user: AbstractBaseUser, role: str) -> Membership:
    if role not in Role.values:
        raise ValidationError({"role": f"unknown role {role!r}; one of {', '.join(Role.values)}"})
    try:
        with transaction.atomic():
            return Membership.objects.create(project=project, user=user, role=role)
    except IntegrityError as exc:
        raise ValidationError({"user": f"{user} is already a member of this project"}) from exc


def change_role(membership: Membership, role: str) -> Membership:
    if role not in Role.values:
        raise ValidationError({"role": f"unknown role {role!r}; one of {', '.join(Role.values)}"})
    if membership.role == Role.MANAGER and role != Role.MANAGER:
        _keep_a_manager(membership)
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


def remove_member(membership: Membership) -> None:
    if membership.role == Role.MANAGER:
        _keep_a_manager(membership)
    membership.delete()


def _keep_a_manager(membership: Membership) -> None:
    others = Membership.objects.filter(project_id=membership.project_id, role=Role.MANAGER).exclude(
        pk=membership.pk
    )
    if not others.exists():
        raise ValidationError({"role": "a project must keep at least one manager"})
