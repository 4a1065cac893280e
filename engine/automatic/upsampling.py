"""Candidate-mask statistics at full resolution without building full-resolution masks.

segment_anything judges a candidate on its logits upsampled to the crop size: the stability score
is the ratio of the pixel counts above ``threshold + offset`` and ``threshold - offset``, and the
box of the pixels above ``threshold`` decides the crop-edge filter and NMS. On a 4000x3000 image
that is 12 M pixels per candidate, for tens of thousands of candidates of which few survive.

The last resize of ``Sam.postprocess_masks`` is a bilinear upscale from the model frame (h x w,
at most 1024 per side) to the crop (H x W). Every output pixel is a blend, with non-negative
weights, of the four model-frame values around it; the pixels that share the same four values
form a *cell* (about H/h x W/w pixels). A cell whose four corners are all above a threshold is
all above it, one with all four below is all below: only the cells on a mask's boundary need a
closer look. There, along one output column, the value is linear in the output row (the row
weight grows by the same step per row), so the rows above a threshold are a prefix or a suffix of
the cell's rows whose length follows from one division. So the pixel counts and the box above any
threshold come from the h x w model frame plus a few numbers per boundary column, exact in real
arithmetic (float rounding can move a pixel whose value is within a few ulps of the threshold,
far below the 1e-4 to which scores are compared). Only the masks that survive every filter are
then upsampled for real.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AxisPlan:
    """One axis of a bilinear resize (``align_corners=False``) from ``in_size`` to ``out_size``,
    as pieces over the model-frame values padded by one copy of the first and last value.

    Piece p (0 <= p <= in_size) holds the ``counts[p]`` consecutive output indices from
    ``starts[p]`` that blend padded values p and p + 1, with weights ``lambda0[p] + k * step`` on
    the second (k = 0, 1, ...). Piece 0 is where torch clamps the source position to the first
    value, piece ``in_size`` where the next index is clamped to the last one: their two padded
    values are equal, so the weights do not matter there."""

    out_size: int
    starts: torch.Tensor  # (in_size + 1,) int64
    counts: torch.Tensor  # (in_size + 1,) int64
    lambda0: torch.Tensor  # (in_size + 1,) float32
    step: float


def axis_plan(in_size: int, out_size: int) -> AxisPlan:
    """With torch's source positions: (i + 0.5) * in/out - 0.5, clamped at 0; index
    floor(position), weight position - index, next index clamped to the last."""
    if in_size < 1 or out_size < 1:
        raise ValueError(f"sizes must be positive, got {in_size} -> {out_size}")
    step = in_size / out_size
    position = (np.arange(out_size, dtype=np.float64) + 0.5) * step - 0.5
    piece = np.where(position <= 0.0, 0, np.minimum(np.floor(position), in_size - 1).astype(np.int64) + 1)
    counts = np.bincount(piece, minlength=in_size + 1)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    lambda0 = np.zeros(in_size + 1, dtype=np.float64)
    filled = np.flatnonzero(counts > 0)
    inner = filled[filled > 0]
    lambda0[inner] = position[starts[inner]] - (inner - 1)
    return AxisPlan(
        out_size=out_size,
        starts=torch.as_tensor(starts, dtype=torch.int64),
        counts=torch.as_tensor(counts, dtype=torch.int64),
        lambda0=torch.as_tensor(lambda0, dtype=torch.float32),
        step=step,
    )


def truncated_plan(plan: AxisPlan, size: int) -> AxisPlan:
    """The first ``size`` output indices of ``plan``: the resize followed by a crop, as the
    unpadding after ``Sam.postprocess_masks``' first resize (low-res logits to the padded square
    model frame, then the input's rows and columns)."""
    if not 1 <= size <= plan.out_size:
        raise ValueError(f"size must be in 1..{plan.out_size}, got {size}")
    counts = (plan.starts + plan.counts).clamp(max=size) - plan.starts
    return AxisPlan(
        out_size=size,
        starts=plan.starts.clamp(max=size),
        counts=counts.clamp(min=0),
        lambda0=plan.lambda0,
        step=plan.step,
    )


