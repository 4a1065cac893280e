"""The first upscaling layer pushed through the transformer's low-rank image updates
(``engine.sam.folded_upscaling``) against the layer applied to the transformer's output tokens."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from engine.automatic import decoding
from engine.sam import build_sam, prepared
from engine.sam.folded_upscaling import FoldedFirstUpscale
from tests.reference_models import SMALL_CONFIG


def model_with_depth(depth: int) -> nn.Module:
    torch.manual_seed(depth)
    model = build_sam("custom", config={**SMALL_CONFIG, "decoder_depth": depth}).eval()
    with torch.no_grad():
        for layer in model.mask_decoder.transformer.layers:  # affine norms that matter
            layer.norm4.weight.uniform_(0.5, 1.5)
            layer.norm4.bias.normal_(0, 0.5)
        model.mask_decoder.output_upscaling[0].bias.normal_(0, 0.5)
    return model


def decoded(model: nn.Module, prompts: int = 5):
    """Run the prepared transformer for ``prompts`` single-point prompts with a record."""
    features = torch.randn(1, 64, 16, 16)
    coords = torch.rand(prompts, 1, 2) * 256
    sparse, _ = model.prompt_encoder(
        points=(coords, torch.ones(prompts, 1, dtype=torch.int)), boxes=None, masks=None
    )
    decoder = model.mask_decoder
    ready = prepared.prepare_image(model, features)
    tokens = decoder.output_tokens(sparse)
    record: list = []
    _, image_tokens = prepared.run_transformer(model, ready, tokens, rows=[0, 2, 3, 4], record=record)
    return ready, image_tokens, record


def plain_first_layer(model: nn.Module, image_tokens: torch.Tensor) -> torch.Tensor:
    conv = model.mask_decoder.output_upscaling[0]
    weight = conv.weight.permute(0, 2, 3, 1).reshape(conv.in_channels, -1).double()
    flat = image_tokens.reshape(-1, image_tokens.shape[-1]).double()
    return flat @ weight + conv.bias.repeat(4).double()


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_folded_first_layer_equals_the_layer_on_the_output_tokens(depth):
    model = model_with_depth(depth)
    with torch.inference_mode():
        ready, image_tokens, record = decoded(model)
        assert len(record) == depth
        first = FoldedFirstUpscale(model, ready.tokens).bind(record)
        expected = plain_first_layer(model, image_tokens)
        n = image_tokens.shape[0]
        got = torch.cat([first(0, 2), first(2, n - 2)])
    assert got.shape == expected.shape
    scale = expected.abs().max().item()
    assert (got.double() - expected).abs().max().item() <= 1e-5 * scale


def test_folded_first_layer_for_a_subset_of_prompts():
    model = model_with_depth(2)
    with torch.inference_mode():
        ready, image_tokens, record = decoded(model)
        rows = torch.tensor([1, 4])
        first = FoldedFirstUpscale(model, ready.tokens).bind(record, rows)
        got = first(0, 2)
        expected = plain_first_layer(model, image_tokens[rows])
    assert (got.double() - expected).abs().max().item() <= 1e-5 * expected.abs().max().item()


def test_an_incomplete_record_is_refused_and_other_norms_do_not_apply():
    model = model_with_depth(2)
    with torch.inference_mode():
        ready, _, record = decoded(model)
        folded = FoldedFirstUpscale(model, ready.tokens)
        assert folded.bind(record[:1]) is None
        assert folded.bind([record[0], None]) is None
    assert FoldedFirstUpscale.applies(model)
    model.mask_decoder.transformer.layers[1].norm4 = nn.Identity()
    assert not FoldedFirstUpscale.applies(model)


@pytest.mark.parametrize("pred_iou_thresh", [0.0, "median"])
def test_automatic_decoding_gives_the_same_masks_folded_or_not(monkeypatch, pred_iou_thresh):
    model = model_with_depth(2)
    features = torch.randn(1, 64, 16, 16)
    coords = torch.rand(9, 2) * 256
    with torch.inference_mode():
        labels = torch.ones(9, 1, dtype=torch.int)
        sparse, dense = model.prompt_encoder(points=(coords[:, None], labels), boxes=None, masks=None)
        pe = model.prompt_encoder.get_dense_pe()
        plain = decoding._decode_shared(model, features, pe, sparse, dense, 0.0)
        threshold = float(plain[1].max(dim=1).values.median()) if pred_iou_thresh == "median" else 0.0
        plain = decoding._decode_shared(model, features, pe, sparse, dense, threshold)
        calls = []
        bind = FoldedFirstUpscale.bind
        monkeypatch.setattr(FoldedFirstUpscale, "bind", lambda self, *a: calls.append(1) or bind(self, *a))
        folded = decoding._decode_shared(model, features, pe, sparse, dense, threshold)
        assert calls  # the folded layer did run
        monkeypatch.setattr(FoldedFirstUpscale, "applies", staticmethod(lambda model: False))
        unfolded = decoding._decode_shared(model, features, pe, sparse, dense, threshold)
    torch.testing.assert_close(unfolded[0], plain[0])
    assert folded[2].tolist() == plain[2].tolist()
    assert 0 < len(folded[2]) <= 9
    torch.testing.assert_close(folded[0], plain[0], rtol=1e-4, atol=1e-4 * plain[0].abs().max().item())


def test_one_embeddings_image_side_is_made_once_for_its_batches(monkeypatch):
    """The generator decodes a crop's embedding in many batches: the projections and the folded
    layer's per-image product are made once, and again when the embedding or the weights change."""
    model = model_with_depth(2)
    made = []
    prepare = prepared.prepare_image
    monkeypatch.setattr(prepared, "prepare_image", lambda *a: made.append("side") or prepare(*a))
    init = FoldedFirstUpscale.__init__
    monkeypatch.setattr(
        FoldedFirstUpscale, "__init__", lambda self, *a: made.append("fold") or init(self, *a)
    )
    features = torch.randn(1, 64, 16, 16)
    coords = torch.rand(4, 1, 2) * 256
    with torch.no_grad():
        sparse, dense = model.prompt_encoder(
            points=(coords, torch.ones(4, 1, dtype=torch.int)), boxes=None, masks=None
        )
        pe = model.prompt_encoder.get_dense_pe()

        def decode(embedding):
            return decoding._decode_shared(model, embedding, pe, sparse, dense, 0.0)[0]

        first = decode(features)
        torch.testing.assert_close(decode(features), first, rtol=0, atol=0)
        assert made == ["side", "fold"]
        features.mul_(2.0)  # changed in place: made again, and the answer follows
        changed = decode(features)
        assert made == ["side", "fold"] * 2 and not torch.equal(changed, first)
        decode(features.clone())  # another tensor
        assert made == ["side", "fold"] * 3
        model.mask_decoder.output_upscaling[0].bias.add_(1.0)  # other weights
        decode(features)
        assert made == ["side", "fold"] * 4
    with torch.inference_mode():
        inference_features = torch.randn(1, 64, 16, 16)  # no version counter: made every time
        decode(inference_features)
        decode(inference_features)
    assert made == ["side", "fold"] * 6


