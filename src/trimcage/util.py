"""Small helpers shared by every stage: atomic output, hashing, JSON."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Iterator

CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return ``sha256:<hex>`` of a file's content."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Return ``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def dumps(obj: Any) -> bytes:
    """Canonical JSON: sorted keys, no spaces, UTF-8. Used for digests."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def dump_pretty(obj: Any) -> str:
    """Human-readable JSON with sorted keys and a final newline."""
    return json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str], *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` on success.

    On any exception the temporary file or directory is removed, so a failed
    command leaves no partial output behind.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if is_dir and dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        raise


def _umask() -> int:
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


def write_atomic(dest: str | os.PathLike[str], data: bytes | str) -> None:
    """Write ``data`` to ``dest`` through a temporary name and a rename."""
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def copy_stream(src: BinaryIO, dst: BinaryIO, hasher: Any | None = None) -> int:
    """Copy ``src`` to ``dst`` in chunks, feeding ``hasher`` if given; return bytes copied."""
    n = 0
    while chunk := src.read(CHUNK):
        dst.write(chunk)
        if hasher is not None:
            hasher.update(chunk)
        n += len(chunk)
    return n
