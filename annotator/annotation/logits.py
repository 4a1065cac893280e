"""Logits handles: the low-res logits of one answer, kept for the next click's mask prompt.

The next click of an annotator may be served by another web process (gunicorn runs several) or
thread than the one that answered the last, so entries live in a store every process shares:
Redis when the platform has one, else files under ``var/`` (the embedded default). A small LRU in
process memory sits in front, so a click served by the same process reads no store at all.

Entries are scoped to their user (the key) and image (checked on read: a handle of another image
is not found, like an expired one), expire after a TTL, and keep the float32 logits bit-exact (raw
bytes, no compression): the next round must equal ``SamPredictor`` given the same logits. A store
that fails (Redis down, a full disk) costs the cross-process lookup, never the click.

No Django here: ``annotator.annotation.services.decoding`` builds the store from the settings.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)

HANDLE_PATTERN = re.compile(r"^lg-[0-9a-f]{24}$")
DEFAULT_TTL = 3600
MAGIC = b"MMLG1"
_HEADER_LENGTH = struct.Struct("<I")


@dataclass(frozen=True)
class LogitsEntry:
    image_id: int
    model_key: str
    low_res: np.ndarray  # (C, 256, 256) float32
    scores: np.ndarray  # (C,)


def new_handle() -> str:
    return f"lg-{secrets.token_hex(12)}"


def encode_entry(entry: LogitsEntry) -> bytes:
    """An entry as bytes: a short JSON header, then the arrays' raw little-endian bytes."""
    low_res = np.ascontiguousarray(entry.low_res)
    scores = np.ascontiguousarray(entry.scores)
    low_res = low_res.astype(low_res.dtype.newbyteorder("<"), copy=False)
    scores = scores.astype(scores.dtype.newbyteorder("<"), copy=False)
    header = json.dumps(
        {
            "image": int(entry.image_id),
            "model": entry.model_key,
            "dtype": low_res.dtype.str,
            "shape": list(low_res.shape),
            "scores_dtype": scores.dtype.str,
            "scores": int(scores.size),
        },
        separators=(",", ":"),
    ).encode()
    return b"".join((MAGIC, _HEADER_LENGTH.pack(len(header)), header, low_res.tobytes(), scores.tobytes()))


def decode_entry(data: bytes) -> LogitsEntry:
    """The entry ``encode_entry`` wrote (ValueError for anything else)."""
    if not data.startswith(MAGIC):
        raise ValueError("not a logits entry (bad magic)")
    start = len(MAGIC) + _HEADER_LENGTH.size
    (length,) = _HEADER_LENGTH.unpack_from(data, len(MAGIC))
    header = json.loads(data[start : start + length])
    low_dtype, scores_dtype = np.dtype(header["dtype"]), np.dtype(header["scores_dtype"])
    shape = tuple(int(v) for v in header["shape"])
    count = int(np.prod(shape))
    offset = start + length
    if len(data) != offset + count * low_dtype.itemsize + int(header["scores"]) * scores_dtype.itemsize:
        raise ValueError("truncated logits entry")
    # Copies: frombuffer's arrays are read-only views of the bytes, which torch warns about.
    low_res = np.frombuffer(data, low_dtype, count, offset).reshape(shape).astype(low_dtype.newbyteorder("="))
    scores = np.frombuffer(data, scores_dtype, int(header["scores"]), offset + count * low_dtype.itemsize)
    return LogitsEntry(
        image_id=int(header["image"]),
        model_key=str(header["model"]),
        low_res=low_res,
        scores=scores.astype(scores_dtype.newbyteorder("=")),
    )


class SharedLogits(Protocol):
    """Where handles live across processes: bytes under (user, handle), expiring after ``ttl``."""

    ttl: int

    def put(self, user_id: int, handle: str, data: bytes) -> None: ...

    def get(self, user_id: int, handle: str) -> bytes | None: ...


