"""The annotation workflow in a real Chromium: log in, open the next image, click/box/negative
click, cycle candidates, brush and eraser, undo/redo, shortcuts, accept with a label (the stored RLE
is the mask that was shown), two annotators, review and rework, the lease heartbeat; one run with a
tiny SAM model."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from annotator.masks.models import Mask
from engine.masks import decode_rle
from tests.annotator.annotation_fixtures import add_picture, disk_mask, iou, need_classic
from tests.e2e.conftest import login

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

W, H = 320, 240
LEFT, RIGHT = ((100, 120), 45), ((225, 120), 40)  # two red disks: (center, radius)


def picture(seed: int = 0) -> bytes:
    import io

    from PIL import Image as PILImage

    rng = np.random.default_rng(seed)
    pixels = rng.integers(20, 50, size=(H, W, 3), dtype=np.uint8)
    for center, radius in (LEFT, RIGHT):
        pixels[disk_mask(W, H, center, radius)] = (220, 40, 40)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def left_disk() -> np.ndarray:
    return disk_mask(W, H, *LEFT)


def right_disk() -> np.ndarray:
    return disk_mask(W, H, *RIGHT)


@pytest.fixture
def setup(django_user_model):
    """A project with two labels, two annotators, a reviewer and three images."""
    need_classic()  # the page's masks come from the classic segmenter unless a test configures SAM
    from annotator.projects.services import add_member, create_label, create_project

    manager = django_user_model.objects.create_user(username="boss", password="boss-pw-123456")
    annotator = django_user_model.objects.create_user(username="ann", password="ann-pw-123456")
    other = django_user_model.objects.create_user(username="bob", password="bob-pw-123456")
    reviewer = django_user_model.objects.create_user(username="rev", password="rev-pw-123456")
    project = create_project(name="Disks", creator=manager)
    for user, role in ((annotator, "annotator"), (other, "annotator"), (reviewer, "reviewer")):
        add_member(project, user=user, role=role)
    create_label(project, name="disk", color="#00c853")
    create_label(project, name="other", color="#2962ff")
    images = [add_picture(project, picture(seed), name=f"disks{seed}.png") for seed in range(3)]
    return {
        "project": project,
        "annotator": annotator,
        "other": other,
        "reviewer": reviewer,
        "images": images,
    }


# ----------------------------------------------------------------------------------- page helpers


def open_next(page, project) -> int:
    page.goto(f"/projects/{project.pk}/annotate/")
    page.wait_for_selector("body[data-ready='true']")
    return int(page.url.rstrip("/").split("/")[-2])


def client_point(page, x: float, y: float) -> tuple[float, float]:
    point = page.evaluate(f"window.maskmill.imageToClient({x}, {y})")
    return point["x"], point["y"]


def wait_answer(page, count: int | None = None) -> dict:
    page.wait_for_function(
        "() => { const d = window.maskmill.draft(); return !d.waiting && d.candidateCount > 0 }"
    )
    if count is not None:
        page.wait_for_function(f"() => window.maskmill.draft().candidateCount === {count}")
    return page.evaluate("window.maskmill.draft()")


def shown_mask(page) -> np.ndarray:
    rle = page.evaluate("window.maskmill.currentMaskRle()")
    assert rle is not None, "no mask is shown"
    return decode_rle(rle)


def click_image(page, x: float, y: float, button: str = "left") -> None:
    cx, cy = client_point(page, x, y)
    page.mouse.click(cx, cy, button=button)


def drag(page, start, end) -> None:
    page.mouse.move(*client_point(page, *start))
    page.mouse.down()
    page.mouse.move(*client_point(page, *end), steps=8)
    page.mouse.up()


def accept_with_first_label(page) -> None:
    page.keyboard.press("Enter")
    page.wait_for_selector("[data-testid='label-picker']:not([hidden])")
    page.keyboard.press("1")
    page.wait_for_function(
        "() => window.maskmill.pendingSaves().length === 0 && window.maskmill.masks().every(m => m.id)"
    )


# ------------------------------------------------------------------------------------------ tests


def test_login_click_accept_and_the_stored_rle_is_the_mask_shown(context, server, setup):
    page = context.new_page()
    page.goto("/accounts/login/")
    page.fill("input[name='username']", "ann")
    page.fill("input[name='password']", "ann-pw-123456")
    page.click("button[type='submit'], input[type='submit']")
    page.click("[data-testid='annotate-link']")
    page.wait_for_selector("body[data-ready='true']")
    assert "/annotate/" in page.url

    click_image(page, *LEFT[0])
    draft = wait_answer(page, count=3)
    assert page.evaluate("window.maskmill.fallback()") == "classic"
    assert page.is_visible("[data-testid='fallback-notice']")
    best = shown_mask(page)
    assert draft["candidateIndex"] == int(np.argmax(draft["scores"]))
    assert iou(best, left_disk()) > 0.6

    accept_with_first_label(page)
    (stored,) = Mask.objects.filter(image__project=setup["project"])
    assert np.array_equal(decode_rle(stored.segmentation), best)
    assert stored.label.name == "disk" and stored.status == "accepted" and stored.source == "manual"
    assert stored.clicks == 1 and stored.seconds is not None and stored.annotator == setup["annotator"]
    assert page.locator("[data-testid='mask-item']").count() == 1
    assert page.locator("[data-testid='mask-author']").inner_text() == "ann"
    page.reload()  # the list as the server sends it: who made the mask by name, not by id
    page.wait_for_selector("body[data-ready='true']")
    assert page.locator("[data-testid='mask-author']").inner_text() == "ann"


def test_box_then_negative_click_removes_a_region_and_candidates_cycle(context, server, setup):
    page = login(context, server, setup["annotator"])
    open_next(page, setup["project"])

    click_image(page, *LEFT[0])
    draft = wait_answer(page, count=3)
    first = draft["candidateIndex"]
    page.keyboard.press("Tab")
    page.wait_for_function(f"() => window.maskmill.draft().candidateIndex === {(first + 1) % 3}")
    page.keyboard.press("Shift+Tab")
    page.wait_for_function(f"() => window.maskmill.draft().candidateIndex === {first}")
    page.keyboard.press("Escape")  # discard: the box starts a new mask

    drag(page, (50, 70), (150, 170))  # a box around the left disk
    page.wait_for_function("() => window.maskmill.draft().box !== null")
    wait_answer(page)
    assert iou(shown_mask(page), left_disk()) > 0.8
    page.keyboard.press("Escape")

    click_image(page, *LEFT[0])
    wait_answer(page)
    click_image(page, *RIGHT[0])  # a second positive click adds the right disk
    page.wait_for_function("() => window.maskmill.draft().points.length === 2")
    wait_answer(page, count=1)
    both = shown_mask(page)
    assert both[right_disk()].mean() > 0.5 and both[left_disk()].mean() > 0.9

    click_image(page, 226, 121, button="right")  # a negative click inside the right disk
    page.wait_for_function("() => window.maskmill.draft().points.length === 3")
    wait_answer(page, count=1)
    refined = shown_mask(page)
    assert refined[right_disk()].mean() < both[right_disk()].mean() - 0.1
    assert refined[left_disk()].mean() > 0.9
    assert [p["label"] for p in page.evaluate("window.maskmill.draft().points")] == [1, 1, 0]


def test_brush_eraser_undo_redo_and_keyboard_shortcuts(context, server, setup):
    page = login(context, server, setup["annotator"])
    open_next(page, setup["project"])
    click_image(page, *LEFT[0])
    wait_answer(page)
    base = shown_mask(page).sum()

    page.keyboard.press("b")
    assert page.evaluate("window.maskmill.tool()") == "brush"
    drag(page, (20, 20), (60, 20))  # paint outside the object
    page.wait_for_function("() => window.maskmill.draft().edited")
    painted = shown_mask(page)
    assert painted.sum() > base and painted[20, 40]

    page.keyboard.press("e")
    assert page.evaluate("window.maskmill.tool()") == "eraser"
    drag(page, (80, 120), (120, 120))  # erase across the disk
    page.wait_for_function(f"() => window.maskmill.currentMaskRle() && {painted.sum()} > 0")
    erased = shown_mask(page)
    assert erased.sum() < painted.sum() and not erased[120, 100]

    page.keyboard.press("Control+z")
    page.wait_for_function("() => window.maskmill.draft().canRedo")
    assert np.array_equal(shown_mask(page), painted)
    page.keyboard.press("Control+Shift+z")
    page.wait_for_function("() => !window.maskmill.draft().canRedo")
    assert np.array_equal(shown_mask(page), erased)

    radius = page.evaluate("window.maskmill.brushRadius()")
    page.keyboard.press("]")
    assert page.evaluate("window.maskmill.brushRadius()") > radius
    page.keyboard.press("v")
    assert page.evaluate("window.maskmill.tool()") == "prompt"
    page.keyboard.press("h")
    assert page.get_attribute("[data-testid='toggle-hidden']", "aria-pressed") == "true"
    page.keyboard.press("h")
    page.keyboard.press("?")
    page.wait_for_selector("[data-testid='help-overlay']:not([hidden])")
    assert page.locator("[data-testid='help-list'] tr").count() > 20
    page.keyboard.press("Escape")
    page.wait_for_selector("[data-testid='help-overlay']", state="hidden")

    accept_with_first_label(page)
    (stored,) = Mask.objects.filter(image__project=setup["project"])
    assert np.array_equal(decode_rle(stored.segmentation), erased)


def test_two_annotators_then_review_sends_the_image_back_with_the_note(browser, context, server, setup):
    project = setup["project"]
    page = login(context, server, setup["annotator"])
    first = open_next(page, project)
    other_context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=server.url)
    try:
        other_page = login(other_context, server, setup["other"])
        assert open_next(other_page, project) != first
        other_page.goto(f"/images/{first}/annotate/")
        assert other_page.is_visible("[data-testid='image-busy']")
    finally:
        other_context.close()

    click_image(page, *LEFT[0])
    wait_answer(page)
    accept_with_first_label(page)
    mask = Mask.objects.get(image_id=first)
    page.keyboard.press("n")  # done with this image → the next one in the queue
    page.wait_for_url(lambda url: f"/images/{first}/" not in url)
    page.wait_for_selector("body[data-ready='true']")
    second = int(page.url.rstrip("/").split("/")[-2])

    review_context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=server.url)
    try:
        review = login(review_context, server, setup["reviewer"])
        review.goto(f"/projects/{project.pk}/review/")
        review.wait_for_selector(f"[data-mask-id='{mask.pk}']")
        review.wait_for_selector("body[data-review-ready='true']")
        item = review.locator(f"[data-mask-id='{mask.pk}']")
        item.locator("[data-testid='reject-note']").fill("the outline cuts off the bottom")
        item.locator("[data-testid='reject-mask']").click()
        review.wait_for_selector("[data-testid='review-messages']")
        review.screenshot(path=str(page_artifact("review-after-reject")), full_page=True)
    finally:
        review_context.close()
    mask.refresh_from_db()
    assert mask.status == "rejected"

    page.goto(f"/images/{second}/annotate/")
    page.wait_for_selector("body[data-ready='true']")
    page.locator("[data-testid='nav-next']").click()  # finishes the second image (a POST) and opens the next
    page.wait_for_url(f"**/images/{first}/annotate/")
    page.wait_for_selector("body[data-ready='true']")
    assert f"/images/{first}/annotate/" in page.url  # the rejected image comes back first
    note = page.locator("[data-testid='mask-note']")
    note.wait_for()
    assert "the outline cuts off the bottom" in note.inner_text()
    assert page.locator("[data-testid='mask-item']").get_attribute("data-status") == "rejected"


def test_the_open_page_keeps_its_lease_and_says_when_it_lost_it(context, server, setup, settings):
    from annotator.annotation import services
    from annotator.images.models import Image

    settings.MASKMILL_LEASE_SECONDS = 6  # the page renews every 2 s while its annotator is active
    project = setup["project"]
    page = login(context, server, setup["annotator"])
    image_id = open_next(page, project)
    taken = Image.objects.get(pk=image_id).lease_expires_at
    page.click("[data-testid='draft-info']")  # the annotator does something on the page
    page.wait_for_function("() => window.maskmill.lease().beats >= 1", timeout=10_000)
    assert Image.objects.get(pk=image_id).lease_expires_at > taken  # renewed by the page, not by a click
    assert page.evaluate("window.maskmill.lease().intervalMs") == 2000

    # The lease ran out anyway (say the laptop slept) and the queue gave the image to bob.
    Image.objects.filter(pk=image_id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert services.next_image(project, setup["other"]).pk == image_id
    page.click("[data-testid='draft-info']")
    page.wait_for_selector("body[data-lease='lost']", timeout=10_000)
    banner = page.locator("[data-testid='lease-lost']")
    assert banner.is_visible() and "bob is annotating this image now" in banner.inner_text()
    assert Image.objects.get(pk=image_id).leased_by == setup["other"]


def page_artifact(name: str):
    from tests.e2e.conftest import ARTIFACTS

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / f"{name}.png"


def test_tiny_sam_model_answers_clicks_in_the_browser(context, server, setup, settings, tmp_path):
    from annotator.training.services import forget_loaded_models
    from tests.annotator.annotation_fixtures import tiny_sam_checkpoint

    config, checkpoint = tiny_sam_checkpoint(tmp_path)
    settings.MASKMILL_MODEL_TYPE = "custom"
    settings.MASKMILL_MODEL_CONFIG = config
    settings.MASKMILL_CHECKPOINT = checkpoint
    forget_loaded_models()

    page = login(context, server, setup["annotator"])
    open_next(page, setup["project"])
    page.wait_for_function("() => !window.maskmill.preparing()")
    click_image(page, *LEFT[0])
    draft = wait_answer(page, count=3)
    assert page.evaluate("window.maskmill.fallback()") is None
    assert draft["logitsHandle"].startswith("lg-")
    assert shown_mask(page).shape == (H, W)
    click_image(page, *RIGHT[0])  # second round: sends the logits handle back
    refined = wait_answer(page, count=1)
    assert refined["logitsHandle"] != draft["logitsHandle"]
    page.keyboard.press("Control+z")  # back to the three candidates of the first click
    page.wait_for_function("() => window.maskmill.draft().candidateCount === 3")
    for _ in range(3):  # random weights: pick a candidate that is not empty
        if shown_mask(page).any():
            break
        page.keyboard.press("Tab")
    shown = shown_mask(page)
    if not shown.any():
        pytest.skip("every candidate of the random-weight model is empty for this click")
    accept_with_first_label(page)
    (stored,) = Mask.objects.filter(image__project=setup["project"])
    assert np.array_equal(decode_rle(stored.segmentation), shown)
    assert stored.model_version is not None and stored.model_version.family == "custom"
