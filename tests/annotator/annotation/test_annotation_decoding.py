"""Decoding from cached embeddings: equal to the official SamPredictor, the fast upsampling equal to
torch's postprocessing, the caches' bounds, and a missing embedding computed exactly once, whichever
path asks (the annotation page, the ingest's ``embed`` task)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from annotator.annotation import services
from annotator.annotation.interactive import (
    DecodeState,
    LruCache,
    Prompts,
    decode_low_res,
    decode_state_for,
    masks_from_low_res,
)
from annotator.annotation.lowres import mask_to_low_res_logits, upsample_masks, upsample_masks_rle
from annotator.images.embeddings import EmbeddingInProgress, ensure_embedding
from annotator.images.models import EmbeddingClaim
from annotator.images.tasks import embed
from engine.transforms import preprocess_shape
from tests.annotator.annotation_fixtures import add_picture, disk_mask, disk_picture, iou, tiny_sam  # noqa: F401


def torch_postprocess(low_res: np.ndarray, input_size, original_size, square: int = 1024) -> np.ndarray:
    """SAM's postprocess_masks, written out with torch as the independent reference."""
    logits = torch.from_numpy(low_res)[None]
    logits = F.interpolate(logits, (square, square), mode="bilinear", align_corners=False)
    logits = logits[..., : input_size[0], : input_size[1]]
    return F.interpolate(logits, tuple(original_size), mode="bilinear", align_corners=False)[0].numpy()


@pytest.mark.parametrize("size", [(768, 1024), (1024, 768), (48, 64), (333, 517), (1, 9), (1500, 2000)])
@pytest.mark.parametrize("channels", [1, 3])
def test_upsampling_equals_torch_postprocessing(size, channels):
    rng = np.random.default_rng(size[0] * 7 + channels)
    smooth = F.avg_pool2d(
        torch.from_numpy(rng.normal(size=(channels, 256, 256)).astype(np.float32))[None], 9, 1, 4
    )
    low_res = (smooth[0].numpy() * 30 - 0.5).astype(np.float32)
    input_size = preprocess_shape(*size, 1024)
    ours = upsample_masks(low_res, input_size, size)
    reference = torch_postprocess(low_res, input_size, size)
    assert ours.shape == (channels, *size) and ours.dtype == bool
    differ = ours != (reference > 0)
    assert 0.05 < ours.mean() < 0.95  # both classes present: the comparison means something
    assert np.abs(reference[differ]).max(initial=0) < 1e-4  # only float rounding right at 0


@pytest.mark.parametrize("size", [(768, 1024), (1024, 768), (333, 517), (1, 9), (600, 800)])
@pytest.mark.parametrize("channels", [1, 3])
def test_rle_upsampling_equals_the_masks_encoded(size, channels):
    """The column-major shortcut gives the RLEs of ``upsample_masks``' masks."""
    from engine.masks import decode_rle

    rng = np.random.default_rng(size[1])
    noise = torch.from_numpy(rng.normal(size=(channels, 256, 256)).astype(np.float32))[None]
    low_res = (F.avg_pool2d(noise, 9, 1, 4)[0].numpy() * 30 - 0.5).astype(np.float32)
    input_size = preprocess_shape(*size, 1024)
    masks = upsample_masks(low_res, input_size, size)
    rles = upsample_masks_rle(low_res, input_size, size)
    assert [r["size"] for r in rles] == [list(size)] * channels
    decoded = np.stack([decode_rle(r) for r in rles])
    reference = torch_postprocess(low_res, input_size, size)
    differ = decoded != masks
    assert np.abs(reference[differ]).max(initial=0) < 1e-4  # only float rounding right at 0
    assert differ.mean() < 1e-4


def test_upsampling_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(C, n, n\)"):
        upsample_masks(np.zeros((3, 256, 128), np.float32), (512, 1024), (48, 64))
    with pytest.raises(ValueError, match="does not fit"):
        upsample_masks(np.zeros((1, 256, 256), np.float32), (2048, 10), (48, 64))
    with pytest.raises(ValueError, match=r"\(C, n, n\)"):
        upsample_masks_rle(np.zeros((256, 256), np.float32), (512, 1024), (48, 64))


