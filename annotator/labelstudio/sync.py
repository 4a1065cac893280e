"""Push a project to Label Studio and pull its annotations back, through label-studio-sdk 2.x.

Push: the Label Studio project (created once, its config kept in step with the labels), one task
per image (the image file uploaded to Label Studio, the task id remembered), and the image's masks
as one prediction (or, by option, one annotation) per task. A task whose masks have not changed
since the last push is not touched, so a second push sends nothing and duplicates nothing. If a
push is interrupted, what went across is remembered and the next push carries on from there.

Pull: every annotation of every task. All of it is read and checked (sizes, RLE, coordinates,
labels, images of tasks that are not linked yet) before anything is written; then regions become
masks through ``services.apply_annotation`` (the same code the webhook uses).
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.utils import timezone

from annotator.images.models import Image
from annotator.labelstudio import services
from annotator.labelstudio.client import sdk
from annotator.labelstudio.models import Connection, MaskLink, TaskLink
from annotator.labelstudio.regions import BRUSH, RegionError, brush_result, controls, label_config
from annotator.masks.models import Mask, MaskStatus
from annotator.projects.models import Label

UPLOAD_BATCH = 25
PUSH_MODEL_VERSION = "maskmill-push"
MAX_PULL_TASKS = 100_000


class SyncError(Exception):
    """Label Studio refused or could not be reached; the message says what happened (a 4xx)."""


def _call(what: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    from label_studio_sdk.core.api_error import ApiError

    try:
        return function(*args, **kwargs)
    except ApiError as error:
        raise SyncError(
            f"Label Studio refused to {what}: HTTP {error.status_code} {str(error.body)[:500]}"
        ) from None
    except OSError as error:
        raise SyncError(f"cannot reach Label Studio to {what}: {error}") from None
    except Exception as error:  # httpx errors and the like
        if error.__class__.__module__.startswith("httpx"):
            raise SyncError(
                f"cannot reach Label Studio to {what}: {error.__class__.__name__}: {error}"
            ) from None
        raise


def _labels(connection: Connection) -> list[tuple[str, str]]:
    return list(Label.objects.filter(project=connection.project).order_by("id").values_list("name", "color"))


def ensure_project(connection: Connection) -> int:
    """The Label Studio project, created on first push; its config follows the project's labels."""
    ls = sdk(connection)
    config = label_config(_labels(connection))
    if connection.ls_project_id:
        found = _call("read the project", ls.projects.get, connection.ls_project_id)
        if found.label_config != config:
            _call(
                "update the labelling config",
                ls.projects.update,
                connection.ls_project_id,
                label_config=config,
            )
        return connection.ls_project_id
    project = connection.project
    created = _call(
        "create a project",
        ls.projects.create,
        title=project.name[:50] if len(project.name) >= 3 else f"{project.name} (Maskmill)",
        description=f"Pushed from Maskmill project {project.pk} ({project.slug})",
        label_config=config,
    )
    connection.ls_project_id = created.id
    connection.save(update_fields=["ls_project_id", "updated_at"])
    return created.id


def _upload_name(image: Image) -> str:
    suffix = image.file.name.rsplit(".", 1)[-1].lower() if "." in image.file.name else "png"
    return f"mm-{image.pk}.{suffix}"


def upload_images(connection: Connection, ls_project: int, images: list[Image]) -> int:
    """Upload images without a task; link each new task to its image by the uploaded file name."""
    import requests

    ls = sdk(connection)
    url = f"{connection.url}/api/projects/{ls_project}/import"
    for start in range(0, len(images), UPLOAD_BATCH):
        files = []
        for image in images[start : start + UPLOAD_BATCH]:
            with image.file.open("rb") as handle:
                name = _upload_name(image)
                # one form field per file: Label Studio keeps one file per field name
                files.append(
                    (f"file{len(files)}", (name, handle.read(), mimetypes.guess_type(name)[0] or "image/png"))
                )
        # A multipart upload: the SDK's generated client sends JSON bodies only.
        try:
            response = requests.post(
                url,
                params={"commit_to_project": "true"},
                files=files,
                headers=dict(ls._client_wrapper.get_headers()),
                timeout=(10, 600),
                allow_redirects=False,
            )
        except requests.RequestException as error:
            raise SyncError(
                f"cannot reach Label Studio to import the images: {error.__class__.__name__}"
            ) from None
        if response.status_code >= 300:
            raise SyncError(
                f"Label Studio refused the image upload: HTTP {response.status_code} {response.text[:500]}"
            )
    return link_uploaded(connection, ls_project)