def upsample_to_model_frame(
    low_res: torch.Tensor, img_size: int, input_size: tuple[int, int]
) -> torch.Tensor:
    """(N, h, w) low-resolution logits → (N, input_h, input_w): the first resize of
    ``Sam.postprocess_masks`` (to the padded square model frame) and the unpadding.

    When the frame is a whole multiple r of the low-res side, only the low-res rows and columns
    that the kept part reads are resized, by the same factor r (so torch's source positions and
    weights are the same ones, bit for bit): the padding is never computed."""
    side_h, side_w = low_res.shape[-2:]
    if img_size % side_h == 0 and img_size % side_w == 0:
        factor_h, factor_w = img_size // side_h, img_size // side_w
        rows = min(side_h, -(-input_size[0] // factor_h) + 1)
        cols = min(side_w, -(-input_size[1] // factor_w) + 1)
        low_res = low_res[:, :rows, :cols]
        size = (rows * factor_h, cols * factor_w)
    else:
        size = (img_size, img_size)
    masks = F.interpolate(low_res[:, None], size, mode="bilinear", align_corners=False)
    return masks[:, 0, : input_size[0], : input_size[1]]


def resize_matrix(in_size: int, out_size: int) -> np.ndarray:
    """The bilinear resize (``align_corners=False``) of one axis from ``in_size`` to ``out_size``
    as an ``out_size x in_size`` float64 matrix: row i holds the two weights torch gives output i
    (source position (i + 0.5) * in / out - 0.5 clamped at 0, next index clamped to the last),
    worked out in float32 as torch's CPU kernel does for float32 logits."""
    if in_size < 1 or out_size < 1:
        raise ValueError(f"sizes must be positive, got {in_size} -> {out_size}")
    scale = np.float32(in_size) / np.float32(out_size)
    # scale * (i + 0.5) - 0.5 rounded once, as the kernel's fused multiply-add (exact in float64).
    position = (np.float64(scale) * (np.arange(out_size, dtype=np.float64) + 0.5) - 0.5).astype(np.float32)
    position = np.maximum(position, np.float32(0.0))
    index = np.minimum(np.floor(position).astype(np.int64), in_size - 1)
    weight = position - index.astype(np.float32)
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    out = np.arange(out_size)
    np.add.at(matrix, (out, index), (np.float32(1.0) - weight).astype(np.float64))
    np.add.at(matrix, (out, np.minimum(index + 1, in_size - 1)), weight.astype(np.float64))
    return matrix


class ComposedResize:
    """``Sam.postprocess_masks`` for a crop the model saw enlarged or at its own size (crop at
    most its input size on both axes): low-res logits → padded model frame → unpadded → crop
    size, as one linear map per axis, ``crop = R @ low_res @ C``.

    The two-step resize writes a model-frame image up to several times larger than the crop, per
    candidate, to read it back once; composed, each output pixel blends at most 3 x 3 low-res values
    (2 x 2 when the crop is the input size). Each map is banded, so it is applied in blocks of
    ``_BAND`` output columns, each a dense product with the few low-res rows or columns the block
    reads (the zeros left out add exactly nothing). The values equal the two-step ones up to float
    rounding (a few ulps: the pixels within that of the threshold may differ). Returns the logits
    transposed, N x W x H, the column-major order RLE encoding reads."""

    def __init__(
        self,
        low_res_size: tuple[int, int],
        img_size: int,
        input_size: tuple[int, int],
        crop_size: tuple[int, int],
    ) -> None:
        if not (crop_size[0] <= input_size[0] <= img_size and crop_size[1] <= input_size[1] <= img_size):
            raise ValueError(f"crop {crop_size} must fit in the input {input_size}, within {img_size}")
        rows = _axis_map(low_res_size[0], img_size, input_size[0], crop_size[0])  # H x h
        cols = _axis_map(low_res_size[1], img_size, input_size[1], crop_size[1])  # W x w
        # Low-res rows and columns no output pixel reads are left out of the products.
        self.rows_used = int(np.flatnonzero(rows.any(axis=0)).max()) + 1
        self.cols_used = int(np.flatnonzero(cols.any(axis=0)).max()) + 1
        self.col_bands = _bands(cols[:, : self.cols_used])
        self.row_bands = _bands(rows[:, : self.rows_used])
        self.crop_size = crop_size
        self._device = torch.device("cpu")

    def _move_to(self, device: torch.device) -> None:
        """Keep the band weights where the logits are (moved once, not per chunk)."""
        if device != self._device:
            self.col_bands = [(out, inputs, weights.to(device)) for out, inputs, weights in self.col_bands]
            self.row_bands = [(out, inputs, weights.to(device)) for out, inputs, weights in self.row_bands]
            self._device = device

    def transposed(self, low_res: torch.Tensor) -> torch.Tensor:
        """(N, h, w) low-res logits → (N, W, H) crop logits."""
        height, width = self.crop_size
        n = low_res.shape[0]
        self._move_to(low_res.device)
        used = low_res[:, : self.rows_used, : self.cols_used]
        along_x = low_res.new_empty((n, self.rows_used, width))
        for out, inputs, weights in self.col_bands:
            along_x[:, :, out] = used[:, :, inputs] @ weights
        along_x = along_x.transpose(1, 2)
        crop = low_res.new_empty((n, width, height))
        for out, inputs, weights in self.row_bands:
            crop[:, :, out] = along_x[:, :, inputs] @ weights
        return crop


# Output columns per band of a composed resize: the product with the band's ~B/scale + 3 inputs
# stays small, and fewer, larger products pay less per-call overhead (64 measured fastest).
_BAND = 64


def _bands(matrix: np.ndarray) -> list[tuple[slice, slice, torch.Tensor]]:
    """An out x in banded map as (output slice, input slice, in' x out' float32 weights)."""
    bands = []
    for start in range(0, matrix.shape[0], _BAND):
        block = matrix[start : start + _BAND]
        read = np.flatnonzero(block.any(axis=0))
        inputs = slice(int(read.min()), int(read.max()) + 1)
        weights = torch.as_tensor(block[:, inputs].T, dtype=torch.float32).contiguous()
        bands.append((slice(start, start + block.shape[0]), inputs, weights))
    return bands


def _axis_map(low_res: int, img_size: int, input_size: int, crop: int) -> np.ndarray:
    """crop x low_res: resize to the padded frame, keep the first ``input_size``, resize to ``crop``."""
    frame = resize_matrix(low_res, img_size)[:input_size]
    if crop == input_size:
        return frame
    return resize_matrix(input_size, crop) @ frame


def threshold_stats(
    frame: torch.Tensor,
    rows: AxisPlan,
    cols: AxisPlan,
    thresholds: tuple[float, ...],
    box_threshold: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel counts above each threshold, and the XYXY box (inclusive, as ``masks_to_boxes``) of
    the pixels above ``box_threshold`` (one of ``thresholds``), of the masks that resizing
    ``frame`` (N x h x w model-frame logits) by the plans ``rows`` and ``cols`` would give.

    Returns (counts N x len(thresholds) int64, boxes N x 4 int64, [0, 0, 0, 0] for an empty mask).
    """
    _, height, width = frame.shape
    if (rows.counts.shape[0], cols.counts.shape[0]) != (height + 1, width + 1):
        raise ValueError(
            f"plans for {rows.counts.shape[0] - 1} x {cols.counts.shape[0] - 1}, frame {height} x {width}"
        )
    if box_threshold not in thresholds:
        raise ValueError("box_threshold must be one of thresholds")
    plan = _CellPlan(rows, cols, frame.device)
    corners = _pad_edges(frame)
    # A cell all above the highest threshold is all above every threshold; one with no corner
    # above the lowest is above none. Only the cells in between are worked out column by column.
    full = _corner_reduce(corners > max(thresholds), torch.logical_and) & plan.nonempty
    mixed = _corner_reduce(corners > min(thresholds), torch.logical_or) & plan.nonempty & ~full
    per_row = full.to(torch.float32) @ plan.col_counts_f  # integer sums far below 2^24: exact
    areas = (per_row.double() @ plan.row_counts_f.double())[None].repeat(len(thresholds), 1)
    box = _full_cells_box(full, plan)
    # Mixed cells in blocks, so that memory does not depend on how ragged the masks are.
    cells = mixed.view(-1).nonzero().squeeze(1)
    block = max(1, _COLUMNS_PER_BLOCK // plan.max_cols)
    for start in range(0, cells.numel(), block):
        columns = _MixedColumns(corners, cells[start : start + block], mixed.shape, plan)
        for i, threshold in enumerate(thresholds):
            above = columns.rows_above(threshold)  # B x K
            # Per cell at most K x n rows, exact in float32.
            areas[i].index_add_(0, columns.mask, above.sum(dim=1).double())
            if threshold == box_threshold:
                box = _extend_box(box, columns, above, plan)
    left, top, right, bottom = box
    boxes = torch.stack([left, top, right, bottom], dim=1)
    boxes = torch.where((right >= 0)[:, None], boxes, torch.zeros((), dtype=boxes.dtype, device=boxes.device))
    return areas.round().to(torch.int64).T.contiguous(), boxes


# Columns of mixed cells worked on at once (about 10 float32 temporaries each).
_COLUMNS_PER_BLOCK = 1 << 20


def _pad_edges(frame: torch.Tensor) -> torch.Tensor:
    """N x h x w → N x (h+2) x (w+2), each border a copy of the nearest edge (replicate padding;
    F.pad's replicate kernel is several times slower on CPU than these copies)."""
    n, height, width = frame.shape
    padded = frame.new_empty((n, height + 2, width + 2))
    padded[:, 1:-1, 1:-1] = frame
    padded[:, 0, 1:-1] = frame[:, 0]
    padded[:, -1, 1:-1] = frame[:, -1]
    padded[:, :, 0] = padded[:, :, 1]
    padded[:, :, -1] = padded[:, :, -2]
    return padded


def _corner_reduce(above: torch.Tensor, op) -> torch.Tensor:
    """N x (h+2) x (w+2) → N x (h+1) x (w+1): ``op`` over each cell's four corners."""
    return op(op(above[:, :-1, :-1], above[:, 1:, :-1]), op(above[:, :-1, 1:], above[:, 1:, 1:]))


class _CellPlan:
    """Both axes' plans as tensors on the device."""

    def __init__(self, rows: AxisPlan, cols: AxisPlan, device: torch.device) -> None:
        self.rows, self.cols = rows, cols
        self.row_starts, self.row_counts = rows.starts.to(device), rows.counts.to(device)
        self.col_starts, self.col_counts = cols.starts.to(device), cols.counts.to(device)
        self.row_lambda0, self.col_lambda0 = rows.lambda0.to(device), cols.lambda0.to(device)
        self.row_counts_f, self.col_counts_f = self.row_counts.float(), self.col_counts.float()
        self.nonempty = (self.row_counts > 0)[:, None] & (self.col_counts > 0)[None, :]
        self.max_cols = int(self.col_counts.max())


class _MixedColumns:
    """The output columns of the cells that are neither all above nor all below: B cells x K
    columns (K = the most columns a cell has; the extra ones count no rows).

    Along a column of a cell the value is linear in the row: value(j) = upper + (lambda0 + j *
    step) * slope for the cell's rows j = 0..n-1, upper/lower being the cell's two model-frame
    rows resized along x at that column and slope = lower - upper. Above t: j > kappa when the
    slope rises, j < kappa otherwise, with kappa = ((t - upper) / slope - lambda0) / step. The
    count is clamp(ceil(z), 0, n), z = offset + (upper - t) / (|slope| * step) where offset =
    n - 1 + lambda0 / step (rising: z = n - 1 - kappa) or -lambda0 / step (falling: z = kappa).
    A flat column divides by ~0: all rows when upper > t, none otherwise."""

    def __init__(
        self, corners: torch.Tensor, cell: torch.Tensor, cells_shape: torch.Size, plan: _CellPlan
    ) -> None:
        """``cell``: flat indices into the N x (h+1) x (w+1) cells."""
        _, cell_rows, cell_cols = cells_shape
        frame_cols = cell_cols + 1
        self.mask = torch.div(cell, cell_rows * cell_cols, rounding_mode="floor")
        within = cell - self.mask * (cell_rows * cell_cols)
        r = torch.div(within, cell_cols, rounding_mode="floor")
        c = within - r * cell_cols
        self.r, self.c = r, c
        flat = corners.view(-1)
        top_left = self.mask * ((cell_rows + 1) * frame_cols) + r * frame_cols + c
        c00, c01 = flat[top_left], flat[top_left + 1]
        c10, c11 = flat[top_left + frame_cols], flat[top_left + frame_cols + 1]
        col_lambda0 = plan.col_lambda0[c]
        k = torch.arange(plan.max_cols, device=corners.device, dtype=torch.float32)[None, :]
        # upper(k) = c00 + (lambda0 + k * step) * (c01 - c00), linear in k; same for lower.
        upper_step, lower_step = (c01 - c00) * plan.cols.step, (c11 - c10) * plan.cols.step
        upper0 = torch.addcmul(c00, col_lambda0, c01 - c00)
        lower0 = torch.addcmul(c10, col_lambda0, c11 - c10)
        upper = torch.addcmul(upper0[:, None], k, upper_step[:, None])
        slope = torch.addcmul((lower0 - upper0)[:, None], k, (lower_step - upper_step)[:, None])
        self.rising = slope > 0
        inverse = slope.abs_().mul_(plan.rows.step).add_(1e-30).reciprocal_()
        n_rows = plan.row_counts[r].to(torch.float32)[:, None]
        lambda0 = plan.row_lambda0[r][:, None] / plan.rows.step
        offset = torch.where(self.rising, n_rows - 1 + lambda0, -lambda0)
        # z(t) = offset + (upper - t) * inverse = base - t * inverse.
        self.base = torch.addcmul(offset, upper, inverse)
        self.inverse = inverse
        valid = k < plan.col_counts[c].to(torch.float32)[:, None]
        self.limit = torch.where(valid, n_rows, 0.0)
        self.n_rows = n_rows

    def rows_above(self, threshold: float) -> torch.Tensor:
        z = torch.add(self.base, self.inverse, alpha=-threshold)
        z.ceil_().clamp_(min=0.0)
        return torch.minimum(z, self.limit, out=z)


def _full_cells_box(full: torch.Tensor, plan: _CellPlan) -> tuple[torch.Tensor, ...]:
    """(left, top, right, bottom) per mask over its full cells; beyond the image where none."""
    out_h, out_w = plan.rows.out_size, plan.cols.out_size
    full_rows, full_cols = full.any(dim=2), full.any(dim=1)  # N x (h+1), N x (w+1)
    left = torch.where(full_cols, plan.col_starts, out_w).amin(dim=1)
    right = torch.where(full_cols, plan.col_starts + plan.col_counts - 1, -1).amax(dim=1)
    top = torch.where(full_rows, plan.row_starts, out_h).amin(dim=1)
    bottom = torch.where(full_rows, plan.row_starts + plan.row_counts - 1, -1).amax(dim=1)
    return left, top, right, bottom


def _extend_box(
    box: tuple[torch.Tensor, ...], columns: _MixedColumns, above: torch.Tensor, plan: _CellPlan
) -> tuple[torch.Tensor, ...]:
    """Widen each mask's box by the rows above the threshold in its mixed cells' columns: the
    last ``above`` rows of the cell when the slope rises, the first ones otherwise.

    Pieces are ordered along each axis, so a mask's leftmost such pixel lies in its leftmost
    cell column that has any (and so on for the other sides): only those cells are looked at
    column by column."""
    left, top, right, bottom = box
    on = above > 0
    lit = on.any(dim=1)  # B: cells with some row above
    if not bool(lit.any()):
        return box
    n = left.shape[0]
    big = plan.rows.out_size + plan.cols.out_size + len(plan.row_starts) + len(plan.col_starts)
    mask, r, c = columns.mask, columns.r, columns.c

    def extreme_cells(piece: torch.Tensor, reduce: str) -> torch.Tensor:
        fill = big if reduce == "amin" else -1
        per_mask = torch.full((n,), fill, dtype=piece.dtype, device=piece.device)
        per_mask = per_mask.scatter_reduce(0, mask, torch.where(lit, piece, fill), reduce)
        return (lit & (piece == per_mask[mask])).nonzero().squeeze(1)

    k = torch.arange(above.shape[1], device=above.device)
    cells = extreme_cells(c, "amin")
    first = torch.where(on[cells], k, big).amin(dim=1)
    left = left.scatter_reduce(0, mask[cells], plan.col_starts[c[cells]] + first, "amin")
    cells = extreme_cells(c, "amax")
    last = torch.where(on[cells], k, -1).amax(dim=1)
    right = right.scatter_reduce(0, mask[cells], plan.col_starts[c[cells]] + last, "amax")
    cells = extreme_cells(r, "amin")
    cell_on, cell_above, n_rows = on[cells], above[cells], columns.n_rows[cells]
    offset = torch.where(columns.rising[cells], n_rows - cell_above, 0.0)
    offset = torch.where(cell_on, offset, float(big)).amin(dim=1).to(torch.int64)
    top = top.scatter_reduce(0, mask[cells], plan.row_starts[r[cells]] + offset, "amin")
    cells = extreme_cells(r, "amax")
    cell_on, cell_above, n_rows = on[cells], above[cells], columns.n_rows[cells]
    offset = torch.where(columns.rising[cells], n_rows, cell_above) - 1
    offset = torch.where(cell_on, offset, -1.0).amax(dim=1).to(torch.int64)
    bottom = bottom.scatter_reduce(0, mask[cells], plan.row_starts[r[cells]] + offset, "amax")
    return left, top, right, bottom
