"""SAM's prompt encoder: points and box corners → sparse tokens, a low-res mask → dense map.

Positions are encoded with random Fourier features (a fixed Gaussian projection of the
normalised coordinates); learned embeddings mark positive/negative points, the two box corners and
padding ("not a point"). Parameter names match segment_anything's ``PromptEncoder``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from engine.sam.common import LayerNorm2d

# Point label values the model understands: -1 padding, 0 negative, 1 positive.
POINT_LABELS = (-1, 0, 1)


class PositionEmbeddingRandom(nn.Module):
    """Random spatial-frequency encoding of (x, y) in [0, 1]² into 2·num_pos_feats channels."""

    def __init__(self, num_pos_feats: int = 64, scale: float | None = None) -> None:
        super().__init__()
        scale = 1.0 if scale is None or scale <= 0.0 else scale
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn((2, num_pos_feats)))

    def _encode(self, coords: torch.Tensor) -> torch.Tensor:
        projected = (2 * coords - 1) @ self.positional_encoding_gaussian_matrix
        projected = projected * (2 * math.pi)
        return torch.cat([torch.sin(projected), torch.cos(projected)], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """(C, h, w) encoding of the centres of an h×w grid."""
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        grid = torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w)], dim=-1)
        return self._encode(grid).permute(2, 0, 1)

    def forward_with_coords(self, coords: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """(B, N, C) encoding of pixel XY coordinates in an image of (H, W)."""
        size_xy = torch.tensor([image_size[1], image_size[0]], dtype=torch.float32, device=coords.device)
        return self._encode(coords.to(torch.float32) / size_xy)


class PromptEncoder(nn.Module):
    def __init__(
        self,
        embed_dim: int,
        image_embedding_size: tuple[int, int],
        input_image_size: tuple[int, int],
        mask_in_chans: int,
        activation: type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = input_image_size
        self.image_embedding_size = image_embedding_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        # 0: negative point, 1: positive point, 2: box top-left, 3: box bottom-right.
        self.num_point_embeddings = 4
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            activation(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            activation(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """(1, C, h, w) positional encoding of the image embedding grid."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def _embed_points(self, points: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        points = points + 0.5  # pixel centres
        if pad:  # without a box, a padding token keeps the decoder's input length what SAM saw
            points = torch.cat([points, points.new_zeros((points.shape[0], 1, 2))], dim=1)
            labels = torch.cat([labels, labels.new_full((labels.shape[0], 1), -1)], dim=1)
        encoded = self.pe_layer.forward_with_coords(points, self.input_image_size)
        labels = labels[..., None]
        is_padding = labels == -1
        learned = torch.where(
            labels == 1,
            self.point_embeddings[1].weight,
            torch.where(labels == 0, self.point_embeddings[0].weight, torch.zeros_like(encoded[:1, :1])),
        )
        learned = torch.where(is_padding, self.not_a_point_embed.weight, learned)
        return torch.where(is_padding, learned, encoded + learned)

    def _embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        corners = (boxes + 0.5).reshape(-1, 2, 2)
        encoded = self.pe_layer.forward_with_coords(corners, self.input_image_size)
        corner_embeds = torch.cat([self.point_embeddings[2].weight, self.point_embeddings[3].weight], dim=0)
        return encoded + corner_embeds

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse (B, N, C) tokens for points/boxes and dense (B, C, h, w) mask embeddings."""
        if points is not None:
            batch = points[0].shape[0]
        elif boxes is not None:
            batch = boxes.shape[0]
        elif masks is not None:
            batch = masks.shape[0]
        else:
            batch = 1
        device = self.no_mask_embed.weight.device
        sparse_parts = []
        if points is not None:
            sparse_parts.append(self._embed_points(points[0], points[1], pad=boxes is None))
        if boxes is not None:
            sparse_parts.append(self._embed_boxes(boxes))
        if sparse_parts:
            sparse = torch.cat(sparse_parts, dim=1) if len(sparse_parts) > 1 else sparse_parts[0]
        else:
            sparse = torch.empty((batch, 0, self.embed_dim), device=device)
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            h, w = self.image_embedding_size
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch, -1, h, w)
        return sparse, dense