def link_uploaded(connection: Connection, ls_project: int) -> int:
    """Link tasks made from uploads named ``mm-<image id>.<ext>`` (Label Studio prefixes a hash)."""
    ls = sdk(connection)
    known = set(TaskLink.objects.filter(connection=connection).values_list("ls_task_id", flat=True))
    images = set(Image.objects.filter(project=connection.project).values_list("pk", flat=True))
    linked_images = set(TaskLink.objects.filter(connection=connection).values_list("image_id", flat=True))
    new = []
    for task in _call("list the tasks", ls.tasks.list, project=ls_project, fields="task_only"):
        if task.id in known:
            continue
        match = services.UPLOAD_NAME.search(str((task.data or {}).get("image", "")))
        if match and int(match.group(1)) in images and int(match.group(1)) not in linked_images:
            new.append(TaskLink(connection=connection, image_id=int(match.group(1)), ls_task_id=task.id))
            linked_images.add(int(match.group(1)))
    TaskLink.objects.bulk_create(new, ignore_conflicts=True)
    return len(new)


def _digest(kind: str, masks: list[Mask]) -> str:
    if not masks:
        return ""
    body = kind + ";" + ";".join(f"{m.pk}:{m.version}:{m.label_id}" for m in masks)
    return hashlib.sha1(body.encode()).hexdigest()