def test_a_stored_mask_as_prompt_comes_back_as_itself():
    mask = disk_mask(640, 480, center=(300, 200), radius=120)
    logits = mask_to_low_res_logits(mask)
    assert logits.shape == (1, 256, 256)
    assert iou(upsample_masks(logits, preprocess_shape(480, 640, 1024), (480, 640))[0], mask) > 0.97


def test_lru_cache_bounds_and_single_flight():
    cache: LruCache[int, bytes] = LruCache(max_items=3, max_bytes=10, size_of=len)
    for key, value in enumerate([b"aaaa", b"bbbb", b"cc"]):
        cache.put(key, value)
    assert len(cache) == 3 and cache.nbytes == 10
    cache.put(3, b"dddd")  # over 10 bytes: the oldest goes
    assert cache.get(0) is None and cache.nbytes == 10
    cache.put(4, b"e")  # over 3 items
    assert len(cache) == 3

    calls, gate = [], threading.Event()

    def slow_factory() -> bytes:
        calls.append(1)
        gate.wait(5)
        return b"x"

    results: list[bytes | None] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get_or_create(99, slow_factory)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join(10)
    assert results == [b"x"] * 8 and len(calls) == 1


def _load_official_pair(config: dict, seed: int = 0):
    from engine.predictor import Predictor
    from engine.sam import build_sam
    from tests.reference import reference
    from tests.reference_models import official_sam

    official = official_sam(config, seed=seed)
    ours = build_sam("custom", config=config)
    ours.load_state_dict(official.state_dict())
    ours.eval()
    sam_predictor = reference("segment_anything").SamPredictor(official)
    return ours, Predictor(ours), sam_predictor


@pytest.mark.reference
@pytest.mark.parametrize("prepared", [True, False], ids=["prepared", "plain"])
def test_decoding_a_cached_embedding_equals_the_official_predictor(prepared):
    """Both states the web cache can hold: the prepared image side (engine.sam models) and the
    plain embedding (any other model)."""
    from tests.reference_models import SMALL_CONFIG

    model, predictor, official = _load_official_pair(SMALL_CONFIG)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(150, 200, 3), dtype=np.uint8)
    official.set_image(image)
    predictor.set_image(image)
    features = predictor.get_image_embedding()
    if prepared:
        state = decode_state_for(model, features, (150, 200), predictor.input_size)
        assert state.prepared is not None and state.features is None
    else:
        state = DecodeState(features=features, original_size=(150, 200), input_size=predictor.input_size)
    cases = [
        Prompts(np.array([[100.0, 70.0]]), np.array([1]), None, None, None, True),
        Prompts(np.array([[100.0, 70.0], [20.0, 30.0]]), np.array([1, 0]), np.array([40.0, 30, 160, 120]),
                None, None, False),
        Prompts(None, None, np.array([10.0, 10, 190, 140]), None, None, True),
    ]  # fmt: skip
    previous = None
    for prompts in cases:
        low_res, scores = decode_low_res(model, state, prompts, previous)
        masks = masks_from_low_res(model, state, low_res)
        want_masks, want_scores, want_low = official.predict(
            point_coords=prompts.points,
            point_labels=prompts.labels,
            box=prompts.box,
            mask_input=previous,
            multimask_output=prompts.multimask,
            return_logits=True,
        )
        np.testing.assert_allclose(scores, want_scores, atol=1e-4)
        np.testing.assert_allclose(low_res, want_low, atol=1e-3)
        differ = masks != (want_masks > 0)
        assert np.abs(want_masks[differ]).max(initial=0) < 1e-2
        previous = low_res[int(np.argmax(scores))][None]


