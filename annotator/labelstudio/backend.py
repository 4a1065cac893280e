"""The Label Studio ML backend protocol on top of Maskmill's engine (one backend per project).

- interactive ``/predict`` (a ``context`` of key points / rectangles): decoded like a click on the
  annotation page, from the cached embedding, answered as one ``brushlabels`` region;
- batch ``/predict`` (no context): the semi-automatic pre-fill masks of each task's image. They
  are computed once per image by the stages' generation items (the same rows a semi-automatic run
  uses, so nothing is generated twice) and reused on every later request. Within the time budget
  the request computes what it can itself; the rest is queued on the ``generate`` queue and its
  tasks answer an empty list (Label Studio then creates no prediction for them, and asks again
  the next time), with the queued task ids in the answer.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from annotator.annotation.boxes import NotReady, decode_prompt
from annotator.annotation.interactive import PromptError
from annotator.images.models import Image
from annotator.labelstudio import services
from annotator.labelstudio.client import FetchError
from annotator.labelstudio.models import Connection, TaskLink
from annotator.labelstudio.regions import (
    BRUSH,
    KEYPOINT,
    RECTANGLE,
    Control,
    RegionError,
    brush_result,
    controls,
    parse_region,
)
from annotator.masks.models import Mask, MaskStatus
from annotator.projects.models import Project
from annotator.stages import services as stages
from annotator.stages.models import GenerationItem, GenerationMode
from annotator.training.models import JobStatus
from annotator.training.services import model_version_for

MAX_TASKS = 1000
MAX_CONTEXT_REGIONS = 64
metrics: Counter[str] = Counter()
_metrics_lock = threading.Lock()


def count(name: str, value: int = 1) -> None:
    with _metrics_lock:
        metrics[name] += value


def model_version_name(project: Project) -> str:
    version = model_version_for(project)
    return "maskmill-classic" if version is None else f"maskmill-{version.pk}"


def budget_seconds() -> float:
    return float(settings.MASKMILL_LS_PREDICT_BUDGET)


def brush_control(body: dict[str, Any]) -> Control:
    found = controls(body.get("label_config"))
    if BRUSH not in found:
        raise RegionError(
            "the Label Studio project's labelling config has no <BrushLabels> control; Maskmill answers "
            "with brush masks"
        )
    return found[BRUSH]


def setup(project: Project) -> dict[str, Any]:
    return {"model_version": model_version_name(project)}


def health(project: Project) -> dict[str, Any]:
    version = model_version_for(project)
    return {
        "status": "UP",
        "model_version": model_version_name(project),
        "model": "classic" if version is None else str(version),
        "v2": True,
    }


def predict(project: Project, user: AbstractBaseUser, body: Any) -> dict[str, Any]:
    """The answer to ``/predict``; RegionError/PromptError/FetchError for bad input (400/422)."""
    if not isinstance(body, dict):
        raise RegionError("the request body must be a JSON object {tasks, label_config, params}")
    tasks = body.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise RegionError("tasks must be a non-empty list of Label Studio tasks")
    if len(tasks) > MAX_TASKS:
        raise RegionError(f"at most {MAX_TASKS} tasks per request, got {len(tasks)}")
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise RegionError("params must be an object")
    context = params.get("context")
    control = brush_control(body)
    for task in tasks:
        services.task_id(task)
    connection = Connection.objects.filter(project=project).first()
    if context:
        return interactive(project, user, connection, control, tasks[0], context)
    return batch(project, user, connection, control, tasks)


def interactive(
    project: Project,
    user: AbstractBaseUser,
    connection: Connection | None,
    control: Control,
    task: dict[str, Any],
    context: Any,
) -> dict[str, Any]:
    """One brush region for the clicks and/or rectangle of ``context``, labelled like them."""
    if not isinstance(context, dict) or not isinstance(context.get("result"), list) or not context["result"]:
        raise RegionError("params.context must be an object with a non-empty result list")
    items = context["result"]
    if len(items) > MAX_CONTEXT_REGIONS:
        raise RegionError(f"at most {MAX_CONTEXT_REGIONS} prompts per request")
    image = services.task_image(connection, task, user)
    points, labels, box, names = [], [], None, []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or item.get("type") not in (KEYPOINT, RECTANGLE):
            raise RegionError(f"context.result[{index}] must be a keypointlabels or rectanglelabels region")
        try:
            region = parse_region(item, image.width, image.height)
        except RegionError as error:
            raise RegionError(f"context.result[{index}]: {error}") from None
        if region.label:
            names.append(region.label)
        if region.point is not None:
            points.append(list(region.point))
            labels.append(1 if region.positive else 0)
        elif box is not None:
            raise RegionError("send at most one rectangle per interactive request")
        else:
            box = list(region.box)
    unknown = sorted(set(names) - services.project_labels(project))
    if unknown:
        raise RegionError(f"unknown label(s) {', '.join(map(repr, unknown))} for this Maskmill project")
    started = time.perf_counter()
    version_name = model_version_name(project)
    try:
        decoded = decode_prompt(
            image,
            points=points or None,
            labels=labels or None,
            box=box,
            wait_s=budget_seconds(),
            suggest=True,
        )
    except NotReady as waiting:
        count("interactive_not_ready")
        return {
            "results": [{"result": [], "score": 0.0, "model_version": version_name}],
            "model_version": version_name,
            "detail": str(waiting),
        }
    count("interactive")
    count("interactive_ms", int((time.perf_counter() - started) * 1000))
    # The project's label head names the region when the prompts carried no label.
    top = (decoded.suggestions or {}).get("suggestions", [{}])[0]
    label = names[0] if names else (None if top.get("unknown", True) else top["labels"][0]["name"])
    region = brush_result(
        decoded.segmentation, label, control, region_id=uuid.uuid4().hex[:10], score=decoded.score
    )
    prediction = {
        "result": [region],
        "score": decoded.score,
        "model_version": version_name,
        "label_suggestions": top.get("labels", []),
    }
    return {"results": [prediction], "model_version": version_name}


def batch(
    project: Project,
    user: AbstractBaseUser,
    connection: Connection | None,
    control: Control,
    tasks: list[dict[str, Any]],
) -> dict[str, Any]:
    version = model_version_for(project)
    version_name = model_version_name(project)
    if version is None:
        return {
            "results": [[] for _ in tasks],
            "model_version": version_name,
            "detail": "batch pre-annotation runs the automatic mask generator, which needs a SAM model; "
            "this project uses the classic segmenter (interactive predictions still work)",
        }
    deadline = time.monotonic() + budget_seconds()
    images = _task_images(connection, tasks, user, deadline)
    wanted = sorted({image.pk for image in images if image is not None})
    done = _done_items(project, version, wanted)
    missing = [pk for pk in wanted if pk not in done]
    if missing:
        stages.start_run(
            project, GenerationMode.SEMI, image_filter={"ids": missing}, user=user, enqueue=False
        )
        pending = list(
            GenerationItem.objects.filter(
                run__project=project,
                run__mode=GenerationMode.SEMI,
                run__model_version=version,
                image_id__in=missing,
                status=JobStatus.PENDING,
            ).values_list("pk", "run_id")
        )
        runs: set[int] = set()
        for item_id, run_id in pending:
            if time.monotonic() >= deadline:
                runs.add(run_id)
                continue
            _generate_inline(item_id)
        for run_id in runs:
            transaction.on_commit(lambda run_id=run_id: stages.queue_items(run_id))
        done = _done_items(project, version, wanted)
    masks = _masks_of(done)
    results, queued, unfetched = [], [], []
    for task, image in zip(tasks, images):
        if image is None:
            unfetched.append(task["id"])
            results.append([])
            continue
        item = done.get(image.pk)
        if item is None:
            queued.append(task["id"])
            results.append([])
            continue
        regions = [
            brush_result(
                m.segmentation,
                m.label.name if m.label else None,
                control,
                region_id=f"mm-{m.pk}",
                score=m.predicted_iou,
            )
            for m in masks.get(item, [])
        ]
        scores = [m.predicted_iou or 0.0 for m in masks.get(item, [])]
        score = sum(scores) / len(scores) if scores else 0.0
        results.append([{"result": regions, "score": score, "model_version": version_name}])
    count("batch_ready", len(tasks) - len(queued) - len(unfetched))
    count("batch_queued", len(queued))
    answer: dict[str, Any] = {"results": results, "model_version": version_name, "queued": queued}
    notes = []
    if queued:
        notes.append(f"{len(queued)} task(s) queued for Maskmill's automatic generator (no prediction yet)")
    if unfetched:
        answer["not_fetched"] = unfetched
        notes.append(f"{len(unfetched)} task image(s) not fetched within the time budget")
    if notes:
        answered = len(tasks) - len(queued) - len(unfetched)
        answer["detail"] = (
            f"{answered} task(s) answered; " + "; ".join(notes) + ": retrieve predictions again later"
        )
    return answer


def _generate_inline(item_id: int) -> None:
    """``process_item`` for a request thread: the database work here, the generator on the web
    process's model thread (where every torch call of a web process runs)."""
    from annotator.annotation.services import model_thread
    from annotator.images.embeddings import load_stored
    from annotator.stages.generation import (
        BadImage,
        _takes_embedding,
        generator_for,
        read_item_image,
        record_fields,
    )

    claim = stages.claim_item(item_id, "labelstudio-backend")
    if claim is None:
        return
    params = claim.run.parameters["generator"]
    version = claim.run.model_version
    try:
        started = time.perf_counter()
        pixels = read_item_image(claim.image)
        stored = None if params.get("crop_n_layers") else load_stored(claim.image, version)

        def generate() -> list[dict[str, Any]]:
            generator = generator_for(version, params)
            if stored is not None and _takes_embedding(generator):
                return list(generator.generate(pixels, embedding=stored.tensor))
            return list(generator.generate(pixels))

        records = model_thread.run(generate)
        stages.finish_item(claim, [record_fields(r) for r in records], time.perf_counter() - started)
    except BadImage as error:
        stages.fail_item(item_id, str(error))
    except Exception as error:  # this image's problem: the item fails with the reason, the request goes on
        stages.fail_item(item_id, f"image {claim.image.pk}: {type(error).__name__}: {error}")