def push(
    connection: Connection, *, as_annotations: bool = False, statuses: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """Create/update the Label Studio side of the project; returns what was done."""
    ls = sdk(connection)
    ls_project = ensure_project(connection)
    control = controls(label_config(_labels(connection)))[BRUSH]
    # tasks uploaded by an interrupted push are linked first, not uploaded twice
    link_uploaded(connection, ls_project)
    images = list(Image.objects.filter(project=connection.project).order_by("id"))
    unlinked = [
        image for image in images if not TaskLink.objects.filter(connection=connection, image=image).exists()
    ]
    uploaded = upload_images(connection, ls_project, unlinked) if unlinked else 0
    kind = "annotation" if as_annotations else "prediction"
    statuses = statuses or (MaskStatus.ACCEPTED, MaskStatus.PROPOSED)
    # masks that came from Label Studio annotations (not from this push's own) are there already
    own = TaskLink.objects.filter(connection=connection, pushed_kind="annotation").values("pushed_ls_id")
    pulled = set(
        MaskLink.objects.filter(connection=connection)
        .exclude(ls_annotation_id__in=own)
        .values_list("mask_id", flat=True)
    )
    sent = unchanged = 0
    links = TaskLink.objects.filter(connection=connection).select_related("image")
    for link in links:
        masks = [
            m
            for m in Mask.objects.filter(image=link.image, status__in=statuses)
            .select_related("label")
            .order_by("id")
            if m.pk not in pulled
        ]
        digest = _digest(kind, masks)
        if digest == link.pushed_digest and kind == (link.pushed_kind or kind):
            unchanged += 1
            continue
        _remove_pushed(ls, connection, link)
        if masks:
            result = [
                brush_result(
                    m.segmentation,
                    m.label.name if m.label else None,
                    control,
                    region_id=f"mm-{m.pk}",
                    score=m.predicted_iou,
                )
                for m in masks
            ]
            created = _create_pushed(ls, link, kind, result, masks)
            if kind == "annotation":
                MaskLink.objects.bulk_create(
                    [
                        MaskLink(
                            connection=connection,
                            task=link,
                            ls_annotation_id=created,
                            region_id=item["id"],
                            mask=mask,
                            digest=services.region_digest(item),
                        )
                        for item, mask in zip(result, masks)
                    ]
                )
        else:
            created = None
        TaskLink.objects.filter(pk=link.pk).update(
            pushed_kind=kind if created else "", pushed_ls_id=created, pushed_digest=digest
        )
        sent += 1
    connection.last_push_at = timezone.now()
    connection.save(update_fields=["last_push_at", "updated_at"])
    return {
        "ls_project": ls_project,
        "tasks_created": uploaded,
        "tasks_sent": sent,
        "tasks_unchanged": unchanged,
        "as": kind,
    }


def _remove_pushed(ls: Any, connection: Connection, link: TaskLink) -> None:
    if not link.pushed_ls_id:
        return
    if link.pushed_kind == "annotation":
        MaskLink.objects.filter(connection=connection, ls_annotation_id=link.pushed_ls_id).delete()
        remove = ls.annotations.delete
    else:
        remove = ls.predictions.delete
    from label_studio_sdk.core.api_error import ApiError

    try:
        remove(link.pushed_ls_id)
    except ApiError as error:
        if error.status_code != 404:  # already deleted in Label Studio: fine
            raise SyncError(
                f"Label Studio refused to replace an earlier push: HTTP {error.status_code}"
            ) from None


def _create_pushed(
    ls: Any, link: TaskLink, kind: str, result: list[dict[str, Any]], masks: list[Mask]
) -> int:
    if kind == "annotation":
        created = _call(
            "create an annotation", ls.annotations.create, link.ls_task_id, result=result, was_cancelled=False
        )
        return int(created.id)
    scores = [m.predicted_iou for m in masks if m.predicted_iou is not None]
    created = _call(
        "create a prediction",
        ls.predictions.create,
        task=link.ls_task_id,
        result=result,
        score=sum(scores) / len(scores) if scores else None,
        model_version=PUSH_MODEL_VERSION,
    )
    return int(created.id)


# ------------------------------------------------------------------------------------------------
# Pull


def pull(connection: Connection, user: AbstractBaseUser | None = None) -> dict[str, Any]:
    """Label Studio annotations → Maskmill masks (idempotent); RegionError/FetchError on bad input
    before anything is written."""
    if not connection.ls_project_id:
        raise ValidationError({"ls_project": "which Label Studio project? push first or pass its id"})
    ls = sdk(connection)
    project = connection.project
    tasks = []
    for task in _call("list the tasks", ls.tasks.list, project=connection.ls_project_id, fields="all"):
        tasks.append(task.model_dump() if hasattr(task, "model_dump") else dict(task))
        if len(tasks) > MAX_PULL_TASKS:
            raise RegionError(
                f"the Label Studio project has over {MAX_PULL_TASKS} tasks; pull refuses so many at once"
            )
    labels = services.project_labels(project)
    # 1. read and check everything; fetch the images of tasks not linked yet (nothing written)
    images: dict[int, Image | None] = {}
    fetched: dict[int, bytes] = {}
    for task in tasks:
        tid = services.task_id(task)
        images[tid] = services.linked_image(connection, task)
        if images[tid] is None and _annotations(task):
            fetched[tid] = services.fetch_task(connection, task)
    plans = []
    known = services.known_regions(connection)
    for task in tasks:
        tid = task["id"]
        image = images[tid]
        for annotation in _annotations(task):
            if image is None:  # check sizes against the fetched bytes' image before ingesting
                image = _probe(fetched[tid], tid)
            aid = annotation.get("id") if isinstance(annotation, dict) else None
            parsed = services.parse_annotation(annotation, image, labels, known.get(aid))
            plans.append((task, annotation, parsed))
    # 2. write: link new images, then each annotation (rectangles decoded by the model on the way)
    for task in tasks:
        if task["id"] in fetched:
            services.link_task(connection, task, fetched[task["id"]], user)
    resolver = services.AnnotatorResolver(project, user, email_lookup(connection))
    totals = {"created": 0, "updated": 0, "unchanged": 0, "deleted": 0}
    seen: set[int] = set()
    links = {
        link.ls_task_id: link
        for link in TaskLink.objects.filter(connection=connection).select_related("image")
    }
    for task, _, parsed in plans:
        seen.add(parsed.annotation_id)
        for key, value in services.apply_annotation(connection, links[task["id"]], parsed, resolver).items():
            totals[key] += value
    # annotations deleted in Label Studio since the last pull take their masks with them
    task_ids = {t["id"] for t in tasks}
    gone = (
        MaskLink.objects.filter(connection=connection, task__ls_task_id__in=task_ids)
        .exclude(ls_annotation_id__in=seen)
        .values_list("ls_annotation_id", flat=True)
        .distinct()
    )
    totals["deleted"] += services.delete_annotations(connection, list(gone))
    connection.last_pull_at = timezone.now()
    connection.save(update_fields=["last_pull_at", "updated_at"])
    return {"ls_project": connection.ls_project_id, "tasks": len(tasks), "annotations": len(plans), **totals}


def _annotations(task: dict[str, Any]) -> list[Any]:
    found = task.get("annotations") or []
    if not isinstance(found, list):
        raise RegionError(f"task {task.get('id')}: annotations must be a list")
    return found


class _Probe:
    """Width and height of fetched bytes, for checking regions before the image is ingested."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height, self.pk = width, height, None


def _probe(data: bytes, tid: int) -> Any:
    from django.conf import settings

    from engine.images import ImageReadError, read_image

    try:
        pixels = read_image(data, max_pixels=settings.MASKMILL_MAX_IMAGE_PIXELS)
    except ImageReadError as error:
        raise services.FetchError(f"task {tid}: its image is not usable ({error})") from None
    return _Probe(int(pixels.shape[1]), int(pixels.shape[0]))


def email_lookup(connection: Connection) -> Callable[[int], str]:
    emails: dict[int, str] = {}

    def lookup(ls_user_id: int) -> str:
        if not emails:
            for user in sdk(connection).users.list():
                emails[int(user.id)] = getattr(user, "email", "") or ""
        return emails.get(ls_user_id, "")

    return lookup