def test_a_record_with_mask_prompts_is_not_folded():
    """Mask prompts give each prompt its own starting image tokens: folding from the image's
    would be wrong, so the record says it cannot be used."""
    model = model_with_depth(2)
    with torch.inference_mode():
        ready, _, _ = decoded(model)
        coords = torch.rand(2, 1, 2) * 256
        sparse, _ = model.prompt_encoder(
            points=(coords, torch.ones(2, 1, dtype=torch.int)), boxes=None, masks=None
        )
        record: list = []
        masks = torch.randn(2, 1, 64, 64)
        prepared.run_transformer(
            model, ready, model.mask_decoder.output_tokens(sparse), [0, 2], masks, record
        )
        assert len(record) == 2 and record[0] is None
        assert FoldedFirstUpscale(model, ready.tokens).bind(record) is None


def test_no_prompts_or_none_passing_the_iou_filter_give_empty_answers():
    model = model_with_depth(2)
    features = torch.randn(1, 64, 16, 16)
    with torch.no_grad():
        low, ious, rows = decoding.decode_points(
            model, features, torch.rand(5, 2) * 256, pred_iou_thresh=10.0
        )
        assert low.shape == (0, 3, 64, 64) and ious.shape == (5, 3) and rows.numel() == 0
        low, ious, rows = decoding.decode_points(model, features, torch.zeros(0, 2))
        assert low.shape == (0, 3, 64, 64) and ious.shape == (0, 3) and rows.numel() == 0
