"""MobileSAM's TinyViT encoder (vit_t): same state dict as MobileSAM's published code, same outputs
on the same random weights, and the whole vit_t pipeline (build_sam + Predictor) against
MobileSAM's ``sam_model_registry["vit_t"]`` + ``SamPredictor``."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from engine.sam.tiny_vit import TinyViT
from tests.reference import reference
from tests.reference_models import randomize_

pytestmark = pytest.mark.reference

VIT_T_ENCODER = {
    "img_size": 1024,
    "in_chans": 3,
    "num_classes": 1000,
    "embed_dims": [64, 128, 160, 320],
    "depths": [2, 2, 6, 2],
    "num_heads": [2, 4, 5, 10],
    "window_sizes": [7, 7, 14, 7],
    "mlp_ratio": 4.0,
    "drop_rate": 0.0,
    "drop_path_rate": 0.0,
    "use_checkpoint": False,
    "mbconv_expand_ratio": 4.0,
    "local_conv_size": 3,
    "layer_lr_decay": 0.8,
}


@torch.no_grad()
def randomize_mobile_sam_(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Seeded random values for every parameter and buffer, BatchNorm variances kept positive,
    then eval(): MobileSAM caches its attention-bias table when switched to eval, so that has to
    come after the new values."""
    randomize_(model, seed)
    for name, buffer in model.named_buffers():
        if name.endswith("running_var"):
            buffer.abs_().add_(0.5)
    return model.eval()


@pytest.fixture(scope="module")
def encoders() -> tuple[TinyViT, torch.nn.Module]:
    tiny_vit_sam = reference("mobile_sam.modeling.tiny_vit_sam")
    official = randomize_mobile_sam_(tiny_vit_sam.TinyViT(**VIT_T_ENCODER), seed=3)
    ours = TinyViT().eval()
    ours.load_state_dict(official.state_dict())
    return ours, official


def test_state_dict_matches_mobile_sam_keys_and_shapes(encoders):
    _, official = encoders
    defaults = TinyViT()  # the constructor's defaults are MobileSAM's vit_t
    assert defaults.img_size == 1024
    ours_shapes = {k: tuple(v.shape) for k, v in defaults.state_dict().items()}
    official_shapes = {k: tuple(v.shape) for k, v in official.state_dict().items()}
    assert ours_shapes == official_shapes
    # The classifier head and the attention-bias tables are part of the checkpoint.
    assert "head.weight" in ours_shapes
    assert ours_shapes["layers.2.blocks.0.attn.attention_biases"] == (5, 196)


def test_encoder_output_equals_mobile_sam_on_random_images(encoders):
    ours, official = encoders
    images = torch.randn(2, 3, 1024, 1024, generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        expected = official(images)
        actual = ours(images)
    assert actual.shape == (2, 256, 64, 64)
    assert expected.abs().mean() > 0.1  # the random weights make a signal worth comparing
    torch.testing.assert_close(actual, expected, atol=1e-3, rtol=0)


def test_training_mode_uses_batch_statistics_and_backpropagates():
    """Eval folds BatchNorm into the convolutions; train mode must run real BatchNorm (batch
    statistics, running averages updated) and pass gradients to every kind of parameter. A small
    input size keeps this cheap (our encoder follows the input size; MobileSAM's needs 1024)."""
    model = TinyViT(img_size=128)
    randomize_mobile_sam_(model, seed=5)
    images = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        eval_out = model(images)
    running_mean = model.patch_embed.seq[0].bn.running_mean.clone()
    model.train()
    train_out = model(images)
    assert train_out.shape == eval_out.shape == (2, 256, 8, 8)
    assert not torch.allclose(train_out, eval_out, atol=1e-3)
    assert not torch.equal(model.patch_embed.seq[0].bn.running_mean, running_mean)
    train_out.pow(2).mean().backward()
    assert model.patch_embed.seq[0].bn.weight.grad.abs().sum() > 0
    assert model.layers[2].blocks[0].attn.attention_biases.grad.abs().sum() > 0
    assert model.neck[3].weight.grad.abs().sum() > 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_dynamic_int8_encoder_runs_and_agrees_with_fp32():
    """The fused linear+GELU fast path needs a real Linear weight; dynamically quantized Linears
    (engine.sam.with_precision "int8") must take the plain path."""
    from torch.ao.quantization import quantize_dynamic

    model = randomize_mobile_sam_(TinyViT(img_size=128), seed=6)
    images = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(9))
    with torch.inference_mode():
        fp32 = model(images)
        int8 = quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)(images)
    assert torch.nn.functional.cosine_similarity(int8.flatten(), fp32.flatten(), dim=0) > 0.99