def _task_images(
    connection: Connection | None, tasks: list[dict[str, Any]], user: AbstractBaseUser, deadline: float
) -> list[Image | None]:
    """Every task's image; unlinked tasks are fetched while the time budget lasts (None for the
    rest: the next request carries on). All fetches are checked before any image is ingested."""
    images: list[Image | None] = [services.linked_image(connection, task) for task in tasks]
    fetched: dict[int, bytes] = {}
    for index, task in enumerate(tasks):
        if images[index] is None and (not fetched or time.monotonic() < deadline):
            fetched[index] = services.fetch_task(connection, task)
    for index, data in fetched.items():
        images[index] = services.link_task(connection, tasks[index], data, user)
    return images


def _done_items(project: Project, version: Any, image_ids: list[int]) -> dict[int, int]:
    """image id → its finished semi-automatic item under this model version."""
    rows = GenerationItem.objects.filter(
        run__project=project,
        run__mode=GenerationMode.SEMI,
        run__model_version=version,
        image_id__in=image_ids,
        status=JobStatus.DONE,
    ).values_list("image_id", "pk")
    return dict(rows)


def _masks_of(done: dict[int, int]) -> dict[int, list[Mask]]:
    found: dict[int, list[Mask]] = {}
    rows = (
        Mask.objects.filter(generation_item_id__in=list(done.values()))
        .exclude(status=MaskStatus.REJECTED)
        .select_related("label")
        .order_by("id")
    )
    for mask in rows:
        found.setdefault(mask.generation_item_id, []).append(mask)
    return found


