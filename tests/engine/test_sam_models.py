"""build_sam: official state-dict layout for every family, configs, checkpoints and their errors."""

from __future__ import annotations

import pytest
import torch

from engine.sam import CheckpointError, build_sam, with_precision
from tests.reference import reference
from tests.reference_models import SMALL_CONFIG, official_sam


def _layout(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


@pytest.mark.reference
@pytest.mark.parametrize("model_type", ["vit_b", "vit_l", "vit_h"])
def test_state_dict_layout_matches_official_checkpoint(model_type):
    """Built on the meta device: the layout of even vit_h costs no memory or time."""
    official_builders = reference("segment_anything").sam_model_registry
    with torch.device("meta"):
        official = official_builders[model_type]()
        ours = build_sam(model_type)
    assert _layout(ours) == _layout(official)
    assert ours.image_encoder.img_size == 1024


@pytest.mark.reference
def test_vit_t_layout_matches_mobile_sam():
    mobile_sam = reference("mobile_sam")
    # Built on the CPU: MobileSAM's constructor calls .item(), which meta tensors refuse; vit_t is small.
    official = mobile_sam.sam_model_registry["vit_t"]()
    ours = build_sam("vit_t")
    assert _layout(ours) == _layout(official)


def test_custom_config_matches_official_and_has_sam_attributes():
    ours = build_sam("custom", config=SMALL_CONFIG)
    assert _layout(ours) == _layout(official_sam(SMALL_CONFIG))
    assert ours.mask_threshold == 0.0 and ours.image_format == "RGB"
    assert ours.device == torch.device("cpu") and not ours.training
    assert ours.image_encoder.img_size == 256
    assert tuple(ours.pixel_mean.flatten().tolist()) == pytest.approx((123.675, 116.28, 103.53))


@pytest.mark.parametrize(
    ("model_type", "config", "message"),
    [
        ("vit_x", None, "unknown model_type"),
        ("custom", None, "needs a config"),
        ("custom", {"encoder_dpth": 3}, "unknown config keys"),
        ("custom", {"image_size": 100}, "not a multiple of patch_size"),
        ("custom", {**SMALL_CONFIG, "encoder_global_attn_indexes": [9]}, "outside"),
        ("vit_b", {"image_size": 512}, "only for model_type 'custom'"),
    ],
)
def test_bad_model_type_or_config_is_explained(model_type, config, message):
    with pytest.raises(ValueError, match=message):
        build_sam(model_type, config=config)


@pytest.fixture(scope="module")
def small_state_dict():
    return official_sam(SMALL_CONFIG, seed=3).state_dict()


def test_checkpoint_loads_plain_and_wrapped(tmp_path, small_state_dict):
    for name, payload in [
        ("plain.pth", small_state_dict),
        ("model.pth", {"model": small_state_dict, "epoch": 3}),
        ("state.pth", {"state_dict": {f"module.{k}": v for k, v in small_state_dict.items()}}),
    ]:
        torch.save(payload, tmp_path / name)
        model = build_sam("custom", checkpoint=tmp_path / name, config=SMALL_CONFIG)
        for key, value in small_state_dict.items():
            assert torch.equal(model.state_dict()[key], value), (name, key)


def test_truncated_checkpoint_says_so(tmp_path, small_state_dict):
    path = tmp_path / "cut.pth"
    torch.save(small_state_dict, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        build_sam("custom", checkpoint=path, config=SMALL_CONFIG)


def test_missing_file_and_non_state_dict(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        build_sam("custom", checkpoint=tmp_path / "nope.pth", config=SMALL_CONFIG)
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="does not hold a state dict"):
        build_sam("custom", checkpoint=tmp_path / "list.pth", config=SMALL_CONFIG)


def test_other_family_checkpoint_is_named(tmp_path, small_state_dict):
    """A vit_l checkpoint given for another model: the error names the family it looks like."""
    fake_vit_l = dict(small_state_dict)
    fake_vit_l["image_encoder.patch_embed.proj.weight"] = torch.zeros(1024, 3, 16, 16)
    torch.save(fake_vit_l, tmp_path / "vit_l.pth")
    with pytest.raises(CheckpointError, match="looks like a vit_l checkpoint") as excinfo:
        build_sam("custom", checkpoint=tmp_path / "vit_l.pth", config=SMALL_CONFIG)
    assert (
        "image_encoder.patch_embed.proj.weight: checkpoint (1024, 3, 16, 16) vs model (64, 3, 16, 16)"
        in str(excinfo.value)
    )


def test_missing_unexpected_and_foreign_keys_are_summarised(tmp_path, small_state_dict):
    partial = {k: v for k, v in small_state_dict.items() if not k.startswith("mask_decoder.")}
    partial["extra.head.weight"] = torch.zeros(2)
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match=r"missing keys: \d+ \(mask_decoder\.") as excinfo:
        build_sam("custom", checkpoint=tmp_path / "partial.pth", config=SMALL_CONFIG)
    assert "unexpected keys: 1 (extra.head.weight)" in str(excinfo.value)

    torch.save({"backbone.conv.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not a SAM-family checkpoint"):
        build_sam("custom", checkpoint=tmp_path / "other.pth", config=SMALL_CONFIG)


def test_with_precision_validates_and_is_one_way_for_int8():
    model = build_sam("custom", config=SMALL_CONFIG)
    with pytest.raises(ValueError, match="precision must be one of"):
        with_precision(model, "fp16")
    assert with_precision(model, "bf16").image_encoder.patch_embed.proj.weight.dtype == torch.bfloat16
    assert with_precision(model, "fp32").image_encoder.patch_embed.proj.weight.dtype == torch.float32
    with_precision(model, "int8")
    with pytest.raises(ValueError, match="cannot be converted back"):
        with_precision(model, "fp32")
