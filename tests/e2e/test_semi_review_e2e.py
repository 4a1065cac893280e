"""Reviewing a semi-automatic pre-fill in a real Chromium: the image's three proposals are
highlighted and the first is selected on opening; the annotator keeps one with one key, rejects one
with X and fixes one (M, eraser, A). The database and the pre-fill report API then say kept 1,
fixed 1, rejected 1, with the decisions' time and clicks recorded like other masks."""

from __future__ import annotations

import numpy as np
import pytest

from annotator.masks.models import Mask
from engine.masks import decode_rle
from tests.annotator.annotation_fixtures import add_picture, need_classic
from tests.e2e.conftest import login
from tests.e2e.test_annotate_e2e import drag, page_artifact, shown_mask
from tests.integration.pipeline_support import shapes_png

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

W, H = 320, 240
SEED = 1  # shapes_png(1) has three bright rectangles: three proposals


@pytest.fixture
def prefilled(django_user_model, settings):
    """A project moved to the semi-automatic stage: the generate task (eager) stored the cheap
    generator's three masks on the image as proposed, source semi, with their pre-fill origin."""
    need_classic()
    from annotator.projects.services import add_member, create_label, create_project
    from annotator.stages import generation, services
    from annotator.training.models import ModelVersion

    settings.MASKMILL_MASK_GENERATOR = "tests.integration.pipeline_support.components_generator"
    generation.forget_generators()
    manager = django_user_model.objects.create_user(username="boss", password="boss-pw-123456")
    annotator = django_user_model.objects.create_user(username="ann", password="ann-pw-123456")
    project = create_project(name="Boxes", creator=manager)
    add_member(project, user=annotator, role="annotator")
    create_label(project, name="box", color="#00c853")
    create_label(project, name="other", color="#2962ff")
    image = add_picture(project, shapes_png(SEED, W, H), name="shapes.png")
    # A run records the model version it used; the cheap generator never loads it.
    project.active_model_version = ModelVersion.objects.create(family="custom", config={}, name="tiny")
    project.save()
    services.set_stage(project, "semi_automatic", user=manager)
    # The page's own clicks use the classic segmenter (no checkpoint to load in this test).
    project.active_model_version = None
    project.save()
    yield {"project": project, "annotator": annotator, "image": image}
    generation.forget_generators()


def reading_order(masks: list[Mask]) -> list[Mask]:
    """The page's walk: top to bottom, then left to right (frontend/js/proposals.js)."""
    return sorted(masks, key=lambda m: (m.bbox[1], m.bbox[0], m.pk))


def selected(page) -> dict | None:
    return page.evaluate("window.maskmill.selected()")


def wait_selected(page, mask_id: int) -> None:
    page.wait_for_function(f"() => window.maskmill.selected()?.id === {mask_id}")


def test_keep_reject_and_fix_proposals_with_one_key_each(context, server, prefilled):
    image = prefilled["image"]
    proposals = reading_order(list(Mask.objects.filter(image=image)))
    assert [(m.source, m.status) for m in proposals] == [("semi", "proposed")] * 3
    kept, rejected, fixed = proposals
    original = {m.pk: m.segmentation for m in proposals}

    page = login(context, server, prefilled["annotator"])
    page.goto(f"/images/{image.pk}/annotate/")
    page.wait_for_selector("body[data-ready='true']")

    # Highlighted, counted, and the first one selected at once.
    assert selected(page) == {"id": kept.pk, "status": "proposed", "proposed": True}
    assert page.inner_text("[data-testid='proposal-count']") == "3 proposals left on this image"
    assert page.locator(".mask-item.proposed").count() == 3
    item = page.locator(f"[data-testid='mask-item'][data-mask-id='{kept.pk}']")
    assert "selected" in item.get_attribute("class")
    assert item.locator("[data-testid='mask-status']").inner_text() == "proposed"
    page.keyboard.press("k")  # previous wraps round to the last one, next comes back
    wait_selected(page, fixed.pk)
    page.keyboard.press("j")
    wait_selected(page, kept.pk)
    page.screenshot(path=str(page_artifact("semi-review-proposals")), full_page=True)

    # Keep: one key accepts it as it is with label 1, and the selection moves on.
    page.keyboard.press("1")
    wait_selected(page, rejected.pk)
    assert page.inner_text("[data-testid='proposal-count']") == "2 proposals left on this image"

    # Reject with X: on to the last proposal.
    page.keyboard.press("x")
    wait_selected(page, fixed.pk)

    # Fix: load it into the editor, erase a strip off its top, accept with A (label: the last used).
    page.keyboard.press("m")
    page.wait_for_function(f"() => window.maskmill.draft().baseMaskId === {fixed.pk}")
    assert np.array_equal(shown_mask(page), decode_rle(fixed.segmentation))
    page.keyboard.press("e")
    x, y, w, _ = (int(v) for v in fixed.bbox)
    drag(page, (x - 8, y + 2), (x + w + 8, y + 2))
    page.wait_for_function("() => window.maskmill.draft().edited")
    edited = shown_mask(page)
    assert edited.sum() < decode_rle(fixed.segmentation).sum() and not edited[y, x + w // 2]
    page.keyboard.press("a")
    page.wait_for_function(
        "() => window.maskmill.proposalsLeft() === 0 && window.maskmill.pendingSaves().length === 0"
    )
    assert selected(page) is None
    assert page.inner_text("[data-testid='proposal-count']") == "All proposals on this image reviewed"

    stored = {m.pk: m for m in Mask.objects.filter(image=image)}
    assert [stored[m.pk].status for m in proposals] == ["accepted", "rejected", "accepted"]
    assert stored[kept.pk].segmentation == original[kept.pk]
    assert stored[fixed.pk].segmentation != original[fixed.pk]
    assert np.array_equal(decode_rle(stored[fixed.pk].segmentation), edited)
    box = prefilled["project"].labels.get(name="box")
    assert stored[kept.pk].label == box and stored[fixed.pk].label == box
    assert {m.annotator for m in stored.values()} == {prefilled["annotator"]}
    for mask in stored.values():  # each decision's time and clicks, like any saved mask
        assert mask.seconds is not None and mask.seconds >= 0
    assert (stored[kept.pk].clicks, stored[rejected.pk].clicks) == (0, 0)
    assert stored[fixed.pk].clicks == 1  # one eraser stroke

    report = page.request.get(f"/api/images/{image.pk}/prefill-report")
    assert report.ok, report.text()
    assert report.json() == {
        "image": image.pk, "prefilled": 3, "kept": 1, "fixed": 1, "rejected": 1, "pending": 0, "added": 0,
    }  # fmt: skip
    rows = {m.pk: page.locator(f"[data-testid='mask-item'][data-mask-id='{m.pk}']") for m in proposals}
    assert rows[rejected.pk].get_attribute("data-status") == "rejected"
    assert rows[kept.pk].locator("[data-testid='mask-author']").inner_text() == "ann"
    page.keyboard.press("?")  # the help overlay lists the review keys
    keys = page.inner_text("[data-testid='help-list']")
    assert "next proposed mask" in keys and "Accept the selected proposed mask as it is" in keys
    page.keyboard.press("Escape")
