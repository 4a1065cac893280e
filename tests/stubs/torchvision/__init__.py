"""Stand-in for torchvision: only what segment_anything and mobile_sam import."""
from . import ops, transforms  # noqa: F401
