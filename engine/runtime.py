"""Process-wide settings for running the models on a CPU (the measurements behind them are in
docs/performance.md).

**One thread for torch** (``ModelThread``). Every Python thread that runs a parallel torch op gets
an OpenMP team of its own, and libgomp's idle workers stop spinning once a process has more of them
than CPUs: each parallel region of a click then pays a futex sleep and wake-up. A web process runs
all its torch work on one ``ModelThread``, and work that must not wait behind clicks (an on-demand
image encoding) on a short-lived thread, whose team goes away with it.

**Its own core count** (``ModelThread(threads=...)``, ``default_model_threads``). The request
threads around the model thread need a core too (HTTP, the database, masks as RLE), and an OpenMP
team as wide as the machine stalls at every barrier of a click whenever one of its workers is
descheduled for them (or for any other process): the model thread leaves one core free.

**malloc thresholds** (``tune_malloc``). glibc unmaps large freed blocks and trims the heap eagerly,
so the decoder's 1-8 MB temporaries come back as fresh pages and every first touch is a page
fault. Fixed thresholds (no adaptive mmap for blocks up to 32 MB, trim only past 256 MB free) let
the same heap memory serve the next click; the process keeps up to that much free heap.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

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


def usable_cpus() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_model_threads() -> int:
    """torch threads of a web process's model thread: every usable core but one, at least one."""
    return max(1, usable_cpus() - 1)


class ModelThread:
    """A single long-lived thread that runs every torch call of a multi-threaded process, in
    arrival order, each with ``threads`` cores (None: torch's process-wide count; see the module
    docstring for why one thread, and why not every core).

    ``run`` blocks the calling thread until its call is done and returns its result (or raises
    its exception); a call made from the model thread itself runs inline instead of deadlocking."""

    def __init__(self, name: str = "maskmill-model", threads: int | None = None) -> None:
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.threads = threads
        # torch's count for threads that had not touched torch yet, as the model thread found it
        # (set_num_threads also changes that count: other torch threads set theirs back from it)
        self.process_threads: int | None = None
        self._ident: int | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name, initializer=self._start)

    def _start(self) -> None:
        self._ident = threading.get_ident()
        if self.threads is not None:
            import torch

            self.process_threads = torch.get_num_threads()
            torch.set_num_threads(self.threads)

    def run(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        return self.run_timed(fn, *args, **kwargs)[0]

    def run_timed(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> tuple[R, float]:
        """``run``, plus the seconds the call waited for the calls before it."""
        if threading.get_ident() == self._ident:
            return fn(*args, **kwargs), 0.0
        submitted = time.perf_counter()

        def job() -> tuple[R, float]:
            waited = time.perf_counter() - submitted
            return fn(*args, **kwargs), waited

        return self._executor.submit(job).result()
