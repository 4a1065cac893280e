"""Small building blocks shared by SAM's encoder and decoder.

Parameter names match segment_anything's so official checkpoints load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a BCHW tensor (SAM's eps 1e-6)."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        centred = x - mean
        var = centred.pow(2).mean(1, keepdim=True)
        x = centred * torch.rsqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


def linear_then(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, act: nn.Module | None = None
) -> torch.Tensor:
    """``act(F.linear(x, weight, bias))``. For CPU float32 inference, oneDNN's linear with the
    bias and the activation (exact GELU, ReLU) fused into the product: a plain ``linear`` first
    copies the bias into its whole output and the activation streams it once more, about 20% of
    the encoder's MLP on this project's CPUs (docs/performance.md). Same numbers up to float
    rounding; other devices, dtypes, activations and autograd take the plain ops."""
    post_op = _post_op(act)
    if post_op is not None and fused_linear_ok(x):
        algorithm = "none" if post_op == "gelu" else ""
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, post_op, [], algorithm)
    y = F.linear(x, weight, bias)
    return y if act is None else act(y)


def _post_op(act: nn.Module | None) -> str | None:
    """oneDNN's name for the activation after a linear, None where it has none."""
    if act is None:
        return "none"
    if type(act) is nn.GELU:
        return "gelu" if act.approximate == "none" else None
    return "relu" if type(act) is nn.ReLU else None


def run_linear(layer: nn.Module, x: torch.Tensor, act: nn.Module | None = None) -> torch.Tensor:
    """``act(layer(x))`` through ``linear_then`` when ``layer`` is a plain ``nn.Linear`` (not one
    that quantization replaced, whose ``weight`` is no tensor)."""
    if type(layer) is nn.Linear:
        return linear_then(x, layer.weight, layer.bias, act)
    y = layer(x)
    return y if act is None else act(y)


_FUSED_LINEAR: bool | None = None


def fused_linear_ok(like: torch.Tensor) -> bool:
    """Whether oneDNN's fused linear serves tensors like ``like``: a CPU float32 tensor without
    autograd, on a torch build whose kernel gives ``linear``'s numbers (checked once)."""
    global _FUSED_LINEAR
    if like.device.type != "cpu" or like.dtype != torch.float32 or torch.is_grad_enabled():
        return False
    if _FUSED_LINEAR is None:
        _FUSED_LINEAR = False
        try:
            generator = torch.Generator().manual_seed(0)
            x = torch.randn(64, 32, generator=generator)
            weight, bias = torch.randn(16, 32, generator=generator), torch.randn(16, generator=generator)
            fused = torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], "none")
            plain = F.gelu(F.linear(x, weight, bias))
            _FUSED_LINEAR = bool(torch.allclose(fused, plain, rtol=1e-5, atol=1e-5))
        except (AttributeError, RuntimeError, NotImplementedError):
            _FUSED_LINEAR = False
    return _FUSED_LINEAR


class MLPBlock(nn.Module):
    """Two linear layers with an activation between them (the transformer feed-forward)."""

    def __init__(self, embedding_dim: int, mlp_dim: int, act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_linear(self.lin2, run_linear(self.lin1, x, self.act))


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them (decoder heads)."""

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        output_dim: int,
        num_layers: int,
        sigmoid_output: bool = False,
    ) -> None:
        super().__init__()
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims_in, dims_out))
        self.sigmoid_output = sigmoid_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = F.relu(x)
        return torch.sigmoid(x) if self.sigmoid_output else x
