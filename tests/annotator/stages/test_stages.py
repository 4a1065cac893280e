"""Stages 2 and 3 on the unit layer (SQLite, tasks run eagerly): runs, exactly-once items, bad
input, cancel/resume, the stage moves and the semi-automatic report. The generator is the cheap
deterministic one from tests/integration/pipeline_support.py (real computation, contract records)."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from annotator.images.models import Image
from annotator.images.services import ingest_files
from annotator.jobs import JobStatus
from annotator.masks.models import Mask, MaskSource, MaskStatus
from annotator.masks.services import create_mask, update_mask
from annotator.stages import generation, selectors, services
from annotator.stages.models import GenerationItem, GenerationRun
from annotator.training.models import ModelVersion
from engine.masks import encode_rle
from tests.integration.pipeline_support import expected_mask_count, shapes_image, shapes_png

pytestmark = pytest.mark.django_db

CHEAP = "tests.integration.pipeline_support.components_generator"


@pytest.fixture(autouse=True)
def _cheap_generator(settings):
    settings.MASKMILL_MASK_GENERATOR = CHEAP
    generation.forget_generators()
    yield
    generation.forget_generators()


@pytest.fixture
def model_version(project):
    version = ModelVersion.objects.create(family="custom", config={"encoder_embed_dim": 32}, name="tiny")
    project.active_model_version = version
    project.save()
    return version


@pytest.fixture
def images(project, model_version):
    uploads = [SimpleUploadedFile(f"s{seed}.png", shapes_png(seed)) for seed in range(5)]
    result = ingest_files(project, uploads, None)
    assert len(result.created) == 5, result.as_dict()
    return {seed: image for seed, image in enumerate(result.created)}


def masks_per_image(project) -> dict[int, int]:
    counts: dict[int, int] = {}
    for image_id in Mask.objects.filter(project=project).values_list("image_id", flat=True):
        counts[image_id] = counts.get(image_id, 0) + 1
    return counts


def run_now(project, mode="auto", capture=None, **kwargs) -> GenerationRun | None:
    with capture(execute=True):
        run = services.start_run(project, mode, **kwargs)
    if run is not None:
        run.refresh_from_db()
    return run


def test_a_run_stores_every_image_masks_once_with_scores_point_and_crop_box(
    project, images, model_version, django_capture_on_commit_callbacks
):
    run = run_now(project, capture=django_capture_on_commit_callbacks)
    assert (run.status, run.total, run.done, run.failed) == (JobStatus.DONE, 5, 5, 0)
    assert masks_per_image(project) == {img.pk: expected_mask_count(seed) for seed, img in images.items()}
    mask = Mask.objects.filter(image=images[1]).first()
    assert (mask.source, mask.status, mask.model_version) == (
        MaskSource.AUTO,
        MaskStatus.ACCEPTED,
        model_version,
    )
    assert mask.accepted_at is not None and mask.generation_item.run == run
    assert mask.predicted_iou == pytest.approx(0.9) and mask.stability_score == pytest.approx(0.98)
    assert len(mask.point_coords) == 1 and mask.crop_box == [0.0, 0.0, 96.0, 72.0]
    assert mask.segmentation["size"] == [72, 96] and isinstance(mask.segmentation["counts"], str)
    progress = selectors.run_progress(run)
    assert progress["done"] == 5 and progress["masks"] == sum(expected_mask_count(s) for s in range(5))
    assert progress["percent"] == 100.0 and progress["images_per_hour"] is not None


def test_proposed_status_when_the_project_says_so(project, images, django_capture_on_commit_callbacks):
    project.settings["automatic_mask_status"] = "proposed"
    project.save()
    run_now(project, capture=django_capture_on_commit_callbacks)
    assert set(Mask.objects.filter(project=project).values_list("status", flat=True)) == {"proposed"}


def test_a_redelivered_task_after_done_is_a_no_op(project, images, django_capture_on_commit_callbacks):
    run = run_now(project, capture=django_capture_on_commit_callbacks)
    before = masks_per_image(project)
    for item in run.items.all():
        assert services.process_item(item.pk, "again") == "skipped"
    assert masks_per_image(project) == before
    run.refresh_from_db()
    assert run.done == 5


def test_two_concurrent_deliveries_of_one_item_write_its_masks_once(project, images):
    run = services.start_run(project, "auto", enqueue=False)
    item = run.items.first()
    first = services.claim_item(item.pk, "worker-a")
    second = services.claim_item(item.pk, "worker-b")  # a duplicate delivery while the first computes
    assert first is not None and second is not None
    fields = [
        generation.record_fields(r)
        for r in generation.run_generator(first.image, run.model_version, {}).records
    ]
    assert services.finish_item(second, fields, 0.1) is True
    assert services.finish_item(first, fields, 0.1) is False
    assert Mask.objects.filter(image=item.image).count() == len(fields) > 0
    item.refresh_from_db()
    assert (item.status, item.attempts, item.mask_count) == (JobStatus.DONE, 2, len(fields))
    run.refresh_from_db()
    assert run.done == 1


def test_starting_the_same_run_twice_does_no_work_twice(project, images, django_capture_on_commit_callbacks):
    run_now(project, capture=django_capture_on_commit_callbacks)
    runs = GenerationRun.objects.count()
    assert run_now(project, capture=django_capture_on_commit_callbacks) is None  # nothing to do
    assert GenerationRun.objects.count() == runs  # and no empty run row
    extra = ingest_files(project, [SimpleUploadedFile("new.png", shapes_png(9))], None).created[0]
    third = run_now(project, capture=django_capture_on_commit_callbacks)
    assert list(third.items.values_list("image_id", flat=True)) == [extra.pk]
    assert Mask.objects.filter(project=project).count() == sum(
        expected_mask_count(s) for s in (0, 1, 2, 3, 4, 9)
    )


def test_vanished_and_corrupt_images_fail_their_item_with_a_reason_and_the_run_goes_on(
    project, images, django_capture_on_commit_callbacks
):
    images[0].file.storage.delete(images[0].file.name)
    with images[1].file.storage.open(images[1].file.name, "wb") as fileobj:
        fileobj.write(b"\x89PNG\r\n\x1a\n garbage")
    run = run_now(project, capture=django_capture_on_commit_callbacks)
    assert (run.status, run.done, run.failed) == (JobStatus.DONE, 3, 2)
    errors = dict(run.items.filter(status=JobStatus.FAILED).values_list("image_id", "error"))
    assert "vanished" in errors[images[0].pk]
    assert "not a usable image" in errors[images[1].pk]
    assert set(masks_per_image(project)) == {images[s].pk for s in (2, 3, 4)}
    assert selectors.failed_items(run)[0]["error"]


def test_an_item_lost_too_often_is_marked_failed(project, images, settings):
    settings.MASKMILL_GENERATE_MAX_ATTEMPTS = 2
    run = services.start_run(project, "auto", enqueue=False)
    item = run.items.first()
    for _ in range(2):  # two deliveries that claimed it and died before finishing
        assert services.claim_item(item.pk, "doomed") is not None
    assert services.process_item(item.pk, "third") == "skipped"
    item.refresh_from_db()
    assert item.status == JobStatus.FAILED and "gave up after 2 attempts" in item.error
    run.refresh_from_db()
    assert run.failed == 1


def test_generator_errors_fail_the_item_not_the_run(
    project, images, settings, django_capture_on_commit_callbacks
):
    settings.MASKMILL_MASK_GENERATOR = "tests.annotator.stages.test_stages.broken_generator"
    run = run_now(project, capture=django_capture_on_commit_callbacks)
    assert (run.status, run.failed) == (JobStatus.DONE, 5)
    assert "RuntimeError: out of cheese" in run.items.first().error


class _Broken:
    def generate(self, image):
        raise RuntimeError("out of cheese")


def broken_generator(model_version, params):
    return _Broken()


def test_cancel_then_resume_finishes_the_rest(project, images, django_capture_on_commit_callbacks):
    run = services.start_run(project, "auto", enqueue=False)
    first = run.items.first()
    assert services.process_item(first.pk, "w") == "done"
    services.cancel_run(run)
    run.refresh_from_db()
    assert run.status == JobStatus.CANCELLED
    assert run.items.filter(status=JobStatus.CANCELLED).count() == 4
    assert services.process_item(run.items.last().pk, "late delivery") == "skipped"
    with django_capture_on_commit_callbacks(execute=True):
        queued = services.resume_run(run)
    assert queued == 4
    run.refresh_from_db()
    assert (run.status, run.done) == (JobStatus.DONE, 5)
    assert len(masks_per_image(project)) == 5


def test_resume_can_retry_failed_items(project, images, django_capture_on_commit_callbacks):
    images[2].file.storage.delete(images[2].file.name)
    run = run_now(project, capture=django_capture_on_commit_callbacks)
    assert run.failed == 1
    images[2].file.storage.save(images[2].file.name, SimpleUploadedFile("x", shapes_png(2)))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.resume_run(run, retry_failed=True) == 1
    run.refresh_from_db()
    assert (run.status, run.done, run.failed) == (JobStatus.DONE, 5, 0)


def test_no_model_is_a_clear_error(project, images):
    project.active_model_version = None
    project.save()
    with pytest.raises(Exception, match="no model is configured"):
        services.start_run(project, "auto")


def test_bad_filters_and_parameters_are_refused_with_reasons(project, model_version):
    with pytest.raises(Exception, match="unknown key"):
        services.parse_filter({"colour": "red"})
    with pytest.raises(Exception, match="unknown image status"):
        services.parse_filter({"status": "nope"})
    with pytest.raises(Exception, match="ids must be"):
        services.parse_filter({"ids": "1,x"})
    assert services.parse_filter({"status": "new,reviewed", "ids": "3,1"}) == {
        "status": ["new", "reviewed"], "ids": [1, 3]
    }  # fmt: skip
    project.settings["generation"] = {"fully_automatic": {"pred_iou_thresh": 3}}
    project.save()
    with pytest.raises(Exception, match="pred_iou_thresh must be a number between 0 and 1"):
        services.start_run(project, "auto")


def test_stage_parameters_default_to_official_and_stricter_prefill(project):
    auto = project.generation_params("fully_automatic")
    semi = project.generation_params("semi_automatic")
    assert (auto["pred_iou_thresh"], auto["stability_score_thresh"], auto["points_per_side"]) == (
        0.88,
        0.95,
        32,
    )
    assert semi["pred_iou_thresh"] >= 0.92 and semi["stability_score_thresh"] >= 0.97


def test_generators_are_kept_per_model_version_and_replaced_when_it_changes(project, model_version):
    first = generation.generator_for(model_version, {"points_per_side": 4})
    assert generation.generator_for(model_version, {"points_per_side": 4}) is first
    newer = ModelVersion.objects.create(family="custom", config={"encoder_embed_dim": 48}, name="tiny-2")
    second = generation.generator_for(newer, {"points_per_side": 4})
    assert second is not first
    assert all(key[1] == newer.pk for key in generation._generators)


def test_semi_stage_prefills_proposals_and_reports_kept_fixed_rejected_added(
    project, images, users, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        run = services.set_stage(project, "semi_automatic", user=users["manager"])
    project.refresh_from_db()
    assert project.stage == "semi_automatic" and run.mode == "semi"
    image = images[3]  # 5 rectangles
    masks = list(Mask.objects.filter(image=image).order_by("id"))
    assert len(masks) == 5
    assert {(m.source, m.status) for m in masks} == {(MaskSource.SEMI, MaskStatus.PROPOSED)}
    update_mask(masks[0], version=masks[0].version, status="accepted")  # kept as proposed
    edited = Mask.objects.get(pk=masks[1].pk)
    mask = shapes_image(3)[:, :, 0] > 100
    mask[:5, :5] = True
    update_mask(edited, version=edited.version, segmentation=encode_rle(mask))
    edited.refresh_from_db()
    update_mask(edited, version=edited.version, status="accepted")  # fixed
    update_mask(masks[2], version=masks[2].version, status="rejected")
    create_mask(image, segmentation=encode_rle(mask), annotator=users["annotator"], status="accepted")
    report = selectors.prefill_report([image.pk])[image.pk]
    assert report == {"prefilled": 5, "kept": 1, "fixed": 1, "rejected": 1, "pending": 2, "added": 1}


def test_stage_with_a_filter_prefills_only_those_images_and_keeps_the_project_stage(
    project, images, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        run = services.set_stage(
            project, "semi_automatic", image_filter={"ids": [images[0].pk, images[4].pk]}
        )
    project.refresh_from_db()
    assert project.stage == "assisted_manual"
    stages = dict(Image.objects.filter(project=project).values_list("pk", "stage"))
    assert stages == {img.pk: "semi_automatic" if seed in (0, 4) else "" for seed, img in images.items()}
    assert set(run.items.values_list("image_id", flat=True)) == {images[0].pk, images[4].pk}
    services.set_stage(project, "fully_automatic", generate=False)  # the whole project: overrides go
    assert set(Image.objects.filter(project=project).values_list("stage", flat=True)) == {""}
    assert set(masks_per_image(project)) == {images[0].pk, images[4].pk}


def test_stage_and_generate_commands(project, images, capsys, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        call_command("stage", project.slug, "fully_automatic", "--filter", f"ids={images[0].pk}")
    project.refresh_from_db()
    assert project.stage == "assisted_manual"  # a filter moves images, not the project
    call_command("stage", project.slug, "fully_automatic", "--no-generate")
    project.refresh_from_db()
    assert project.stage == "fully_automatic"
    call_command("generate", project.slug, "--inline")
    out = capsys.readouterr().out
    assert "4 images" in out and "done 4, failed 0" in out
    assert len(masks_per_image(project)) == 5
    with pytest.raises(CommandError, match="no project"):
        call_command("generate", "no-such-project")
    with pytest.raises(CommandError, match="KEY=VALUE"):
        call_command("generate", project.slug, "--filter", "status")
    run = GenerationRun.objects.filter(project=project).first()
    call_command("generate", project.slug, "--run", str(run.pk), "--watch", "--interval", "0.01")
    assert f"run {run.pk}: done" in capsys.readouterr().out


def test_an_image_deleted_before_its_turn_is_failed_cleanly(project, images):
    run = services.start_run(project, "auto", enqueue=False)
    item = GenerationItem.objects.get(run=run, image=images[0])
    Image.objects.filter(pk=images[0].pk).delete()  # cascades to the item: nothing left to do
    assert services.process_item(item.pk, "w") == "skipped"


def test_images_ingested_during_the_semi_stage_join_one_prefill_run(
    project, images, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        first = services.set_stage(project, "semi_automatic")
    assert first.total == 5
    uploads = [SimpleUploadedFile(f"late{seed}.png", shapes_png(seed)) for seed in (10, 11)]
    with django_capture_on_commit_callbacks(execute=True):
        late = ingest_files(project, uploads, None).created
    inbox = GenerationRun.objects.get(project=project, filter=services.INBOX_FILTER)
    assert inbox.mode == "semi" and inbox.total == 2
    assert set(inbox.items.values_list("image_id", flat=True)) == {img.pk for img in late}
    for seed, image in zip((10, 11), late):
        assert Mask.objects.filter(
            image=image, source="semi", status="proposed"
        ).count() == expected_mask_count(seed)
    assert services.prefill_new_images(project.pk, [late[0].pk]) is None  # already pre-filled