def test_layer_lr_scales_match_mobile_sams(encoders):
    ours, official = encoders
    scales = ours.lr_scales()
    assert scales.keys() == {name for name, _ in ours.named_parameters()}
    # MobileSAM assigns the scales before it adds the neck, so the neck has none there (ours
    # gives it the last block's scale, like the head).
    expected = {name: p.lr_scale for name, p in official.named_parameters() if hasattr(p, "lr_scale")}
    assert len(expected) == len(scales) - 6
    assert scales["neck.0.weight"] == 1.0
    for name, value in expected.items():
        assert scales[name] == pytest.approx(value), name


def test_bad_input_and_config_raise_clear_errors():
    model = TinyViT()
    with pytest.raises(ValueError, match=r"expected \(B, 3, H, W\)"):
        model(torch.zeros(1, 1024, 1024))
    with pytest.raises(ValueError, match="one entry per stage"):
        TinyViT(embed_dims=[64, 128], depths=[2, 2, 6, 2])
    with pytest.raises(ValueError, match="multiple of 16"):
        TinyViT(img_size=1000)


def _test_image(height: int, width: int) -> np.ndarray:
    """A structured RGB image (gradients, a disc and a bar) so masks have edges to follow."""
    rows, cols = np.mgrid[0:height, 0:width]
    image = np.stack(
        [rows * 255 // height, cols * 255 // width, (rows + cols) * 127 // (height + width)], axis=-1
    ).astype(np.uint8)
    disc = (rows - height * 0.4) ** 2 + (cols - width * 0.35) ** 2 < (min(height, width) * 0.2) ** 2
    image[disc] = (220, 40, 40)
    image[int(height * 0.7) : int(height * 0.8), int(width * 0.5) : int(width * 0.9)] = (30, 30, 200)
    return image


def test_vit_t_pipeline_equals_mobile_sam_predictor(tmp_path):
    """build_sam("vit_t") + Predictor against MobileSAM's own model and SamPredictor, on the same
    random weights saved the way mobile_sam.pt is (a plain state dict): point, points, box and a
    mask input from the previous round."""
    from engine import predictor, sam  # here, so that the encoder tests above need neither

    mobile_sam = reference("mobile_sam")
    official = randomize_mobile_sam_(mobile_sam.sam_model_registry["vit_t"](), seed=11)
    checkpoint = tmp_path / "mobile_sam.pt"
    torch.save(official.state_dict(), checkpoint)
    ours = sam.build_sam("vit_t", checkpoint=checkpoint).eval()

    image = _test_image(480, 640)
    reference_predictor = mobile_sam.SamPredictor(official)
    ours_predictor = predictor.Predictor(ours)
    with torch.inference_mode():
        reference_predictor.set_image(image)
        ours_predictor.set_image(image)
    torch.testing.assert_close(ours_predictor.features, reference_predictor.features, atol=1e-3, rtol=0)

    point = {"point_coords": np.array([[224.0, 192.0]]), "point_labels": np.array([1])}
    prompts = {
        "point": point,
        "points": {
            "point_coords": np.array([[224.0, 192.0], [500.0, 360.0]]),
            "point_labels": np.array([1, 0]),
        },
        "box": {"box": np.array([300.0, 320.0, 600.0, 400.0]), "multimask_output": False},
    }
    _, _, previous_logits = reference_predictor.predict(**point, multimask_output=False)
    prompts["mask_input"] = {**point, "mask_input": previous_logits, "multimask_output": False}

    for name, prompt in prompts.items():
        expected_masks, expected_scores, expected_logits = reference_predictor.predict(**prompt)
        masks, scores, logits = ours_predictor.predict(**prompt)
        np.testing.assert_allclose(logits, expected_logits, atol=1e-3, rtol=0, err_msg=name)
        np.testing.assert_allclose(scores, expected_scores, atol=1e-4, rtol=0, err_msg=name)
        assert masks.shape == expected_masks.shape, name
        assert (masks == expected_masks).mean() >= 0.999, name
