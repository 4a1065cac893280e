"""SAM's ViT image encoder: patch embedding, windowed and global attention with decomposed
relative positions (MViTv2), and a convolutional neck down to the prompt embedding width.

Parameter names and shapes match segment_anything's ``ImageEncoderViT`` so official checkpoints
load unchanged. Attention with the relative-position bias runs in cache-sized bands of query rows
(see :func:`banded_attention`) so the global layers never build the (heads × 4096 × 4096) map the
official code materialises; attention without relative positions goes through
``scaled_dot_product_attention``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.sam.common import LayerNorm2d, MLPBlock, run_linear

# Attention scores computed at once (items × query rows × keys): 1 Mi floats = 4 MiB stays in
# cache, which is what makes the banded global attention fast on CPU.
_BAND_ELEMENTS = 1024 * 1024


class PatchEmbed(nn.Module):
    """Non-overlapping patches → tokens, returned channels-last (B, H, W, C)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


def relative_position_table(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """(q_size, k_size, C) embeddings of every query/key offset along one axis.

    The table is resized linearly when the learned length does not cover the needed offsets, and
    offsets are rescaled when query and key lengths differ, as in MViTv2.
    """
    needed = 2 * max(q_size, k_size) - 1
    if rel_pos.shape[0] != needed:
        resized = F.interpolate(rel_pos.t().unsqueeze(0), size=needed, mode="linear")
        rel_pos = resized.squeeze(0).t()
    q_scale = max(k_size / q_size, 1.0)
    k_scale = max(q_size / k_size, 1.0)
    q_coords = torch.arange(q_size, device=rel_pos.device)[:, None] * q_scale
    k_coords = torch.arange(k_size, device=rel_pos.device)[None, :] * k_scale
    offsets = (q_coords - k_coords) + (k_size - 1) * k_scale
    return rel_pos[offsets.long()]


class Attention(nn.Module):
    """Multi-head self-attention over a (B, H, W, C) grid with decomposed relative positions."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        use_rel_pos: bool = False,
        input_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            if input_size is None:
                raise ValueError("relative positions need the attention's input_size")
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, h, w, dim = x.shape
        tokens = h * w
        # (3, B·heads, tokens, head_dim) without an intermediate contiguous copy per tensor.
        qkv = run_linear(self.qkv, x)
        qkv = qkv.reshape(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, batch * self.num_heads, tokens, -1).unbind(0)
        if not self.use_rel_pos:
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            out = self._attend_with_rel_pos(q, k, v, h, w)
        out = out.view(batch, self.num_heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(batch, h, w, dim)
        return run_linear(self.proj, out)

    def _attend_with_rel_pos(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, h: int, w: int
    ) -> torch.Tensor:
        table_h = relative_position_table(h, h, self.rel_pos_h).to(q.dtype)  # (qh, kh, C)
        table_w = relative_position_table(w, w, self.rel_pos_w).to(q.dtype)  # (qw, kw, C)
        grid_q = q.reshape(q.shape[0], h, w, -1)
        # bias[b, (qh, qw), (kh, kw)] = q·Rh[qh, kh] + q·Rw[qw, kw], from the unscaled q as in SAM.
        rel_h = torch.einsum("bhwc,hkc->bhwk", grid_q, table_h)
        rel_w = torch.einsum("bhwc,wkc->bhwk", grid_q, table_w)
        return banded_attention(q * self.scale, k, v, rel_h, rel_w)


def banded_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rel_h: torch.Tensor, rel_w: torch.Tensor
) -> torch.Tensor:
    """softmax(q·kᵀ + bias)·v with SAM's decomposed bias, computed a cache-sized band at a time.

    q, k, v: (B, h·w, C) with q already scaled; rel_h (B, h, w, h) and rel_w (B, h, w, w) are the
    bias terms per key row and per key column. Each band of query rows gets its scores from one
    matmul and its bias added in place, so no (B, N, N) map or bias is ever materialised; for the
    4096-token global layers this is faster than the full map (and than SDPA with the bias as a
    float mask, which has to be materialised first) and uses a few MiB instead of a full score map
    (figures: docs/performance.md).
    """
    batch, tokens, _ = q.shape
    _, h, w, _ = rel_h.shape
    row_scores = w * tokens  # scores for one query row of the grid
    rows = max(1, min(h, _BAND_ELEMENTS // row_scores))
    items = max(1, min(batch, _BAND_ELEMENTS // (row_scores * h))) if rows == h else 1
    k_t = k.transpose(-2, -1)
    out = torch.empty(batch, tokens, v.shape[-1], dtype=v.dtype, device=v.device)
    for first in range(0, batch, items):
        last = min(batch, first + items)
        for top in range(0, h, rows):
            bottom = min(h, top + rows)
            band = slice(top * w, bottom * w)
            scores = torch.matmul(q[first:last, band], k_t[first:last])
            grid = scores.view(last - first, bottom - top, w, h, w)
            grid.add_(rel_h[first:last, top:bottom, :, :, None])
            grid.add_(rel_w[first:last, top:bottom, :, None, :])
            out[first:last, band] = torch.matmul(torch.softmax(scores, dim=-1), v[first:last])
    return out


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, H, W, C) → (B·nWindows, window, window, C), zero-padding H and W up to multiples."""
    batch, h, w, channels = x.shape
    pad_h = (window - h % window) % window
    pad_w = (window - w % window) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(batch, hp // window, window, wp // window, window, channels)
    windows = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, channels)
    return windows, (hp, wp)


def window_unpartition(
    windows: torch.Tensor, window: int, padded: tuple[int, int], original: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`window_partition`, dropping the padding."""
    hp, wp = padded
    h, w = original
    batch = windows.shape[0] // ((hp // window) * (wp // window))
    x = windows.view(batch, hp // window, wp // window, window, window, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(batch, hp, wp, -1)
    if hp > h or wp > w:
        x = x[:, :h, :w, :].contiguous()
    return x


class Block(nn.Module):
    """Pre-norm transformer block; ``window_size`` 0 means global attention."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        qkv_bias: bool,
        use_rel_pos: bool,
        window_size: int,
        input_size: tuple[int, int],
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        attn_size = input_size if window_size == 0 else (window_size, window_size)
        self.attn = Attention(dim, num_heads, qkv_bias, use_rel_pos, attn_size)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio), nn.GELU)
        self.window_size = window_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            h, w = x.shape[1], x.shape[2]
            windows, padded = window_partition(x, self.window_size)
            x = window_unpartition(self.attn(windows), self.window_size, padded, (h, w))
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class ImageEncoderViT(nn.Module):
    """(B, 3, S, S) normalised padded image → (B, out_chans, S/patch, S/patch) embedding."""

    def __init__(
        self,
        img_size: int = 1024,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        out_chans: int = 256,
        qkv_bias: bool = True,
        use_abs_pos: bool = True,
        use_rel_pos: bool = True,
        window_size: int = 14,
        global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11),
    ) -> None:
        super().__init__()
        self.img_size = img_size
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.pos_embed: nn.Parameter | None = None
        if use_abs_pos:
            self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dim))
        self.blocks = nn.ModuleList(
            Block(
                dim=embed_dim,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                use_rel_pos=use_rel_pos,
                window_size=0 if i in global_attn_indexes else window_size,
                input_size=(grid, grid),
            )
            for i in range(depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))
