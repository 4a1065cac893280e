"""The two-way transformer of SAM's mask decoder: prompt tokens attend to the image embedding and
the image embedding attends back to the tokens, in every layer.

Parameter names match segment_anything's ``TwoWayTransformer``. The image embedding and its
positional encoding may have batch 1 against B prompts (the automatic generator's 64-prompt
batches): the first layer's image side is then shared, and the image tokens become per-prompt only
where the math makes them so (after the first image→token attention). The cross-attentions never
project the 64x64 image tokens per prompt (see ``Attention.attend_to_many``/``attend_from_many``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.sam.common import MLPBlock


@dataclass(frozen=True)
class ImageUpdate:
    """What one layer's image→token attention and ``norm4`` did to the image tokens:
    ``out = norm4(tokens + probs @ values)``, with the norm's row means and 1/stds. The change is
    of rank heads·n (a handful of prompt tokens), so a linear map of the image tokens can be
    pushed through it (``engine.sam.folded_upscaling``) instead of applied to 64x64 tokens."""

    probs: Tensor  # (B, h·w, heads·n), a transposed view of contiguous rows
    values: Tensor  # (B, heads·n, C), the output projection folded in
    mean: Tensor  # (B, h·w, 1)
    rstd: Tensor  # (B, h·w, 1)


def norm_recorded(norm: nn.LayerNorm, x: Tensor, step: list, record: list | None) -> Tensor:
    """``norm(x)``; with a ``record``, also appends the ``ImageUpdate`` whose (probs, values) the
    attention left in ``step`` (None when its fold did not run: the record is then unusable)."""
    if record is None:
        return norm(x)
    out, mean, rstd = torch.native_layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
    record.append(ImageUpdate(*step[0], mean, rstd) if step else None)
    return out


class Attention(nn.Module):
    """Multi-head attention whose projections may shrink the width by ``downsample_rate``.

    In SAM's decoder one side of every cross-attention is a handful of tokens and the other the
    64x64 image tokens. ``attend_to_many`` / ``attend_from_many`` use that: a projection is linear,
    so instead of projecting thousands of image tokens per prompt they fold the few tokens'
    projections into small per-prompt matrices that multiply the image tokens once. Either side
    may have batch 1 against the other's B prompts (broadcast, no per-prompt copies)."""

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads:
            raise ValueError(f"num_heads ({num_heads}) must divide the internal width {self.internal_dim}")
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.v_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def _split_heads(self, x: Tensor) -> Tensor:
        batch, tokens, width = x.shape
        return x.view(batch, tokens, self.num_heads, width // self.num_heads).transpose(1, 2)

    def _folding_pays(self, few: int) -> bool:
        """Folding costs heads·few columns per image token, projecting costs internal_dim."""
        return few * self.num_heads < self.internal_dim

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        q = self._split_heads(self.q_proj(q))
        k = self._split_heads(self.k_proj(k))
        v = self._split_heads(self.v_proj(v))
        batch = max(q.shape[0], k.shape[0])
        if k.shape[0] != batch:  # keys shared by the whole prompt batch
            k = k.expand(batch, -1, -1, -1)
            v = v.expand(batch, -1, -1, -1)
        if q.shape[0] != batch:  # queries shared by the whole prompt batch
            q = q.expand(batch, -1, -1, -1)
        out = F.scaled_dot_product_attention(q, k, v)
        _, heads, tokens, width = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(batch, tokens, heads * width))

    def attend_to_many(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Few queries q (B, n, E) against many keys/values k, v (B or 1, M, E); same result as
        ``forward``. score_h = q_h·(Wk_h x + bk_h) = (Wk_hᵀ q_h)·x + const per query row, which
        softmax drops; and Σ p·(Wv_h x + bv_h) = Wv_h (Σ p·x) + bv_h since each row of p sums to 1.
        So the M keys and values are never projected."""
        batch, few, _ = q.shape
        if not self._folding_pays(few):
            return self.forward(q, k, v)
        heads, head_dim, width = self.num_heads, self.internal_dim // self.num_heads, self.embedding_dim
        q_heads = self.q_proj(q).view(batch, few, heads, head_dim)
        q_in = torch.einsum("bnhd,hde->bhne", q_heads, self.k_proj.weight.view(heads, head_dim, width))
        q_in = q_in.reshape(batch, heads * few, width) * head_dim**-0.5
        if k.shape[0] == 1 and batch > 1:  # shared image side: all prompts' rows in one product
            q_in = q_in.reshape(1, batch * heads * few, width)
        probs = torch.softmax(q_in @ k.transpose(1, 2), dim=-1)
        mixed = (probs @ v).view(batch, heads, few, width)
        out = torch.einsum("bhne,hde->bnhd", mixed, self.v_proj.weight.view(heads, head_dim, width))
        out = out + self.v_proj.bias.view(heads, head_dim)
        return self.out_proj(out.reshape(batch, few, self.internal_dim))

    def attend_from_many(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        residual: Tensor | None = None,
        residual_owned: bool = False,
        record: list | None = None,
    ) -> Tensor:
        """Many queries q (B or 1, M, E) against few keys/values k, v (B, n, E); same result as
        ``forward`` (plus ``residual`` when given, added in the same product). score_h =
        (Wq_h x + bq_h)·k_h = x·(Wq_hᵀ k_h) + bq_h·k_h, and the output projection is folded into
        the values: Wo (Σ_h p_h v_h) + bo = Σ_h p_h (Wo_h v_h + bo / heads). The M queries are
        never projected, nor their M attention outputs. ``residual_owned``: the caller no longer
        needs ``residual``, which is then updated in place. Scores are laid out (B, heads, n, M) so
        that the softmax over the n tokens runs along contiguous rows of M. ``record``: gets the
        (probs, values) of the product when the fold runs."""
        batch, few, _ = k.shape
        if not self._folding_pays(few):
            out = self.forward(q, k, v)
            return out if residual is None else residual + out
        heads, head_dim, width = self.num_heads, self.internal_dim // self.num_heads, self.embedding_dim
        scale = head_dim**-0.5
        k_heads = self.k_proj(k).view(batch, few, heads, head_dim)
        q_weight = self.q_proj.weight.view(heads, head_dim, width)
        fold = torch.einsum("hde,bnhd->bhne", q_weight, k_heads).reshape(batch, heads * few, width) * scale
        offset = torch.einsum("hd,bnhd->bhn", self.q_proj.bias.view(heads, head_dim), k_heads)
        offset = offset.reshape(batch, heads, few, 1) * scale
        v_heads = self.v_proj(v).view(batch, few, heads, head_dim)
        v_out = torch.einsum("bnhd,ehd->bhne", v_heads, self.out_proj.weight.view(width, heads, head_dim))
        v_out = (v_out + self.out_proj.bias / heads).reshape(batch, heads * few, width)
        tokens = q.shape[1]
        if q.shape[0] == 1 and batch > 1:  # shared image side: one product for all prompts
            scores = (fold.reshape(batch * heads * few, width) @ q[0].T).view(batch, heads, few, tokens)
        else:
            scores = torch.bmm(fold, q.transpose(1, 2)).view(batch, heads, few, tokens)
        probs = torch.softmax(scores.add_(offset), dim=2).view(batch, heads * few, tokens).transpose(1, 2)
        if record is not None:
            record.append((probs, v_out))
        if residual is None:
            return torch.bmm(probs, v_out)
        # In place only without autograd: the backward of the earlier token→image attention
        # needs ``residual`` (its values) as it was.
        owned = residual_owned and not torch.is_grad_enabled()
        if owned and residual.shape[0] == batch and residual.is_contiguous():
            return residual.baddbmm_(probs, v_out)  # no second (B, M, E) tensor
        return torch.baddbmm(residual, probs, v_out)


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token→image cross-attention, token MLP, image→token cross-attention."""

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int = 2048,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLPBlock(embedding_dim, mlp_dim, activation)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self,
        queries: Tensor,
        keys: Tensor,
        query_pe: Tensor,
        key_pe: Tensor,
        keys_owned: bool = False,
        record: list | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``keys_owned``: ``keys`` is a temporary of the caller's (not the image embedding) and may
        be overwritten. ``record``: gets this layer's ``ImageUpdate``."""
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        k = keys + key_pe
        queries = self.norm2(
            queries + self.cross_attn_token_to_image.attend_to_many(queries + query_pe, k, keys)
        )
        queries = self.norm3(queries + self.mlp(queries))

        q = queries + query_pe
        step: list = []
        attended = self.cross_attn_image_to_token.attend_from_many(
            k,
            q,
            queries,
            residual=keys,
            residual_owned=keys_owned,
            record=step if record is not None else None,
        )
        return queries, norm_recorded(self.norm4, attended, step, record)


class TwoWayTransformer(nn.Module):
    def __init__(
        self,
        depth: int,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
    ) -> None:
        super().__init__()
        self.depth = depth
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim=embedding_dim,
                num_heads=num_heads,
                mlp_dim=mlp_dim,
                activation=activation,
                attention_downsample_rate=attention_downsample_rate,
                skip_first_layer_pe=(i == 0),
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(
        self,
        image_embedding: Tensor,
        image_pe: Tensor,
        point_embedding: Tensor,
        rows: list[int] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """image_embedding (1 or B, C, h, w), image_pe (1 or B, C, h, w), point_embedding (B, N, C)
        → processed tokens (B, N, C), or only the token ``rows`` the caller reads, and image tokens
        (B, h·w, C)."""
        # Channels-last tokens, contiguous: every later elementwise op and product then streams
        # memory in order (free when the caller already holds channels_last tensors).
        keys = image_embedding.flatten(2).transpose(1, 2).contiguous()
        key_pe = image_pe.flatten(2).transpose(1, 2).contiguous()
        return self.run_layers(point_embedding, keys, point_embedding, key_pe, start=0, rows=rows)

    def run_layers(
        self,
        queries: Tensor,
        keys: Tensor,
        point_embedding: Tensor,
        key_pe: Tensor,
        start: int,
        rows: list[int] | None = None,
        record: list | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Layers ``start``.. and the final token→image attention on channels-last (B or 1, h·w, C)
        image tokens ``keys``; those are this call's own temporaries from the second layer on
        (``engine.sam.prepared`` runs the first layer itself and enters at 1). The final attention
        lets each token attend to the image on its own, so it runs only for ``rows`` when given.
        ``record`` gets each layer's ``ImageUpdate``."""
        for index in range(start, len(self.layers)):
            queries, keys = self.layers[index](
                queries, keys, point_embedding, key_pe, keys_owned=index > 0, record=record
            )
        if rows is not None:
            queries, point_embedding = queries[:, rows], point_embedding[:, rows]
        attn_out = self.final_attn_token_to_image.attend_to_many(
            queries + point_embedding, keys + key_pe, keys
        )
        return self.norm_final_attn(queries + attn_out), keys
