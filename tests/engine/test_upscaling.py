"""The mask decoder's upscaling (``upscale_and_project``) against the plain modules it replaces:
two 2x2-block transposed convolutions, a LayerNorm2d and activations, then the hypernetwork
product, on the oneDNN-fused path (inference on a CPU) and the ``addmm`` one (autograd)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from engine.sam import common, mask_decoder
from engine.sam.common import LayerNorm2d
from engine.sam.mask_decoder import upscale_and_project


def upscaling(activation: type[nn.Module]) -> nn.Sequential:
    torch.manual_seed(0)
    stack = nn.Sequential(
        nn.ConvTranspose2d(32, 8, kernel_size=2, stride=2),
        LayerNorm2d(8),
        activation(),
        nn.ConvTranspose2d(8, 4, kernel_size=2, stride=2),
        activation(),
    )
    with torch.no_grad():
        for layer in stack:
            for parameter in layer.parameters():
                parameter.normal_(0, 0.5)
    return stack


def plain(stack: nn.Sequential, tokens: torch.Tensor, hyper_in: torch.Tensor, h: int, w: int) -> torch.Tensor:
    batch, _, channels = tokens.shape
    upscaled = stack(tokens.transpose(1, 2).reshape(batch, channels, h, w))
    _, up_c, up_h, up_w = upscaled.shape
    return (hyper_in @ upscaled.view(batch, up_c, -1)).view(batch, -1, up_h, up_w)


@pytest.mark.parametrize("activation", [nn.GELU, nn.ReLU, nn.SiLU])
@pytest.mark.parametrize("grad", [False, True])
def test_upscaling_matches_the_modules(activation, grad):
    stack = upscaling(activation)
    h, w = 6, 5
    tokens = torch.randn(5, h * w, 32)  # an odd batch: the last chunk is short
    hyper_in = torch.randn(5, 3, 4)
    with torch.set_grad_enabled(grad):
        ours = upscale_and_project(stack, tokens, hyper_in, h, w)
        expected = plain(stack, tokens, hyper_in, h, w)
    assert ours.shape == (5, 3, 4 * h, 4 * w)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


def test_fused_linear_is_used_for_inference_on_cpu_and_gives_addmm_numbers(monkeypatch):
    stack = upscaling(nn.GELU)
    x = torch.randn(40, 8)
    weight = stack[3].weight.permute(0, 2, 3, 1).reshape(8, 16)
    expected = nn.functional.gelu(torch.addmm(stack[3].bias.repeat(4), x, weight))
    calls = []
    fused = torch.ops.mkldnn._linear_pointwise
    monkeypatch.setattr(
        torch.ops.mkldnn, "_linear_pointwise", lambda *a: calls.append(a[3]) or fused(*a), raising=False
    )
    with torch.inference_mode():
        fusing = common.fused_linear_ok(x)
        if torch.backends.mkldnn.is_available():  # the fast path must not silently switch off
            assert fusing
        got = mask_decoder._BlockLinear(stack[3], stack[4])(x)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    assert calls == (["gelu"] if fusing else [])
    with torch.enable_grad():
        assert not common.fused_linear_ok(x.requires_grad_())


@pytest.mark.parametrize("act", [None, nn.GELU(), nn.ReLU(), nn.GELU(approximate="tanh"), nn.SiLU()])
def test_linear_then_is_the_linear_and_its_activation(act):
    x, weight, bias = torch.randn(3, 4, 24), torch.randn(10, 24), torch.randn(10)
    expected = nn.functional.linear(x, weight, bias)
    expected = expected if act is None else act(expected)
    with torch.inference_mode():
        got = common.linear_then(x, weight, bias, act)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_masks_are_written_into_the_given_rows():
    stack = upscaling(nn.GELU)
    tokens, hyper_in = torch.randn(3, 4 * 4, 32), torch.randn(3, 2, 4)
    out = torch.full((5, 2, 16, 16), float("nan"))
    with torch.inference_mode():
        returned = upscale_and_project(stack, tokens, hyper_in, 4, 4, out=out[1:4])
        expected = plain(stack, tokens, hyper_in, 4, 4)
    assert returned.data_ptr() == out[1].data_ptr()
    torch.testing.assert_close(out[1:4], expected, rtol=1e-5, atol=1e-5)
    assert torch.isnan(out[0]).all() and torch.isnan(out[4]).all()
