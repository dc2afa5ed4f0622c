"""The content-addressed store of evidence files, outside the database.

A file is kept once under its SHA-256, at ``<MINGA_VAR_DIR>/evidence/ab/cd/<sha256>``. Writing
streams the content into a temporary file in the store's own folder while hashing it (never the
whole file in memory), stops as soon as it passes the size limit, then renames the temporary
file to its final name: the rename is atomic on one file system, so a reader sees the whole
file or none. The same content registered twice is stored once. Files are made read-only; the
register's rows (``models.Evidence``) name them by hash, and ``minga evidence verify`` hashes
them again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from django.conf import settings

CHUNK = 1024 * 1024


class TooLarge(Exception):
    """The content passed the size limit: nothing was kept."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


@dataclass(frozen=True)
class Stored:
    sha256: str
    size: int
    created: bool  # False when the same content was in the store already


def root() -> Path:
    return Path(settings.VAR_DIR) / "evidence"


def path_for(sha256: str) -> Path:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ValueError(f"not a SHA-256 in hexadecimal: {sha256[:80]!r}")
    return root() / sha256[:2] / sha256[2:4] / sha256


def read_chunks(handle: BinaryIO, size: int = CHUNK) -> Iterator[bytes]:
    while chunk := handle.read(size):
        yield chunk


def store(chunks: Iterable[bytes], limit: int) -> Stored:
    """Keep the content of ``chunks`` (at most ``limit`` bytes, else ``TooLarge``)."""
    tmp_dir = root() / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, prefix="incoming-")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise TooLarge(limit)
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        sha256 = digest.hexdigest()
        final = path_for(sha256)
        # Kept already and whole: keep that one. A damaged copy (another size) is replaced by
        # this good one, which heals the store.
        if final.exists() and final.stat().st_size == size:
            tmp.unlink()
            return Stored(sha256, size, created=False)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp.chmod(0o440)
        os.replace(tmp, final)
        return Stored(sha256, size, created=True)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def open_blob(sha256: str) -> BinaryIO:
    """The stored content, for reading (``FileNotFoundError`` when it is missing)."""
    return path_for(sha256).open("rb")


def exists(sha256: str) -> bool:
    return path_for(sha256).is_file()


def rehash(sha256: str) -> tuple[str, int] | None:
    """The SHA-256 and size of what is stored under ``sha256`` now, read in a stream; ``None``
    when no file is there."""
    try:
        handle = open_blob(sha256)
    except FileNotFoundError:
        return None
    digest = hashlib.sha256()
    size = 0
    with handle:
        for chunk in read_chunks(handle):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def remove(sha256: str) -> None:
    """Delete the stored content (a disposal, when no other item names the same content)."""
    with contextlib.suppress(FileNotFoundError):
        path_for(sha256).unlink()
