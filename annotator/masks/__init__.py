"""Masks: COCO RLE with geometry, scores and provenance, and every write on them (checked
against the image, versioned)."""
