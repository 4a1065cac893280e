"""The saved-mask side of the page in a real Chromium: a label found by typing, Alt+click selection,
editing a saved mask with the eraser (an update, not a new mask), a stale delete answered 409 and
discarded, delete with Del twice, and a save that waits through a reload while the server is down."""

from __future__ import annotations

import pytest
from django.db.models import F

from annotator.masks.models import Mask
from engine.masks import decode_rle
from tests.annotator.annotation_fixtures import iou
from tests.e2e import test_annotate_e2e as annotate
from tests.e2e.conftest import login
from tests.e2e.test_annotate_e2e import LEFT, RIGHT, click_image, client_point, drag, open_next, wait_answer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

setup = annotate.setup  # the same project (labels "disk", "other"), users and pictures of two disks
ALL_SAVED = "() => window.maskmill.pendingSaves().length === 0 && window.maskmill.masks().every(m => m.id)"


def selected_id(page) -> int | None:
    selected = page.evaluate("window.maskmill.selected()")
    return selected and selected["id"]


def test_edit_delete_and_conflicts_of_saved_masks(context, server, setup):
    page = login(context, server, setup["annotator"])
    open_next(page, setup["project"])

    click_image(page, *LEFT[0])
    wait_answer(page, count=3)
    page.keyboard.press("Enter")
    page.wait_for_selector("[data-testid='label-picker']:not([hidden])")
    page.keyboard.type("oth")  # search: only "other" is left, Enter takes it
    assert page.locator("[data-testid='label-option']").count() == 1
    page.keyboard.press("Enter")
    page.wait_for_function(ALL_SAVED)
    (mask,) = Mask.objects.filter(image__project=setup["project"])
    assert mask.label.name == "other" and iou(decode_rle(mask.segmentation), annotate.left_disk()) > 0.6
    area, version = mask.area, mask.version

    # Alt+click selects the mask under the pointer; M starts from it; the eraser cuts it in two.
    page.keyboard.down("Alt")
    page.mouse.click(*client_point(page, *LEFT[0]))
    page.keyboard.up("Alt")
    assert selected_id(page) == mask.pk
    page.keyboard.press("m")
    assert page.evaluate("window.maskmill.draft().baseMaskId") == mask.pk
    page.keyboard.press("e")
    (cx, cy), radius = LEFT
    drag(page, (cx - radius - 5, cy), (cx + radius + 5, cy))
    page.wait_for_function("() => window.maskmill.draft().edited")
    page.keyboard.press("Enter")  # the picker starts on the mask's own label
    page.wait_for_selector("[data-testid='label-picker']:not([hidden])")
    page.keyboard.press("Enter")
    page.wait_for_function(ALL_SAVED)
    assert Mask.objects.filter(image__project=setup["project"]).count() == 1, "an edit is not a new mask"
    mask.refresh_from_db()
    assert mask.area < area and mask.version > version and mask.label.name == "other"
    assert not decode_rle(mask.segmentation)[cy, cx], "the erased stroke is not in the stored mask"

    # Someone else changed it meanwhile: the delete is refused, said so, and can be let go.
    Mask.objects.filter(pk=mask.pk).update(version=F("version") + 1)
    page.click(f"[data-testid='mask-item'][data-mask-id='{mask.pk}']")
    assert selected_id(page) == mask.pk
    page.keyboard.press("Delete")
    assert page.locator("[data-testid='mask-item']").count() == 1, "one Del only asks"
    page.keyboard.press("Delete")
    page.wait_for_selector("[data-testid='conflict-notice']:not([hidden])")
    assert page.get_attribute("[data-testid='pending-indicator']", "data-state") == "conflict"
    page.click("[data-testid='conflict-discard']")
    page.wait_for_function("() => window.maskmill.pendingSaves().length === 0")
    assert page.is_hidden("[data-testid='conflict-notice']")
    assert Mask.objects.filter(pk=mask.pk).exists()

    # Reloaded, the page has the current version: Del twice deletes the mask on the server.
    page.reload()
    page.wait_for_selector("body[data-ready='true']")
    page.click(f"[data-testid='mask-item'][data-mask-id='{mask.pk}']")
    page.keyboard.press("Delete")
    page.keyboard.press("Delete")
    page.wait_for_function(
        "() => window.maskmill.pendingSaves().length === 0 && window.maskmill.masks().length === 0"
    )
    assert not Mask.objects.filter(pk=mask.pk).exists()
    assert page.inner_text("[data-testid='mask-count']") == "0"


def test_a_save_waits_through_a_reload_while_the_server_refuses_it(context, server, setup):
    page = login(context, server, setup["annotator"])
    open_next(page, setup["project"])

    def refuse_creates(route):
        if route.request.method == "POST":
            route.fulfill(status=503, content_type="application/json", body='{"detail": "down for a moment"}')
        else:
            route.continue_()

    page.route("**/api/images/*/masks/", refuse_creates)
    click_image(page, *RIGHT[0])
    wait_answer(page, count=3)
    page.keyboard.press("Enter")
    page.wait_for_selector("[data-testid='label-picker']:not([hidden])")
    page.keyboard.press("1")
    page.wait_for_function("() => window.maskmill.pendingSaves().some(op => op.attempts > 0)")
    assert page.get_attribute("[data-testid='pending-indicator']", "data-state") == "pending"

    page.reload()  # the queue lives in localStorage: the mask is still on the page, still waiting
    page.wait_for_selector("body[data-ready='true']")
    (waiting,) = page.evaluate("window.maskmill.masks()")
    assert waiting["id"] is None and waiting["pending"] is True
    assert page.inner_text("[data-testid='mask-author']") == "ann"
    assert not Mask.objects.filter(image__project=setup["project"]).exists()

    page.unroute("**/api/images/*/masks/")
    page.click("[data-testid='pending-indicator']")
    page.click("[data-testid='retry-saves']")
    page.wait_for_function(ALL_SAVED)
    (stored,) = Mask.objects.filter(image__project=setup["project"])
    assert stored.annotator == setup["annotator"] and stored.label.name == "disk"
    assert iou(decode_rle(stored.segmentation), annotate.right_disk()) > 0.6
    assert page.inner_text("[data-testid='mask-author']") == "ann"
