"""Masks from clients: RLE counts are checked with bounded work, refused with a reason when no
mask of the image's size could need them, and stored in their canonical encoding."""

from __future__ import annotations

import numpy as np
import pytest
from rest_framework.test import APIClient

from annotator.masks.models import Mask
from engine.masks import decode_rle, encode_rle
from engine.rle_runs import max_counts_length
from tests.conftest import add_image

pytestmark = pytest.mark.django_db
H, W = 48, 64


def square() -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[10:20, 5:30] = True
    return mask


def padded_counts() -> str:
    """The square's runs with zero-length runs inserted: adds up to h*w, decodes to the same mask."""
    flat = square().T.ravel()
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    from pycocotools import mask as mask_utils

    padded = [runs[0], 0, 0, *runs[1:]]
    return mask_utils.frPyObjects({"size": [H, W], "counts": padded}, H, W)["counts"].decode()


# segmentation → (status, a word of the reason or None)
BAD_RLES = {
    "too long": ({"size": [H, W], "counts": "1" * (max_counts_length(H, W) + 1)}, 400, "at most"),
    "10 MB of counts": ({"size": [H, W], "counts": "0" * 9_000_000}, 400, "at most"),
    "sum too small": ({"size": [H, W], "counts": encode_rle(square()[:, :32])["counts"]}, 400, "add up"),
    "unterminated number": ({"size": [H, W], "counts": "0" * 3 + "o"}, 400, "middle of a number"),
    "outside the alphabet": ({"size": [H, W], "counts": "ab~"}, 400, "alphabet"),
    "non-ascii": ({"size": [H, W], "counts": "ü"}, 400, "ascii"),
    "negative run": ({"size": [H, W], "counts": "0" * 3 + "b"}, 400, None),
    "huge number": ({"size": [H, W], "counts": "o" * 40 + "1"}, 400, "larger than the mask"),
    "list too long": ({"size": [H, W], "counts": [0] * (H * W + 2)}, 400, "at most"),
    "list with bool": ({"size": [H, W], "counts": [True, H * W - 1]}, 400, "integers"),
    "list huge value": ({"size": [H, W], "counts": [2**70]}, 400, "integers"),
    "size too big": ({"size": [2**40, 2**40], "counts": "0"}, 400, "does not match"),
    "size wrong type": ({"size": "48x64", "counts": "0"}, 400, "size"),
    "counts a number": ({"size": [H, W], "counts": 5}, 400, None),
    "not an object": ([1, 2, 3], 400, "object"),
    "extra keys": ({"size": [H, W], "counts": "0", "x": 1}, 400, "exactly"),
}


@pytest.fixture
def client(users) -> APIClient:
    client = APIClient()
    client.force_authenticate(users["annotator"])
    return client


@pytest.mark.parametrize("case", sorted(BAD_RLES))
def test_bad_rle_is_refused_with_a_reason(client, project, case):
    image = add_image(project, seed=1)
    segmentation, status, word = BAD_RLES[case]
    response = client.post(f"/api/images/{image.pk}/masks/", {"segmentation": segmentation}, format="json")
    assert response.status_code == status, response.content[:300]
    if word:
        assert word in str(response.json()).lower()
    assert not Mask.objects.exists()


def test_padded_rle_is_stored_canonically(client, project):
    image = add_image(project, seed=2)
    padded = padded_counts()
    canonical = encode_rle(square())["counts"]
    assert padded != canonical
    response = client.post(
        f"/api/images/{image.pk}/masks/", {"segmentation": {"size": [H, W], "counts": padded}}, format="json"
    )
    assert response.status_code == 201, response.content
    stored = Mask.objects.get()
    assert stored.segmentation == {"size": [H, W], "counts": canonical}
    np.testing.assert_array_equal(decode_rle(stored.segmentation), square())
    listed = client.get(f"/api/images/{image.pk}/masks/").json()
    assert listed[0]["segmentation"]["counts"] == canonical


def test_uncompressed_counts_with_zero_runs_are_stored_canonically(client, project):
    image = add_image(project, seed=3)
    flat = square().T.ravel()
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    response = client.post(
        f"/api/images/{image.pk}/masks/",
        {"segmentation": {"size": [H, W], "counts": [runs[0], 0, 0, *runs[1:], 0]}},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert Mask.objects.get().segmentation["counts"] == encode_rle(square())["counts"]
