"""SAM's mask decoder: output tokens + prompt tokens run through the two-way transformer against
the image embedding; each mask token then drives a hypernetwork that turns the upscaled image
features into one low-res mask, and an IoU head scores every mask.

Parameter names match segment_anything's ``MaskDecoder``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.sam.common import MLP, LayerNorm2d, fused_linear_ok, linear_then
from engine.sam.transformer import TwoWayTransformer


class MaskDecoder(nn.Module):
    def __init__(
        self,
        *,
        transformer_dim: int,
        transformer: nn.Module,
        num_multimask_outputs: int = 3,
        activation: type[nn.Module] = nn.GELU,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.iou_token = nn.Embedding(1, transformer_dim)
        # Token 0 is the single-mask output, tokens 1.. the ambiguity-aware multimask outputs.
        self.num_mask_tokens = num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            activation(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            activation(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3)
            for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth
        )

    def forward(
        self,
        image_embeddings: Tensor,
        image_pe: Tensor,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor,
        multimask_output: bool,
    ) -> tuple[Tensor, Tensor]:
        """Low-res mask logits (B, C, 4h, 4w) and IoU predictions (B, C); C = 3 or 1."""
        return self.predict_masks(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, multimask_output
        )

    def predict_masks(
        self,
        image_embeddings: Tensor,
        image_pe: Tensor,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor,
        multimask_output: bool | None = None,
    ) -> tuple[Tensor, Tensor]:
        """The selected mask-token outputs (all of them for None). One image embedding serves a
        whole prompt batch."""
        tokens = self.output_tokens(sparse_prompt_embeddings)
        # Broadcasting adds the image embedding to each prompt's dense embedding without first
        # copying the embedding once per prompt; the positional encoding stays a single copy.
        src = image_embeddings + dense_prompt_embeddings
        if src.shape[0] != tokens.shape[0]:
            src = src.expand(tokens.shape[0], -1, -1, -1)
        h, w = src.shape[-2:]
        selected = self.selected_masks(multimask_output)
        if isinstance(self.transformer, TwoWayTransformer):
            hs, src = self.transformer(src, image_pe, tokens, rows=self.output_rows(selected))
        else:  # another transformer module: all rows, then the used ones
            hs, src = self.transformer(src, image_pe, tokens)
            hs = hs[:, self.output_rows(selected)]
        return self.heads(hs, src, h, w, selected)

    def output_tokens(self, sparse_prompt_embeddings: Tensor) -> Tensor:
        """The IoU token and mask tokens followed by each prompt's sparse tokens: (B, 1+M+N, C)."""
        batch = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        output_tokens = output_tokens.unsqueeze(0).expand(batch, -1, -1)
        return torch.cat((output_tokens, sparse_prompt_embeddings), dim=1)

    def selected_masks(self, multimask_output: bool | None) -> range:
        """The mask tokens returned: the multimask ones (1..), the single one (0), or all (None)."""
        if multimask_output is None:
            return range(self.num_mask_tokens)
        return range(1, self.num_mask_tokens) if multimask_output else range(0, 1)

    @staticmethod
    def output_rows(selected: range) -> list[int]:
        """Rows of the transformer's token outputs the heads read: the IoU token and the selected
        mask tokens. The final token→image attention treats rows independently, so it only runs
        for these (4 of 7 rows for one click with multimask, 2 without)."""
        return [0, *(1 + i for i in selected)]

    def heads(self, hs: Tensor, src: Tensor, h: int, w: int, selected: range) -> tuple[Tensor, Tensor]:
        """``hs`` (B, 1 + len(selected), C), the ``output_rows`` of the transformer's tokens, and
        its image tokens → (masks, IoUs) of the selected mask tokens; only those are upscaled."""
        hyper_in = torch.stack(
            [self.output_hypernetworks_mlps[i](hs[:, 1 + j, :]) for j, i in enumerate(selected)], dim=1
        )
        masks = upscale_and_project(self.output_upscaling, src, hyper_in, h, w)
        iou_pred = self.iou_prediction_head(hs[:, 0, :])
        return masks, iou_pred[:, selected.start : selected.stop]


# Prompts upscaled together: ~12 MB of intermediate features each, so a chunk stays cache-sized
# (and its largest temporary below the 32 MiB from which malloc maps fresh pages).
UPSCALE_CHUNK = 2