# ------------------------------------------------------------------------------------------------
# Webhook


class NotAvailable(Exception):
    """A webhook action that cannot be done now (the answer says why: a 409)."""


def webhook(project: Project, user: AbstractBaseUser, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("action"), str):
        raise RegionError("a webhook body must be a JSON object with an 'action'")
    action = body["action"]
    connection = Connection.objects.filter(project=project).first()
    if action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"):
        task, annotation = body.get("task"), body.get("annotation")
        if not isinstance(task, dict) or not isinstance(annotation, dict):
            raise RegionError(f"{action} needs 'task' and 'annotation' objects")
        if connection is None:
            raise FetchError(
                "connect the project to its Label Studio first (PUT /api/projects/<id>/labelstudio with url "
                "and token): annotations are mapped through that connection"
            )
        image = services.task_image(connection, task, user)
        link = TaskLink.objects.get(connection=connection, ls_task_id=services.task_id(task))
        aid = annotation.get("id")
        known = services.known_regions(connection, aid if isinstance(aid, int) else -1).get(aid)
        parsed = services.parse_annotation(annotation, image, services.project_labels(project), known)
        resolver = services.AnnotatorResolver(project, user, _email_lookup(connection))
        counts = services.apply_annotation(connection, link, parsed, resolver)
        count("webhook_annotations")
        return {"status": "ok", "action": action, **counts}
    if action == "ANNOTATIONS_DELETED":
        rows = body.get("annotations")
        if not isinstance(rows, list) or not all(
            isinstance(r, dict) and isinstance(r.get("id"), int) for r in rows
        ):
            raise RegionError("ANNOTATIONS_DELETED needs 'annotations': a list of objects with an integer id")
        deleted = services.delete_annotations(connection, [r["id"] for r in rows]) if connection else 0
        return {"status": "ok", "action": action, "deleted": deleted}
    if action == "START_TRAINING":
        return start_training(project, user)
    return {"status": "ignored", "action": action, "detail": f"Maskmill does nothing on {action}"}


