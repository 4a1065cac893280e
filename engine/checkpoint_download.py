"""Downloading checkpoints (not loading them: that is ``engine.sam.checkpoint_load``): the official
files and a download that survives real networks.

``download`` streams into ``<file>.part`` next to the destination, resumes an interrupted
transfer with an HTTP Range request (and starts over when the server ignores Range), retries
transient failures (connection errors, truncated bodies, timeouts, HTTP 5xx/408/429) with
exponential backoff, verifies the SHA-256 before the file gets its final name, and does nothing
when a verified file is already there. Only the standard library does the HTTP, so the engine
keeps no web dependency.
"""

from __future__ import annotations

import fcntl
import hashlib
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkpoint:
    """One published checkpoint file: where it comes from and what it must hash to."""

    model_type: str
    filename: str
    url: str
    sha256: str
    size: int  # bytes, for the progress bar before the server answers and for a sanity check


# SHA-256 sums and sizes as published by projects that pin these files (for example micro-sam's
# model registry); they agree with the MD5 prefixes in the SAM file names.
CHECKPOINTS: dict[str, Checkpoint] = {
    checkpoint.model_type: checkpoint
    for checkpoint in (
        Checkpoint(
            "vit_b",
            "sam_vit_b_01ec64.pth",
            "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
            "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
            375_042_383,
        ),
        Checkpoint(
            "vit_l",
            "sam_vit_l_0b3195.pth",
            "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
            "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
            1_249_524_607,
        ),
        Checkpoint(
            "vit_h",
            "sam_vit_h_4b8939.pth",
            "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
            "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
            2_564_550_879,
        ),
        Checkpoint(
            "vit_t",
            "mobile_sam.pt",
            "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
            "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
            40_728_226,
        ),
    )
}

_CHUNK = 1 << 20
_TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class DownloadError(RuntimeError):
    """The file could not be fetched (a permanent HTTP error, or transient ones past the retries)."""


class ChecksumError(DownloadError):
    """The fetched bytes do not hash to the expected SHA-256."""


class _Transient(Exception):
    """A failure worth retrying (raised inside one attempt)."""


def checkpoint_for(model_type: str) -> Checkpoint:
    try:
        return CHECKPOINTS[model_type]
    except KeyError:
        raise ValueError(
            f"unknown model type {model_type!r}; official checkpoints exist for {', '.join(CHECKPOINTS)}"
        ) from None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def download(
    model_type: str,
    dest_dir: str | os.PathLike,
    url: str | None = None,
    expected_sha256: str | None = None,
    progress: bool = True,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Fetch the official checkpoint for ``model_type`` into ``dest_dir`` and return its path.

    ``url`` overrides the source (a mirror); the file keeps its official name and must still
    hash to the official SHA-256 unless ``expected_sha256`` says otherwise. ``retries`` counts
    consecutive failed attempts (an attempt that received data resets the count), waiting
    ``backoff * 2**n`` seconds (at most 60) before each new one.
    """
    checkpoint = checkpoint_for(model_type)
    expected = (expected_sha256 or checkpoint.sha256).lower()
    if not _SHA256_HEX.fullmatch(expected):
        raise ValueError(f"expected_sha256 must be 64 hex digits, got {expected_sha256!r}")
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    source = url or checkpoint.url
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / checkpoint.filename
    part = target.with_name(target.name + ".part")

    # One download per file at a time: a second caller waits, then finds the verified file.
    with open(target.with_name(target.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            actual = sha256_of(target)
            if actual == expected:
                logger.info("%s is already present and verified", target)
                return target
            aside = _set_aside(target)
            logger.warning("%s has SHA-256 %s, not %s: moved to %s", target, actual, expected, aside)
        _fetch(source, part, checkpoint, progress, retries, backoff, timeout, sleep)
        actual = sha256_of(part)
        if actual != expected:
            aside = _set_aside(part, target)
            raise ChecksumError(
                f"{source} gave a file with SHA-256 {actual}, expected {expected}; "
                f"not installed (kept as {aside} for inspection)"
            )
        os.replace(part, target)
        return target


def _set_aside(path: Path, named_after: Path | None = None) -> Path:
    aside = (named_after or path).with_name((named_after or path).name + ".sha256-mismatch")
    os.replace(path, aside)
    return aside


def _fetch(
    url: str,
    part: Path,
    checkpoint: Checkpoint,
    progress: bool,
    retries: int,
    backoff: float,
    timeout: float,
    sleep: Callable[[float], None],
) -> None:
    failures = 0
    with tqdm(
        total=checkpoint.size,
        initial=part.stat().st_size if part.exists() else 0,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=checkpoint.filename,
        disable=not progress,
    ) as bar:
        while True:
            before = part.stat().st_size if part.exists() else 0
            try:
                if _attempt(url, part, bar, timeout):
                    return
            except _Transient as exc:
                gained = (part.stat().st_size if part.exists() else 0) > before
                failures = 0 if gained else failures + 1
                if failures > retries:
                    message = f"giving up on {url} after {retries + 1} failed attempts in a row: {exc}"
                    raise DownloadError(message) from exc
                wait = min(backoff * 2 ** max(failures - 1, 0), 60.0)
                logger.warning("download of %s interrupted (%s); retrying in %.1fs", url, exc, wait)
                sleep(wait)


def _attempt(url: str, part: Path, bar: tqdm, timeout: float) -> bool:
    """One HTTP request, appending to ``part``; True once the file is complete."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "maskmill-fetch/1"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left past our offset: complete, or a stale part
            total = _total_from_content_range(exc.headers.get("Content-Range"))
            if total == have:
                return True
            part.unlink()
            bar.reset(total=bar.total)
            raise _Transient(f"HTTP 416 for a {have}-byte partial file; starting over") from exc
        if exc.code in _TRANSIENT_HTTP:
            raise _Transient(f"HTTP {exc.code} {exc.reason}") from exc
        raise DownloadError(f"{url} answered HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _Transient(f"{type(exc).__name__}: {exc}") from exc

    with response:
        if have and response.status == 206:
            start, total = _parse_content_range(response.headers.get("Content-Range"), url)
            if start != have:
                raise DownloadError(f"{url} resumed at byte {start}, asked for {have}")
            mode = "ab"
        else:  # a full body: the server ignores Range (or we asked for none)
            if have:
                logger.info("%s does not support resuming; starting over", url)
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None else None
            have, mode = 0, "wb"
            bar.reset(total=total or bar.total)
        if total is not None:
            bar.total = total
        with open(part, mode) as handle:
            try:
                while block := response.read(_CHUNK):
                    handle.write(block)
                    have += len(block)
                    bar.update(len(block))
            except (OSError, http.client.HTTPException) as exc:
                raise _Transient(f"connection lost after {have} bytes: {exc}") from exc
            finally:
                handle.flush()
                os.fsync(handle.fileno())
    if total is not None and have < total:
        raise _Transient(f"connection closed after {have} of {total} bytes")
    return True


def _parse_content_range(header: str | None, url: str) -> tuple[int, int | None]:
    match = _CONTENT_RANGE.fullmatch((header or "").strip())
    if not match:
        raise DownloadError(f"{url} answered 206 with an unusable Content-Range {header!r}")
    total = match.group(3)
    return int(match.group(1)), (int(total) if total != "*" else None)


def _total_from_content_range(header: str | None) -> int | None:
    match = re.fullmatch(r"bytes \*/(\d+)", (header or "").strip())
    return int(match.group(1)) if match else None