class FileLogits:
    """Handles as files ``<directory>/u<user>/<handle>.lg``, for deployments without Redis (every
    web process of one machine sees the folder). A write goes to a temporary file renamed into
    place, so a reader sees a whole entry or none; expiry is the file's age; each user keeps the
    ``per_user`` newest, and expired files of every user are swept every ``sweep_seconds``."""

    def __init__(
        self,
        directory: str | os.PathLike,
        ttl: int = DEFAULT_TTL,
        per_user: int = 16,
        sweep_seconds: int = 300,
    ) -> None:
        self.directory = Path(directory)
        self.ttl, self.per_user, self.sweep_seconds = int(ttl), int(per_user), sweep_seconds
        self._last_sweep = time.monotonic()

    def _path(self, user_id: int, handle: str) -> Path:
        if not HANDLE_PATTERN.match(handle):
            raise ValueError(f"not a logits handle: {handle!r}")
        return self.directory / f"u{int(user_id)}" / f"{handle}.lg"

    def put(self, user_id: int, handle: str, data: bytes) -> None:
        path = self._path(user_id, handle)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = path.with_name(f".{handle}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(partial, "wb") as fileobj:
            fileobj.write(data)
        os.replace(partial, path)
        self._prune(path.parent)
        if time.monotonic() - self._last_sweep > self.sweep_seconds:
            self._last_sweep = time.monotonic()
            self.sweep()

    def get(self, user_id: int, handle: str) -> bytes | None:
        path = self._path(user_id, handle)
        try:
            with open(path, "rb") as fileobj:
                if time.time() - os.fstat(fileobj.fileno()).st_mtime > self.ttl:
                    data = None
                else:
                    return fileobj.read()
        except FileNotFoundError:
            return None
        _unlink(path)
        return data

    def _prune(self, folder: Path) -> None:
        """Drop this user's expired entries and all but the ``per_user`` newest."""
        now = time.time()
        entries = []
        with os.scandir(folder) as found:
            for item in found:
                try:
                    mtime = item.stat().st_mtime
                except FileNotFoundError:
                    continue
                if now - mtime > self.ttl:
                    _unlink(item.path)
                elif item.name.endswith(".lg"):
                    entries.append((mtime, item.path))
        entries.sort()
        for _, path in entries[: max(0, len(entries) - self.per_user)]:
            _unlink(path)

    def sweep(self) -> None:
        """Remove expired entries (and leftovers of interrupted writes) of every user."""
        try:
            folders = list(os.scandir(self.directory))
        except FileNotFoundError:
            return
        for folder in folders:
            if not (folder.is_dir() and folder.name.startswith("u")):
                continue
            try:
                self._prune(Path(folder.path))
                os.rmdir(folder.path)  # only succeeds when empty
            except OSError:
                pass

    def clear(self) -> None:
        import shutil

        shutil.rmtree(self.directory, ignore_errors=True)


def _unlink(path: str | os.PathLike) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class RedisLogits:
    """Handles in Redis: ``<prefix>u<user>:<handle>`` with a TTL, plus a per-user list of that
    user's keys, trimmed to the ``per_user`` newest (the rest deleted) so a busy annotator cannot
    fill Redis with an hour of answers."""

    def __init__(
        self, url: str, prefix: str = "maskmill:logits:", ttl: int = DEFAULT_TTL, per_user: int = 16
    ) -> None:
        import redis

        self.prefix, self.ttl, self.per_user = prefix, int(ttl), int(per_user)
        # Thread-safe with its own pool; re-made by redis-py after a fork (gunicorn preload).
        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    def _key(self, user_id: int, handle: str) -> str:
        if not HANDLE_PATTERN.match(handle):
            raise ValueError(f"not a logits handle: {handle!r}")
        return f"{self.prefix}u{int(user_id)}:{handle}"

    def put(self, user_id: int, handle: str, data: bytes) -> None:
        key, index = self._key(user_id, handle), f"{self.prefix}u{int(user_id)}:index"
        with self.client.pipeline(transaction=True) as pipe:
            pipe.set(key, data, ex=self.ttl)
            pipe.lpush(index, key)
            pipe.lrange(index, self.per_user, -1)
            pipe.ltrim(index, 0, self.per_user - 1)
            pipe.expire(index, self.ttl)
            dropped = pipe.execute()[2]
        if dropped:
            self.client.delete(*dropped)

    def get(self, user_id: int, handle: str) -> bytes | None:
        return self.client.get(self._key(user_id, handle))

    def clear(self) -> None:
        keys = list(self.client.scan_iter(match=f"{self.prefix}*", count=500))
        if keys:
            self.client.delete(*keys)


class LogitsStore:
    """Handles of recent answers: the ``per_user`` newest of each user in process memory, every
    entry also in the shared store (when there is one) so any process resolves it. Handles of other
    users or other images are not found, like expired ones."""

    def __init__(
        self,
        per_user: int = 16,
        users: int = 512,
        ttl: int = DEFAULT_TTL,
        shared: SharedLogits | Callable[[], SharedLogits | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_user, self.users, self.ttl, self.clock = per_user, users, ttl, clock
        self._shared = shared
        self._memory: OrderedDict[int, OrderedDict[str, tuple[LogitsEntry, float]]] = OrderedDict()
        self._lock = threading.Lock()
        self._last_warning = 0.0

    @property
    def shared(self) -> SharedLogits | None:
        """The shared store; a callable is asked every time (settings may change, as in tests)."""
        if self._shared is None or hasattr(self._shared, "put"):
            return self._shared  # type: ignore[return-value]
        return self._shared()  # type: ignore[operator]

    def put(self, user_id: int, entry: LogitsEntry) -> str:
        handle = new_handle()
        self._remember(user_id, handle, entry)
        shared = self.shared
        if shared is not None:
            try:
                shared.put(user_id, handle, encode_entry(entry))
            except Exception as exc:  # the click still answers; only another process misses it
                self._warn("storing", shared, exc)
        return handle

    def get(self, user_id: int, handle: str, image_id: int) -> LogitsEntry | None:
        if not HANDLE_PATTERN.match(handle):
            return None
        now = self.clock()
        with self._lock:
            mine = self._memory.get(user_id)
            found = mine.get(handle) if mine is not None else None
            if found is not None and found[1] <= now:
                del mine[handle]
                found = None
            if found is not None:
                mine.move_to_end(handle)
                self._memory.move_to_end(user_id)
        if found is not None:
            return found[0] if found[0].image_id == image_id else None
        entry = self._fetch_shared(user_id, handle)
        if entry is None:
            return None
        self._remember(user_id, handle, entry)
        return entry if entry.image_id == image_id else None

    def _fetch_shared(self, user_id: int, handle: str) -> LogitsEntry | None:
        shared = self.shared
        if shared is None:
            return None
        try:
            data = shared.get(user_id, handle)
            return None if data is None else decode_entry(data)
        except Exception as exc:
            self._warn("reading", shared, exc)
            return None

    def _remember(self, user_id: int, handle: str, entry: LogitsEntry) -> None:
        with self._lock:
            mine = self._memory.get(user_id)
            if mine is None:
                mine = self._memory[user_id] = OrderedDict()
            mine[handle] = (entry, self.clock() + self.ttl)
            self._memory.move_to_end(user_id)
            while len(mine) > self.per_user:
                mine.popitem(last=False)
            while len(self._memory) > self.users:
                self._memory.popitem(last=False)

    def _warn(self, doing: str, shared: Any, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_warning > 60:  # one line a minute, not one per click
            self._last_warning = now
            log.warning(
                "%s a logits handle in %s failed (%s: %s); clicks served by another process will not find it",
                doing,
                type(shared).__name__,
                type(exc).__name__,
                exc,
            )

    def forget_memory(self) -> None:
        """Drop this process's copies (tests: behave like a fresh process)."""
        with self._lock:
            self._memory.clear()

    def clear(self) -> None:
        self.forget_memory()