def start_training(project: Project, user: AbstractBaseUser) -> dict[str, Any]:
    """Label Studio's "Start training": a Maskmill training run of the project, as a manager's
    manual request (same rules: one run at a time, enough accepted masks, a SAM model)."""
    from annotator.projects.access import MANAGERS, check_project_access
    from annotator.training import runs
    from annotator.training.models import TrainingTrigger

    check_project_access(user, project.pk, MANAGERS)
    try:
        run = runs.request_training_run(project, trigger=TrainingTrigger.MANUAL, user=user)
    except runs.TrainingBusy as busy:
        raise NotAvailable(str(busy)) from None
    return {"status": "queued", "action": "START_TRAINING", "training_run": run.pk}


def _email_lookup(connection: Connection | None):
    from annotator.labelstudio.sync import email_lookup

    return None if connection is None else email_lookup(connection)


def metrics_snapshot(project: Project) -> dict[str, Any]:
    connection = Connection.objects.filter(project=project).first()
    with _metrics_lock:
        figures = dict(metrics)
    calls = figures.get("interactive", 0)
    return {
        "model_version": model_version_name(project),
        "interactive_predictions": calls,
        "interactive_mean_ms": round(figures.get("interactive_ms", 0) / calls, 1) if calls else None,
        "interactive_not_ready": figures.get("interactive_not_ready", 0),
        "batch_tasks_answered": figures.get("batch_ready", 0),
        "batch_tasks_queued": figures.get("batch_queued", 0),
        "webhook_annotations": figures.get("webhook_annotations", 0),
        "linked_tasks": connection.tasks.count() if connection else 0,
        "masks_from_label_studio": connection.masks.count() if connection else 0,
    }


__all__ = ["FetchError", "NotAvailable", "PromptError", "RegionError", "predict", "webhook"]
