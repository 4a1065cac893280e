"""Promptable segmentation of one image at a time: segment_anything's ``SamPredictor`` API.

The image is encoded once (``set_image``, or ``set_embedding`` with a cached embedding) and every
prompt after that only runs the light prompt encoder and mask decoder. All per-image state lives
here, never in the model, so one loaded model can serve many predictors in many threads.
"""

from __future__ import annotations

import numpy as np
import torch

from engine import prompts
from engine.embeddings import check_embedding
from engine.images import check_image_array
from engine.sam import prepared
from engine.transforms import ResizeLongestSide, preprocess_shape


class Predictor:
    """Same methods, arguments and outputs as ``segment_anything.SamPredictor``."""

    is_fallback = False
    name = "sam"

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.transform = ResizeLongestSide(model.image_encoder.img_size)
        self._dense_pe: torch.Tensor | None = None
        self.reset_image()

    # ---- image -----------------------------------------------------------------------------

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Encode an HxWx3 uint8 image (RGB or BGR) for the following ``predict`` calls."""
        check_image_array(image, image_format)
        if image_format != self.model.image_format:
            image = image[..., ::-1]
        resized = self.transform.apply_image(np.ascontiguousarray(image))
        tensor = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None]
        self.set_torch_image(tensor, image.shape[:2])

    @torch.no_grad()
    def set_torch_image(self, transformed_image: torch.Tensor, original_image_size: tuple[int, ...]) -> None:
        """Encode a 1x3xHxW image already resized with ResizeLongestSide (long side = img_size)."""
        size = self.model.image_encoder.img_size
        if not isinstance(transformed_image, torch.Tensor):
            raise TypeError(
                f"transformed_image must be a torch.Tensor, not {type(transformed_image).__name__}"
            )
        shape = tuple(transformed_image.shape)
        if len(shape) != 4 or shape[0] != 1 or shape[1] != 3 or max(shape[2:]) != size:
            raise ValueError(f"set_torch_image input must be 1x3xHxW with long side {size}, got {shape}")
        original = self._check_size(original_image_size, "original_image_size")
        self.reset_image()
        self.original_size = original
        self.input_size = (shape[2], shape[3])
        self.features = self.model.image_encoder(self.model.preprocess(transformed_image))
        self.is_image_set = True

    def set_embedding(
        self,
        embedding: torch.Tensor | np.ndarray,
        original_size: tuple[int, int],
        input_size: tuple[int, int] | None = None,
    ) -> None:
        """Use a cached image embedding (1xCxhxw, as ``get_image_embedding`` returned it) instead of
        running the encoder. ``input_size`` is the resized image size; derived when omitted."""
        original = self._check_size(original_size, "original_size")
        expected_input = preprocess_shape(original[0], original[1], self.model.image_encoder.img_size)
        if input_size is None:
            input_size = expected_input
        input_size = self._check_size(input_size, "input_size")
        if input_size != expected_input:
            raise ValueError(
                f"input_size {input_size} does not match original_size {original}: resizing the long "
                f"side to {self.model.image_encoder.img_size} gives {expected_input}"
            )
        if isinstance(embedding, np.ndarray):
            embedding = torch.from_numpy(embedding)
        embedding = check_embedding(embedding, self.model)
        self.reset_image()
        self.original_size = original
        self.input_size = input_size
        self.features = embedding
        self.is_image_set = True

    # ---- prompts ---------------------------------------------------------------------------

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks (CxHxW bool, or logits), quality scores (C,) and low-res logits (Cx256x256) for
        prompts in original-image pixels: points Nx2 XY with labels N (1 fg, 0 bg), a box XYXY, and
        a 1x256x256 logit mask from a previous round."""
        if not self.is_image_set:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
        coords, labels = prompts.check_points(point_coords, point_labels, self.original_size)
        boxes = prompts.check_box(box, self.original_size)
        mask = prompts.check_mask_input(mask_input, self.model.prompt_encoder.mask_input_size)
        multimask_output = prompts.check_multimask(multimask_output)
        prompts.check_any_prompt(coords is not None and len(coords) > 0, boxes is not None, mask is not None)
        coords_t = labels_t = box_t = mask_t = None
        if coords is not None:
            coords = self.transform.apply_coords(coords, self.original_size)
            coords_t = torch.as_tensor(coords, dtype=torch.float, device=self.device)[None]
            labels_t = torch.as_tensor(labels, dtype=torch.int, device=self.device)[None]
        if boxes is not None:
            boxes = self.transform.apply_boxes(boxes[None], self.original_size)
            box_t = torch.as_tensor(boxes, dtype=torch.float, device=self.device)
        if mask is not None:
            mask_t = torch.as_tensor(mask, dtype=torch.float, device=self.device)[None]
        masks, scores, low_res = self.predict_torch(
            coords_t, labels_t, box_t, mask_t, multimask_output, return_logits=return_logits
        )
        return masks[0].cpu().numpy(), scores[0].cpu().numpy(), low_res[0].cpu().numpy()

    @torch.no_grad()
    def predict_torch(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batched prompts already in the model's input frame: points BxNx2, labels BxN, boxes
        Bx4, mask_input Bx1x256x256 → masks BxCxHxW, scores BxC, low-res logits BxCx256x256."""
        if not self.is_image_set:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
        points = (point_coords, point_labels) if point_coords is not None else None
        if self._prepared is None and prepared.supports(self.model):
            self._prepared = prepared.prepare_image(self.model, self.features)
        image_pe = None if self._prepared is not None else self.dense_pe
        low_res, scores = prepared.decode_prompts(
            self.model, self._prepared, self.features, image_pe, points, boxes, mask_input, multimask_output
        )
        masks = self.model.postprocess_masks(low_res, self.input_size, self.original_size)
        if not return_logits:
            masks = masks > self.model.mask_threshold
        return masks, scores, low_res

    # ---- state -----------------------------------------------------------------------------

    @property
    def dense_pe(self) -> torch.Tensor:
        """The model's positional encoding of the embedding grid, computed once per predictor."""
        if self._dense_pe is None:
            with torch.no_grad():
                self._dense_pe = self.model.prompt_encoder.get_dense_pe()
        return self._dense_pe

    def get_image_embedding(self) -> torch.Tensor:
        """The 1xCxhxw embedding of the current image (C=256, h=w=64 for SAM)."""
        if not self.is_image_set or self.features is None:
            raise RuntimeError("An image must be set with .set_image(...) to generate an embedding.")
        return self.features

    @property
    def device(self) -> torch.device:
        return self.model.device

    def reset_image(self) -> None:
        self.is_image_set = False
        self.features: torch.Tensor | None = None
        # The decoder's image side for engine.sam models, built on the first prompt (a few ms) and
        # reused by every later one.
        self._prepared: prepared.PreparedImage | None = None
        self.original_size: tuple[int, int] | None = None
        self.input_size: tuple[int, int] | None = None
        self.orig_h = self.orig_w = self.input_h = self.input_w = None

    # ---- validation ------------------------------------------------------------------------

    @staticmethod
    def _check_size(size: object, name: str) -> tuple[int, int]:
        try:
            h, w = (int(v) for v in size)  # type: ignore[union-attr]
            ok = all(float(v) == int(v) for v in size)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be (height, width), got {size!r}") from None
        if not ok or h < 1 or w < 1:
            raise ValueError(f"{name} must be two positive integers (height, width), got {size!r}")
        return h, w
