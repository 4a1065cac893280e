"""Process-wide settings for running the models on a CPU.

glibc's malloc hands large blocks back to the kernel eagerly: a block above the (adaptive) mmap
threshold is unmapped when freed, and free space at the top of the heap is trimmed once it passes
twice that threshold. A SAM decoder call allocates and frees ~30 tensors of 1-8 MB; with the
defaults many of them come back as fresh pages, and the first touch of every 4 KB page is a page
fault. On the 2-core machine this was ~1.5 million faults per 100 clicks and 15-25 % of a click's
CPU time. ``tune_malloc`` fixes the thresholds (no adaptive mmap for blocks up to 32 MB, trim only
past 256 MB free), so the same heap memory serves the next click. The process keeps up to that much
free heap instead of returning it at once; larger blocks are still mapped and returned.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's maximum for 64-bit processes
TRIM_THRESHOLD = 256 * 1024 * 1024

_tuned: bool | None = None


def tune_malloc(enabled: bool | None = None) -> bool:
    """Set glibc's mmap and trim thresholds for this process (once); True when they are set.

    ``enabled`` None reads ``MASKMILL_TUNE_MALLOC`` (default on; ``0`` turns it off). Does nothing
    on other C libraries (musl, macOS), where the call is not available."""
    global _tuned
    if _tuned is not None:
        return _tuned
    if enabled is None:
        setting = os.environ.get("MASKMILL_TUNE_MALLOC", "1").strip().lower()
        enabled = setting not in ("0", "false", "no", "off")
    _tuned = False
    if not enabled or not sys.platform.startswith("linux"):
        return _tuned
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return _tuned
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    mmap_set = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    _tuned = mmap_set and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if not _tuned:
        log.warning("mallopt refused the thresholds; decoding runs with glibc's defaults")
    return _tuned
