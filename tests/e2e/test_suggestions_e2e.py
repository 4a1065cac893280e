"""Label suggestions in a real Chromium: a project whose label head is trained shows the top labels
of the selected proposal, Enter accepts it with the pre-selected label in one key (recorded as a kept
suggestion), and the list says so; a word that is not a label is refused by "find"."""

from __future__ import annotations

import numpy as np
import pytest

from annotator.images.models import Split
from annotator.masks.models import Mask, MaskStatus
from tests.annotator.suggestions.test_suggestions import add_scenes
from tests.e2e.conftest import login
from tests.label_data import NAMES

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def labelled(django_user_model, settings):
    from annotator.projects.services import add_member, create_label, create_project
    from annotator.suggestions.services import train_head

    settings.MASKMILL_LABEL_RETRAIN_EVERY = 0
    manager = django_user_model.objects.create_user(username="boss", password="boss-pw-123456")
    annotator = django_user_model.objects.create_user(username="ann", password="ann-pw-123456")
    project = create_project(name="Fruit", creator=manager)
    add_member(project, user=annotator, role="annotator")
    labels = {key: create_label(project, name=name) for key, name in NAMES.items()}
    add_scenes(project, labels, 8, seed=21, split=Split.TRAIN)
    head = train_head(project)
    assert head.status == "active"
    proposals = add_scenes(project, labels, 1, seed=22, split=Split.TEST, status=MaskStatus.PROPOSED)
    return {"project": project, "annotator": annotator, "image": proposals[0].image, "labels": labels}


def test_enter_accepts_a_proposal_with_its_suggested_label(context, server, labelled):
    image = labelled["image"]
    page = login(context, server, labelled["annotator"])
    page.goto(f"/images/{image.pk}/annotate/")
    page.wait_for_selector("body[data-ready='true']")
    page.wait_for_selector("[data-testid='suggestion']")
    chips = page.locator("[data-testid='suggestion']")
    assert chips.count() == 3
    selected_id = page.evaluate("window.maskmill.selected().id")
    top_name = chips.first.inner_text().rsplit(" ", 2)[0]
    preselected = page.locator(".chip.preselected")
    page.locator("[data-testid='canvas']").focus()
    assert preselected.count() == 1  # distinct classes: the head is confident
    page.keyboard.press("Enter")
    page.wait_for_function(
        f"() => document.querySelector('[data-mask-id=\"{selected_id}\"] [data-testid=mask-suggestion]')"
        "?.textContent.includes('kept')"
    )
    page.wait_for_function(
        "() => document.querySelector('[data-testid=pending-indicator]').dataset.state === 'saved'"
    )
    mask = Mask.objects.get(pk=selected_id)
    assert mask.status == "accepted" and mask.label.name == top_name
    assert mask.suggested_label_id == mask.label_id and 0 < mask.suggestion_probability <= 1
    # The next proposal is selected; with no confident suggestion, Enter would open the picker
    # with the top suggestion highlighted (label_picker.open's preferredId).
    page.fill("[data-testid='find-label']", "a red car")
    page.click("[data-testid='find-button']")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=find-result]').textContent.includes('not a label')"
    )


def test_a_click_shows_suggestions_and_enter_saves_mask_and_label(context, server, labelled):
    """A new mask made with one click: the answer's suggestions appear as chips, and Enter saves the
    mask with the pre-selected label (or, when unsure, opens the picker on it)."""
    from tests.e2e.test_annotate_e2e import click_image
    from tests.label_data import synthetic_scene_masks

    image = labelled["image"]
    Mask.objects.filter(image=image).delete()  # no proposals: the click is the only mask
    _pixels, region, key = max(synthetic_scene_masks(1, seed=22), key=lambda s: s[1].sum())
    ys, xs = np.nonzero(region)
    i = int(np.argmin((xs - np.median(xs)) ** 2 + (ys - np.median(ys)) ** 2))
    page = login(context, server, labelled["annotator"])
    page.goto(f"/images/{image.pk}/annotate/")
    page.wait_for_selector("body[data-ready='true']")
    click_image(page, float(xs[i]), float(ys[i]))
    page.wait_for_selector("[data-testid='suggestion']")
    page.locator("[data-testid='canvas']").focus()
    preselected = page.locator(".chip.preselected").count() == 1
    if preselected:
        page.keyboard.press("Enter")
    else:
        page.keyboard.press("Enter")
        page.wait_for_selector("[data-testid='label-picker']:not([hidden])")
        page.keyboard.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=pending-indicator]').dataset.state === 'saved'"
    )
    mask = Mask.objects.get(image=image)
    assert mask.status == "accepted" and mask.source == "manual" and mask.label is not None
    if preselected:  # one key: mask and the clicked object's label, recorded as a kept suggestion
        assert mask.label.name == NAMES[key] and mask.suggested_label_id == mask.label_id
        page.wait_for_function(
            "() => document.querySelector('[data-testid=mask-suggestion]')?.textContent.includes('kept')"
        )
