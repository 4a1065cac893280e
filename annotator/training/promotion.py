"""Changing a project's active model version: by a run's evaluation gate, by hand, or back.

Web and worker processes pick the change up on their next click or task without a restart: they
read ``Project.active_model_version`` per request/task, the version memo is keyed by the row's id
and the predictor cache loads the new weights the first time they are asked for.
"""

from __future__ import annotations

import logging

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from annotator.projects.models import Project
from annotator.training.models import ModelPromotion, ModelStatus, ModelVersion, PromotionKind
from annotator.training.services import checkpoint_path, model_version_for

log = logging.getLogger(__name__)


def versions_of(project: Project):
    """Versions a project may use: those its runs made, those it ever had active, and the
    versions registered for every project (no project)."""
    from django.db.models import Q

    return ModelVersion.objects.filter(
        Q(project=project) | Q(project__isnull=True) | Q(promotions__project=project)
    ).distinct()


def activate(
    project: Project,
    version: ModelVersion,
    *,
    kind: str,
    user: AbstractBaseUser | None = None,
    reason: str = "",
) -> ModelPromotion:
    """Make ``version`` the project's active version (in one transaction with its history row)."""
    try:
        checkpoint_path(version)
    except FileNotFoundError as exc:
        raise ValidationError({"version": str(exc)}) from exc
    with transaction.atomic():
        locked = Project.objects.select_for_update().get(pk=project.pk)
        previous = model_version_for(locked)
        locked.active_model_version = version
        locked.save(update_fields=["active_model_version", "updated_at"])
        ModelVersion.objects.filter(pk=version.pk).update(
            status=ModelStatus.ACTIVE, status_reason=reason or f"{PromotionKind(kind).label} in {project}"
        )
        if previous is not None and previous.pk != version.pk and not _active_elsewhere(previous, project):
            ModelVersion.objects.filter(pk=previous.pk).update(
                status=ModelStatus.RETIRED, status_reason=f"replaced by {version} in {project}"
            )
        promotion = ModelPromotion.objects.create(
            project=locked,
            version=version,
            previous=previous,
            kind=kind,
            reason=reason,
            created_by=user if user is not None and user.is_authenticated else None,
        )
        from annotator.suggestions.services import version_activated

        version_activated(locked, version, gated=kind == PromotionKind.GATED)
        if previous is None or previous.embedding_version_id != version.embedding_version_id:
            transaction.on_commit(lambda: queue_embeddings(project.pk, version.pk))
    project.active_model_version = version
    from annotator.training.services import forget_model_versions

    forget_model_versions()
    log.info("project %s: version %s active (%s, was %s)", project.pk, version.pk, kind, previous)
    return promotion


def _active_elsewhere(version: ModelVersion, project: Project) -> bool:
    return version.active_in.exclude(pk=project.pk).exists()


def promote(
    project: Project, version: ModelVersion, *, user: AbstractBaseUser | None = None
) -> ModelPromotion:
    """A manager makes any of the project's versions active, whatever its evaluation said."""
    if not versions_of(project).filter(pk=version.pk).exists():
        raise ValidationError({"version": f"model version {version.pk} is not one of this project's"})
    if project.active_model_version_id == version.pk:
        raise ValidationError({"version": f"model version {version.pk} is already active"})
    return activate(project, version, kind=PromotionKind.MANUAL, user=user, reason="promoted by hand")


def rollback(project: Project, *, user: AbstractBaseUser | None = None) -> ModelPromotion:
    """Back to the version that was active before the current one."""
    current = project.active_model_version_id
    last = ModelPromotion.objects.filter(project=project, version_id=current).order_by("-id").first()
    target = last.previous if last is not None else None
    if target is None:
        raise ValidationError({"version": "nothing to roll back to: no earlier active version is recorded"})
    return activate(
        project, target, kind=PromotionKind.ROLLBACK, user=user, reason=f"rolled back from version {current}"
    )


def queue_embeddings(project_id: int, version_id: int) -> int:
    """A version with an encoder of its own needs its own embeddings: queue them on ``embed``.
    The old encoder's stay stored (a rollback needs them); the annotation page computes any an
    annotator reaches first."""
    from annotator.images.models import Embedding, Image
    from annotator.images.tasks import embed

    version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None:
        return 0
    have = Embedding.objects.filter(model_version_id=version.embedding_version_id).values("image_id")
    ids = Image.objects.filter(project_id=project_id).exclude(pk__in=have).values_list("pk", flat=True)
    queued = 0
    for image_id in ids.iterator(chunk_size=2000):  # a large project: never all ids in memory
        embed.apply_async((image_id, version.pk), queue="embed")
        queued += 1
    log.info("project %s: %d embeddings queued for version %s", project_id, queued, version.pk)
    return queued
