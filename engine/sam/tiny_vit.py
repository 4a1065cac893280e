"""MobileSAM's image encoder: a TinyViT-5M backbone (convolutional first stage, then windowed
attention stages with a learned relative-offset bias) followed by SAM's 256-channel neck.

The module tree reproduces MobileSAM's parameter and buffer names exactly, so ``mobile_sam.pt``
loads unchanged under the ``image_encoder.`` prefix (the unused ImageNet ``norm_head``/``head``
included). The computation is written for inference speed on CPU:

- every convolution + BatchNorm pair runs as one convolution with the BatchNorm folded into its
  weight and bias (computed from the live parameters at each call, so loading a state dict or
  fine-tuning never leaves a stale copy behind);
- activations of the attention stages stay in one ``(B, H, W, C)`` layout, and the convolutions
  run on channels-last views of it, so no transposing copies are needed between attention,
  local convolution and MLP;
- attention goes through ``scaled_dot_product_attention`` with the relative-offset bias as its
  additive mask;
- in fp32 CPU inference (no autograd), each convolution or linear layer followed by GELU runs as
  one oneDNN call with GELU as a post-op (the op torch.compile's CPU backend emits), which saves a
  full pass over the largest activations; anywhere else the plain ops run.

Two of MobileSAM's quirks are reproduced on purpose because the checkpoint depends on them: the
last patch merging keeps the resolution (stride 1 when its output has 320, 448 or 576 channels),
and windows are padded with zeros *before* the attention's LayerNorm, so padding tokens take part
in attention as the norm's bias vector.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from engine.sam.common import LayerNorm2d

# MobileSAM's patch merging keeps the resolution for these output widths (the last stage of
# TinyViT-5M/11M/21M), so that the encoder ends at 1/16 of the input like SAM's ViT.
_STRIDE_ONE_MERGE_WIDTHS = (320, 448, 576)


class ConvBN(nn.Module):
    """A bias-free convolution followed by BatchNorm (MobileSAM's ``Conv2d_BN``: children ``c``
    and ``bn``). In eval mode both run as a single convolution."""

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.c = nn.Conv2d(in_chans, out_chans, kernel_size, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chans)

    def fused_weight_and_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of the one convolution equal to conv → BatchNorm(eval)."""
        bn = self.bn
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        weight = self.c.weight * scale[:, None, None, None]
        bias = bn.bias - bn.running_mean * scale
        return weight, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self.bn(self.c(x))
        weight, bias = self.fused_weight_and_bias()
        c = self.c
        return F.conv2d(x, weight, bias, c.stride, c.padding, c.dilation, c.groups)

    def forward_gelu(self, x: torch.Tensor) -> torch.Tensor:
        """GELU(conv → BN), fused into one oneDNN convolution when possible."""
        if self.training or not _can_fuse_gelu(x):
            return F.gelu(self(x))
        weight, bias = self.fused_weight_and_bias()
        c = self.c
        return torch.ops.mkldnn._convolution_pointwise(
            x, weight, bias, c.padding, c.stride, c.dilation, c.groups, "gelu", [], "none"
        )


def _can_fuse_gelu(x: torch.Tensor) -> bool:
    """oneDNN post-op GELU ("none" = the exact erf form, as nn.GELU) for fp32 CPU inference."""
    return (
        _MKLDNN_POINTWISE
        and not torch.is_grad_enabled()
        and x.device.type == "cpu"
        and x.dtype == torch.float32
    )