def upscale_and_project(
    upscaling: nn.Sequential,
    tokens: Tensor,
    hyper_in: Tensor,
    h: int,
    w: int,
    out: Tensor | None = None,
    first: Callable[[int, int], Tensor] | None = None,
) -> Tensor:
    """``hyper_in @ output_upscaling(image tokens)``: (B, h*w, C) tokens and (B, M, C/8)
    hypernetwork outputs → (B, M, 4h, 4w) mask logits, written into ``out`` when given (a caller
    gathering several calls' masks then needs no concatenation). ``first``: (start, n) → the
    first layer's output for those prompts, (n·h·w, 2·2·C/4), when the caller has it another way
    (``engine.sam.folded_upscaling``).

    Both ConvTranspose2d layers have kernel = stride = 2, so each input pixel writes its own 2x2
    block of outputs: the layer is one matmul of the channels-last pixels by the weight laid out
    as (in, 2·2·out). The transformer's image tokens already are channels-last, the LayerNorm2d
    becomes a ``layer_norm`` over the contiguous last axis, and the pixels stay in block order
    (i, j, di, dj, ei, ej) until the M masks, the only small tensor, are put in raster order. On CPU
    this is several times faster than the convolutions, which spend most of their time in layout
    copies. A stack of any other shape runs as the plain modules."""
    conv1, norm, act1, conv2, act2 = block_upscaling(upscaling) or (None,) * 5
    batch, tokens_n, channels = tokens.shape
    masks_n = hyper_in.shape[1]
    if conv1 is None:
        upscaled = upscaling(tokens.transpose(1, 2).reshape(batch, channels, h, w))
        _, up_c, up_h, up_w = upscaled.shape
        masks = (hyper_in @ upscaled.view(batch, up_c, up_h * up_w)).view(batch, masks_n, up_h, up_w)
        return masks if out is None else out.copy_(masks)
    mid = conv1.out_channels
    first_layer = _BlockLinear(conv1, act=None)
    second = _BlockLinear(conv2, act=act2)
    if out is None:
        out = tokens.new_empty((batch, masks_n, 4 * h, 4 * w))
    step = UPSCALE_CHUNK if tokens.device.type == "cpu" else batch  # a GPU wants the whole batch
    for start in range(0, batch, step):
        part = tokens[start : start + step]
        n = part.shape[0]
        if first is None:
            x = first_layer(part.reshape(n * tokens_n, channels)).view(-1, mid)
        else:
            x = first(start, n).view(-1, mid)
        x = _activate(act1, F.layer_norm(x, (mid,), norm.weight, norm.bias, norm.eps))
        x = second(x).view(n, tokens_n * 16, conv2.out_channels)
        # Masks first, so the reordering below copies pairs of adjacent pixels, not stride-M ones;
        # it writes the raster order straight into ``out``.
        masks = torch.bmm(hyper_in[start : start + n], x.transpose(1, 2))
        blocks = masks.view(n, masks_n, h, w, 2, 2, 2, 2).permute(0, 1, 2, 4, 6, 3, 5, 7)
        out[start : start + n].view(n, masks_n, h, 2, 2, w, 2, 2).copy_(blocks)
    return out


class _BlockLinear:
    """One 2x2-block ConvTranspose2d as a linear map of channels-last pixels, its bias and the
    activation after it (None, GELU or ReLU) fused into the product where ``linear_then`` can."""

    def __init__(self, conv: nn.ConvTranspose2d, act: nn.Module | None) -> None:
        self.weight = block_weight(conv).T.contiguous()  # (2·2·out, in), as F.linear takes it
        self.bias = conv.bias.repeat(4)
        self.act = act

    def __call__(self, x: Tensor) -> Tensor:
        if self.act is None or fused_linear_ok(x):
            return linear_then(x, self.weight, self.bias, self.act)
        return _activate(self.act, linear_then(x, self.weight, self.bias))


def _activate(activation: nn.Module, x: Tensor) -> Tensor:
    """The activation, in place on ``x`` (a temporary) where that is the same function and no
    gradient is recorded (backward needs the activation's input)."""
    if torch.is_grad_enabled():
        return activation(x)
    if type(activation) is nn.GELU and activation.approximate == "none":
        return torch.ops.aten.gelu_(x)
    if type(activation) is nn.ReLU:
        return x.relu_()
    return activation(x)


def block_weight(conv: nn.ConvTranspose2d) -> Tensor:
    """A 2x2-block transposed convolution's weight as the matrix (in, 2·2·out) that maps one
    channels-last pixel to its block's outputs, ordered (di, dj, out)."""
    return conv.weight.permute(0, 2, 3, 1).reshape(conv.in_channels, -1)


def block_upscaling(upscaling: nn.Module) -> tuple[nn.Module, ...] | None:
    """The five layers of SAM's upscaling when both transposed convolutions are 2x2 blocks."""
    layers = list(upscaling) if isinstance(upscaling, nn.Sequential) else []
    if len(layers) != 5:
        return None
    conv1, norm, _, conv2, _ = layers
    for conv in (conv1, conv2):
        if not (
            isinstance(conv, nn.ConvTranspose2d)
            and conv.kernel_size == (2, 2)
            and conv.stride == (2, 2)
            and conv.padding == (0, 0)
            and conv.output_padding == (0, 0)
            and conv.dilation == (1, 1)
            and conv.groups == 1
            and conv.bias is not None
        ):
            return None
    if not (hasattr(norm, "weight") and hasattr(norm, "bias") and hasattr(norm, "eps")):
        return None
    if type(norm).__name__ != "LayerNorm2d":
        return None
    return tuple(layers)
