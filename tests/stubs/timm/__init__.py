"""Stand-in for timm: only the four names MobileSAM's tiny_vit_sam imports (the real timm would
pull torchvision, which has no CPU build here)."""

from . import models  # noqa: F401