@pytest.mark.django_db(transaction=True)
def test_a_missing_embedding_is_computed_once_for_simultaneous_requests(tiny_sam, project, users):  # noqa: F811
    from annotator.images.models import Embedding
    from annotator.training.services import model_version_for, predictor_for

    image = add_picture(project, disk_picture())
    Embedding.objects.filter(image=image).delete()  # ingest's embed task ran (eagerly): start without
    model = predictor_for(model_version_for(project)).model
    encoder_runs = []
    hook = model.image_encoder.register_forward_hook(lambda *args: encoder_runs.append(1))
    try:
        answers: list[str] = []

        def ask(kind: str) -> None:
            from django.db import connection

            barrier.wait(10)
            if kind == "prepare":
                answers.append(services.prepare(image))
            elif kind == "predict":
                body = {"points": [[80, 60]], "labels": [1]}
                answers.append(services.predict(image, users["annotator"], body).get("state", "masks"))
            else:  # the images app's embed task (ingest, prefetch), run in this thread
                embed.apply(args=(image.pk,)).get()
            connection.close()

        kinds = ["prepare", "predict", "embed"] * 2
        barrier = threading.Barrier(len(kinds))
        threads = [threading.Thread(target=ask, args=(kind,)) for kind in kinds]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert set(answers) <= {"ready", "preparing", "masks"}
        for _ in range(600):  # bounded wait for the encoder thread
            if services.prepare(image) == "ready":
                break
            threading.Event().wait(0.05)
        assert services.prepare(image) == "ready"
        answer = services.predict(image, users["annotator"], {"points": [[80, 60]], "labels": [1]})
        assert len(answer["masks"]) == 3 and answer["fallback"] is False
        assert len(encoder_runs) == 1
        assert Embedding.objects.filter(image=image).count() == 1
        assert not EmbeddingClaim.objects.exists()  # released after computing
    finally:
        hook.remove()


@pytest.mark.django_db(transaction=True)
def test_a_claim_held_elsewhere_stops_a_second_computation(tiny_sam, project):  # noqa: F811
    from datetime import timedelta

    from django.utils import timezone

    from annotator.images.models import Embedding
    from annotator.training.services import model_version_for

    image = add_picture(project, disk_picture())
    Embedding.objects.filter(image=image).delete()  # ingest's embed task ran (eagerly): start without
    version = model_version_for(project)
    EmbeddingClaim.objects.create(
        image=image,
        model_version=version,
        owner="other-host:1:1",
        expires_at=timezone.now() + timedelta(minutes=5),
    )
    with pytest.raises(EmbeddingInProgress, match="being computed by other-host:1:1"):
        ensure_embedding(image.pk, version.pk)
    assert embed.delay(image.pk).get() is None  # the ingest's task path respects the claim too
    assert not Embedding.objects.filter(image=image).exists()
    EmbeddingClaim.objects.update(expires_at=timezone.now() - timedelta(seconds=1))  # that process died
    assert embed.delay(image.pk).get() == Embedding.objects.get(image=image).pk  # taken over
    assert not EmbeddingClaim.objects.exists()
    assert ensure_embedding(image.pk, version.pk) is not None
    assert Embedding.objects.filter(image=image).count() == 1


@pytest.mark.django_db
def test_opening_an_image_prefetches_the_next_ones_in_the_queue(
    tiny_sam,  # noqa: F811
    project,
    users,
    django_capture_on_commit_callbacks,
):
    from annotator.images.models import Embedding

    images = [add_picture(project, disk_picture(seed=i), name=f"q{i}.png") for i in range(4)]
    assert not Embedding.objects.exists()  # ingest's embed tasks wait for a commit that never comes here
    current = services.next_image(project, users["annotator"])
    with django_capture_on_commit_callbacks(execute=True):
        queued = services.prefetch_queue(current, users["annotator"], count=2)
    assert queued == [images[1].pk, images[2].pk]
    assert set(Embedding.objects.values_list("image_id", flat=True)) == {images[1].pk, images[2].pk}
    assert services.prefetch_queue(current, users["annotator"], count=2) == []  # already there
    assert services.prepare(images[1]) == "ready"  # loaded from storage, nothing computed
