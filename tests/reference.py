"""Import the official reference packages (segment_anything, mobile_sam) with our stand-ins for
torchvision and timm, or skip the calling test with the reason."""

import importlib
import sys
from pathlib import Path

import pytest

STUBS = str(Path(__file__).parent / "stubs")


def reference(module: str):
    """Return the imported reference module, skipping the test if it is not installed."""
    if STUBS not in sys.path:
        sys.path.insert(0, STUBS)
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        pytest.skip(f"reference package {module!r} is not installed ({exc}); run `make test` to install it")