_MKLDNN_POINTWISE = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per sample while training."""

    def __init__(self, drop_prob: float) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


def _drop_path(prob: float) -> nn.Module:
    return DropPath(prob) if prob > 0.0 else nn.Identity()


def _channels_first(x: torch.Tensor) -> torch.Tensor:
    """(B, H, W, C) → an NCHW view in channels-last memory (no copy when ``x`` is contiguous)."""
    return x.permute(0, 3, 1, 2)


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """NCHW → (B, H, W, C); free for channels-last memory, which convolutions here preserve."""
    return x.permute(0, 2, 3, 1)


class PatchEmbed(nn.Module):
    """Two stride-2 3×3 convolutions: the image at 1/4 resolution, ``embed_dim`` channels."""

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            ConvBN(in_chans, embed_dim // 2, 3, 2, 1),
            nn.GELU(),
            ConvBN(embed_dim // 2, embed_dim, 3, 2, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq[2](self.seq[0].forward_gelu(x))


class MBConv(nn.Module):
    """Inverted residual block: 1×1 expand, 3×3 depthwise, 1×1 project, residual, GELU."""

    def __init__(self, dim: int, expand_ratio: float, drop_path: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = ConvBN(dim, hidden)
        self.act1 = nn.GELU()
        self.conv2 = ConvBN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = ConvBN(hidden, dim)
        self.act3 = nn.GELU()
        self.drop_path = _drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2.forward_gelu(self.conv1.forward_gelu(x))  # act1, act2 fused (both GELU)
        y = self.drop_path(self.conv3(y))
        return self.act3(x + y)


class PatchMerging(nn.Module):
    """1×1 conv, strided 3×3 depthwise conv, 1×1 conv: halves the resolution (except for
    MobileSAM's last stage, see ``_STRIDE_ONE_MERGE_WIDTHS``). NCHW in, (B, H, W, C) out."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.act = nn.GELU()
        self.conv1 = ConvBN(dim, out_dim)
        stride = 1 if out_dim in _STRIDE_ONE_MERGE_WIDTHS else 2
        self.conv2 = ConvBN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2.forward_gelu(self.conv1.forward_gelu(x))  # self.act is GELU
        return _channels_last(self.conv3(x))


class ConvLayer(nn.Module):
    """The first stage: MBConv blocks on NCHW (channels-last memory), then patch merging."""

    def __init__(
        self,
        dim: int,
        depth: int,
        drop_path: Sequence[float],
        out_dim: int,
        expand_ratio: float,
        use_checkpoint: bool,
    ) -> None:
        super().__init__()
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(MBConv(dim, expand_ratio, drop_path[i]) for i in range(depth))
        self.downsample = PatchMerging(dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = _run_block(block, x, self.use_checkpoint and self.training)
        return self.downsample(x)


class Mlp(nn.Module):
    """Pre-norm two-layer MLP (the norm lives here, as in MobileSAM's key names)."""

    def __init__(self, dim: int, hidden_dim: int, drop: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        # Only a plain Linear (not e.g. a dynamically quantized one) has a weight tensor to fuse.
        if type(self.fc1) is nn.Linear and _can_fuse_gelu(x) and not self.training:
            x = torch.ops.mkldnn._linear_pointwise(x, self.fc1.weight, self.fc1.bias, "gelu", [], "none")
        else:
            x = self.drop(self.act(self.fc1(x)))
        return self.drop(self.fc2(x))


@functools.cache
def _relative_offset_index(window_size: int) -> torch.Tensor:
    """(N, N) index into the learned bias table: one entry per distinct |Δrow|, |Δcol| pair, in
    the order the pairs are first met scanning query-major (MobileSAM's table layout)."""
    points = list(itertools.product(range(window_size), range(window_size)))
    table: dict[tuple[int, int], int] = {}
    index = []
    for p, q in itertools.product(points, points):
        offset = (abs(p[0] - q[0]), abs(p[1] - q[1]))
        index.append(table.setdefault(offset, len(table)))
    n = len(points)
    return torch.tensor(index, dtype=torch.long).view(n, n)


class Attention(nn.Module):
    """Pre-norm multi-head self-attention inside one window, with a learned bias per head and
    relative offset (LeViT-style) added to the attention logits."""

    def __init__(self, dim: int, num_heads: int, window_size: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.norm = nn.LayerNorm(dim)
        # Per head, the output features are [q | k | v] (head-major, not q/k/v-major).
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        index = _relative_offset_index(window_size)
        num_offsets = int(index.max()) + 1
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, num_offsets))
        self.register_buffer("attention_bias_idxs", index.clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (windows, N, C) → (windows, N, C)."""
        windows, n, dim = x.shape
        qkv = self.qkv(self.norm(x)).view(windows, n, self.num_heads, 3 * self.head_dim)
        q, k, v = qkv.transpose(1, 2).split(self.head_dim, dim=-1)
        # A 4-D mask keeps SDPA on its fused CPU kernel (a 3-D one falls back to the math path).
        bias = self.attention_biases[:, self.attention_bias_idxs].to(q.dtype)[None]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(windows, n, dim))


class TinyViTBlock(nn.Module):
    """Windowed attention, depthwise local convolution, MLP; on (B, H, W, C) tensors."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        drop: float,
        drop_path: float,
        local_conv_size: int,
    ) -> None:
        super().__init__()
        if window_size <= 0:
            raise ValueError(f"window_size must be positive, got {window_size}")
        self.window_size = window_size
        self.attn = Attention(dim, num_heads, window_size)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        self.local_conv = ConvBN(dim, dim, local_conv_size, 1, local_conv_size // 2, groups=dim)
        self.drop_path = _drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self._windowed_attention(x))
        x = _channels_last(self.local_conv(_channels_first(x.contiguous())))
        return x + self.drop_path(self.mlp(x))

    def _windowed_attention(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        ws = self.window_size
        pad_h, pad_w = -h % ws, -w % ws
        if pad_h or pad_w:  # zeros before the attention's norm, as MobileSAM does
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        rows, cols = (h + pad_h) // ws, (w + pad_w) // ws
        windows = x.view(b, rows, ws, cols, ws, c).transpose(2, 3).reshape(b * rows * cols, ws * ws, c)
        out = self.attn(windows)
        out = out.view(b, rows, cols, ws, ws, c).transpose(2, 3).reshape(b, h + pad_h, w + pad_w, c)
        return out[:, :h, :w] if pad_h or pad_w else out


class BasicLayer(nn.Module):
    """An attention stage: TinyViT blocks, then (except for the last stage) patch merging."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        drop: float,
        drop_path: Sequence[float],
        local_conv_size: int,
        out_dim: int | None,
        use_checkpoint: bool,
    ) -> None:
        super().__init__()
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(
            TinyViTBlock(dim, num_heads, window_size, mlp_ratio, drop, drop_path[i], local_conv_size)
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim, out_dim) if out_dim is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = _run_block(block, x, self.use_checkpoint and self.training)
        if self.downsample is not None:
            x = self.downsample(_channels_first(x.contiguous()))
        return x


def _run_block(block: nn.Module, x: torch.Tensor, use_checkpoint: bool) -> torch.Tensor:
    return checkpoint(block, x, use_reentrant=False) if use_checkpoint else block(x)


class TinyViT(nn.Module):
    """MobileSAM's image encoder: (B, 3, img_size, img_size) normalised images →
    (B, 256, img_size/16, img_size/16) embeddings. Defaults are MobileSAM's ``vit_t``."""

    def __init__(
        self,
        img_size: int = 1024,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dims: Sequence[int] = (64, 128, 160, 320),
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (2, 4, 5, 10),
        window_sizes: Sequence[int] = (7, 7, 14, 7),
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        use_checkpoint: bool = False,
        mbconv_expand_ratio: float = 4.0,
        local_conv_size: int = 3,
        layer_lr_decay: float = 0.8,
    ) -> None:
        super().__init__()
        if not (len(embed_dims) == len(depths) == len(num_heads) == len(window_sizes)) or len(depths) < 2:
            raise ValueError(
                "embed_dims, depths, num_heads and window_sizes need one entry per stage (at least 2), "
                f"got {len(embed_dims)}, {len(depths)}, {len(num_heads)}, {len(window_sizes)}"
            )
        if img_size % 16:
            raise ValueError(f"img_size must be a multiple of 16, got {img_size}")
        self.img_size = img_size
        self.num_classes = num_classes
        self.depths = list(depths)
        self.layer_lr_decay = layer_lr_decay

        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        starts = [sum(depths[:i]) for i in range(len(depths) + 1)]
        last = len(depths) - 1
        self.layers = nn.ModuleList()
        for i, dim in enumerate(embed_dims):
            drop_path = rates[starts[i] : starts[i + 1]]
            out_dim = embed_dims[i + 1] if i < last else None
            if i == 0:
                layer: nn.Module = ConvLayer(
                    dim, depths[i], drop_path, embed_dims[1], mbconv_expand_ratio, use_checkpoint
                )
            else:
                layer = BasicLayer(
                    dim,
                    depths[i],
                    num_heads[i],
                    window_sizes[i],
                    mlp_ratio,
                    drop_rate,
                    drop_path,
                    local_conv_size,
                    out_dim,
                    use_checkpoint,
                )
            self.layers.append(layer)

        # ImageNet classifier of the TinyViT backbone: unused by SAM, but in the checkpoint.
        self.norm_head = nn.LayerNorm(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], 256, kernel_size=1, bias=False),
            LayerNorm2d(256),
            nn.Conv2d(256, 256, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(256),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                # TinyViT's trunc_normal_(std=.02) truncates at ±2 (absolute), i.e. at 100σ:
                # the same distribution as a plain normal, which is several times cheaper.
                nn.init.normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, MBConv):  # residual branch starts at zero, as in TinyViT
                nn.init.zeros_(module.conv3.bn.weight)

    def lr_scales(self) -> dict[str, float]:
        """Per-parameter learning-rate factors for fine-tuning with layer-wise decay: the last
        block gets 1.0, each earlier block ``layer_lr_decay`` times the next (TinyViT's rule;
        patch merging shares its stage's last block, the stem the first block)."""
        depth = sum(self.depths)
        scale = [self.layer_lr_decay ** (depth - i - 1) for i in range(depth)]
        scales: dict[str, float] = {}

        def assign(prefix: str, module: nn.Module, value: float) -> None:
            for name, _ in module.named_parameters():
                scales[f"{prefix}.{name}"] = value

        assign("patch_embed", self.patch_embed, scale[0])
        index = 0
        for i, layer in enumerate(self.layers):
            for j, block in enumerate(layer.blocks):
                assign(f"layers.{i}.blocks.{j}", block, scale[index])
                index += 1
            if layer.downsample is not None:
                assign(f"layers.{i}.downsample", layer.downsample, scale[index - 1])
        for prefix in ("norm_head", "head", "neck"):
            assign(prefix, getattr(self, prefix), scale[-1])
        return scales

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.patch_embed.seq[0].c.in_channels:
            raise ValueError(
                f"expected (B, {self.patch_embed.seq[0].c.in_channels}, H, W) images, got {tuple(x.shape)}"
            )
        x = self.patch_embed(x.contiguous(memory_format=torch.channels_last))
        for layer in self.layers:
            x = layer(x)
        return self.neck(_channels_first(x)).contiguous()
