"""Fully automatic mask generation (the data engine's third stage): ``MaskGenerator`` and the
``python -m engine.automatic`` command line."""

from engine.automatic.generator import MaskGenerator

__all__ = ["MaskGenerator"]
