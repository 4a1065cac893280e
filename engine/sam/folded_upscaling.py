"""The mask decoder's first upscaling layer, pushed through the transformer instead of applied to
its 64x64 output tokens.

Without a mask prompt every prompt's image tokens start as the same embedding ``x0`` (with the
no-mask embedding), and each two-way layer only adds a change of rank heads·n (its image→token
attention, ``ImageUpdate``) before a LayerNorm. The first upscaling layer is linear (a 2x2-block
transposed convolution: tokens @ W + b), and a LayerNorm is a per-row affine map, so layer by layer
(l = 0..L-1, Γ_l = diag(norm weight), G_L = W, G_l = Γ_l G_{l+1}, R_l = ∏_{j≥l} rstd_j):

    tokens_L @ W + b = R_0 ⊙ (x0 @ G_0) + Σ_l R_l ⊙ P_l (V_l G_l) − Σ_l (R_l μ_l) ⊗ 1ᵀG_l
                       + Σ_l R_{l+1} ⊗ β_l G_{l+1} + b

``x0 @ G_0`` is one product per image; per prompt there is one product whose inner size is the
ranks plus 2L (116 for SAM) instead of the 256 channels: about half of that layer's work, which
is the decoder's largest product. The numbers equal the plain layer's up to float rounding
(tests/engine/test_folded_upscaling.py); the rows of ``x0 @ G_0`` and of the μ terms cancel only
by the rows' mean over their spread, which the LayerNorms keep small."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from engine.sam.mask_decoder import block_upscaling, block_weight
from engine.sam.transformer import ImageUpdate, TwoWayTransformer


class FoldedFirstUpscale:
    """The first upscaling layer's output for prompts decoded on one image, from the image's
    first-layer tokens ``x0`` (1, h·w, C) and each prompt's recorded ``ImageUpdate``s."""

    def __init__(self, model: nn.Module, x0: Tensor) -> None:
        decoder = model.mask_decoder
        conv = decoder.output_upscaling[0]
        weight = block_weight(conv)  # (C, 2·2·mid)
        norms = [layer.norm4 for layer in decoder.transformer.layers]
        maps: list[Tensor] = [weight] * (len(norms) + 1)  # G_l
        for index in reversed(range(len(norms))):
            maps[index] = norms[index].weight[:, None] * maps[index + 1]
        self.maps = maps[:-1]
        self.sums = torch.stack([g.sum(0) for g in self.maps])  # 1ᵀG_l
        shifts = [norm.bias @ following for norm, following in zip(norms, maps[1:])]  # β_l G_{l+1}
        self.shifts = torch.stack(shifts[:-1]) if len(shifts) > 1 else weight.new_zeros((0, weight.shape[1]))
        self.constant = shifts[-1] + conv.bias.repeat(4)
        self.shared = x0[0] @ maps[0]  # (h·w, 2·2·mid)

    @staticmethod
    def applies(model: nn.Module) -> bool:
        """Whether ``model``'s decoder has the parts the folding assumes: block upscaling and
        a LayerNorm after every layer's image→token attention."""
        decoder = getattr(model, "mask_decoder", None)
        transformer = getattr(decoder, "transformer", None)
        return (
            isinstance(transformer, TwoWayTransformer)
            and len(transformer.layers) > 0
            and block_upscaling(decoder.output_upscaling) is not None
            and all(
                type(layer.norm4) is nn.LayerNorm and layer.norm4.elementwise_affine
                for layer in transformer.layers
            )
        )

    def bind(
        self, record: list[ImageUpdate | None], rows: Tensor | None = None
    ) -> Callable[[int, int], Tensor] | None:
        """For one decoded chunk's ``record`` (the prompts ``rows`` of it, all when None): a
        function (start, n) → those prompts' first-layer output (n·h·w, 2·2·mid); None when the
        record is incomplete (a layer whose attention did not fold)."""
        if len(record) != len(self.maps) or any(update is None for update in record):
            return None
        updates = [_select(update, rows) for update in record]

        def first(start: int, n: int) -> Tensor:
            return self._first([_part(update, start, n) for update in updates])

        return first

    def _first(self, updates: list[ImageUpdate]) -> Tensor:
        n, pixels = updates[0].mean.shape[:2]
        layers = len(updates)
        # R_l, from the last layer back: R_L = 1.
        scales: list[Tensor] = [updates[-1].rstd[..., 0]]
        for update in reversed(updates[:-1]):
            scales.insert(0, update.rstd[..., 0] * scales[0])
        ranks = [update.values.shape[1] for update in updates]
        columns = sum(ranks) + 2 * layers
        factors = self.shared.new_empty((n, columns, pixels))  # Uᵀ: rows contiguous along pixels
        position = 0
        for update, scale, rank in zip(updates, scales, ranks):
            torch.mul(
                update.probs.transpose(1, 2), scale[:, None, :], out=factors[:, position : position + rank]
            )
            position += rank
        for update, scale in zip(updates, scales):
            torch.mul(scale, update.mean[..., 0], out=factors[:, position]).neg_()
            position += 1
        for scale in scales[1:]:
            factors[:, position] = scale
            position += 1
        factors[:, position] = 1.0
        rows = [update.values @ g for update, g in zip(updates, self.maps)]
        rows += [self.sums.expand(n, -1, -1), self.shifts.expand(n, -1, -1), self.constant.expand(n, 1, -1)]
        weights = torch.cat(rows, dim=1)  # (n, columns, 2·2·mid)
        out = torch.mul(self.shared, scales[0][..., None])
        return out.baddbmm_(factors.transpose(1, 2), weights).view(n * pixels, -1)


def _select(update: ImageUpdate, rows: Tensor | None) -> ImageUpdate:
    if rows is None:
        return update
    probs = update.probs.transpose(1, 2)[rows].transpose(1, 2)
    return ImageUpdate(probs, update.values[rows], update.mean[rows], update.rstd[rows])


def _part(update: ImageUpdate, start: int, n: int) -> ImageUpdate:
    end = start + n
    return ImageUpdate(
        update.probs[start:end], update.values[start:end], update.mean[start:end], update.rstd[start:end]
    )
