"""The content-addressed store: verified blobs, a JSON cache, locks.

Layout under ``home`` (``TRIMCAGE_HOME``, default ``~/.cache/trimcage``)::

    blobs/<alg>/<hex>      blobs, named by the digest of their bytes
    tmp/                   partial writes, renamed into blobs/ once verified
    cache/<namespace>/     JSON documents other stages cache (atomic writes)
    rootfs/<key>/          extracted image trees (see ``extract.rootfs``)
    locks/<name>.lock      ``flock`` files for work a rename cannot make atomic

Two processes may share a store: every file appears by ``os.replace`` of a
complete, verified temporary file, so readers see all of it or nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from trimcage.image.interface import Blob, DigestMismatchError, HostileInputError, ImageError, StoreLike
from trimcage.util import CHUNK, write_atomic

_HEX_LEN = {"sha256": 64, "sha384": 96, "sha512": 128}
_DIGEST = re.compile(r"^(sha256|sha384|sha512):([0-9a-f]+)$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,150}$")


def parse_digest(digest: str) -> tuple[str, str]:
    """Split ``alg:hex`` into its parts; raise HostileInputError if it is not a valid digest.

    Digests come from manifests and become file names, so nothing but a known
    algorithm and lowercase hex of the right length is accepted.
    """
    m = _DIGEST.match(digest) if isinstance(digest, str) else None
    if not m or len(m.group(2)) != _HEX_LEN[m.group(1)]:
        raise HostileInputError(f"invalid digest {digest!r}")
    return m.group(1), m.group(2)


def _safe_name(name: str) -> str:
    """``name`` if it is a plain file name, else its sha256 (for cache keys and locks)."""
    if _SAFE_NAME.match(name):
        return name
    return hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()


class Store(StoreLike):
    """A store rooted at ``home`` (created on first use)."""

    def __init__(self, home: str | os.PathLike[str]):
        self.home = Path(home).expanduser().absolute()
        for sub in ("blobs", "tmp", "cache", "locks"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"Store({str(self.home)!r})"

    # --- blobs ----------------------------------------------------------

    def _blob_file(self, digest: str) -> Path:
        alg, hexd = parse_digest(digest)
        return self.home / "blobs" / alg / hexd

    def has_blob(self, digest: str) -> bool:
        return self._blob_file(digest).is_file()

    def blob_path(self, digest: str) -> str:
        """Path of a present blob; raise ImageError naming the digest if it is missing."""
        path = self._blob_file(digest)
        if not path.is_file():
            raise ImageError(f"blob {digest} is not in the store {self.home}")
        return str(path)

    def read_blob(self, digest: str) -> bytes:
        with open(self.blob_path(digest), "rb") as f:
            return f.read()

    def put_blob_file(self, path: str | os.PathLike[str], expected_digest: str | None = None) -> Blob:
        """Copy a file in, verifying ``expected_digest``; media type left empty."""
        try:
            f = open(path, "rb")
        except OSError as e:
            raise ImageError(f"cannot read blob file {path}: {e.strerror}") from e
        with f:
            return self.put_blob_stream(f, expected_digest)

    def put_blob_bytes(self, data: bytes, expected_digest: str | None = None) -> Blob:
        alg = parse_digest(expected_digest)[0] if expected_digest is not None else "sha256"
        digest = f"{alg}:{hashlib.new(alg, data).hexdigest()}"
        self._check(digest, expected_digest)
        final = self._blob_file(digest)
        if not final.is_file():
            fd, tmp = tempfile.mkstemp(prefix="blob-", dir=self.home / "tmp")
            with _removed_on_error(tmp):
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                self._publish(tmp, final)
        return Blob(digest, len(data), "")

    def put_blob_stream(self, stream: BinaryIO, expected_digest: str | None = None,
                        size: int | None = None) -> Blob:
        """Stream a blob in, verifying digest and (if given) size; media type left empty.

        Reads at most ``size + 1`` bytes. On a mismatch raise DigestMismatchError
        naming the blob and leave nothing behind. A blob already present is
        verified against the stream but not written again.
        """
        alg = parse_digest(expected_digest)[0] if expected_digest is not None else "sha256"
        present = expected_digest is not None and self.has_blob(expected_digest)
        name = expected_digest or "blob"
        h = hashlib.new(alg)
        tmp = None
        out: BinaryIO | None = None
        if not present:
            fd, tmp = tempfile.mkstemp(prefix="blob-", dir=self.home / "tmp")
            out = os.fdopen(fd, "wb")
        with _removed_on_error(tmp):
            n = 0
            try:
                while chunk := stream.read(CHUNK if size is None else min(CHUNK, size + 1 - n)):
                    n += len(chunk)
                    if size is not None and n > size:
                        raise DigestMismatchError(f"blob {name}: more data than its declared size {size}")
                    h.update(chunk)
                    if out is not None:
                        out.write(chunk)
            finally:
                if out is not None:
                    out.close()
            if size is not None and n != size:
                raise DigestMismatchError(f"blob {name}: {n} bytes, its declared size is {size}")
            digest = f"{alg}:{h.hexdigest()}"
            self._check(digest, expected_digest)
            if tmp is not None:
                self._publish(tmp, self._blob_file(digest))
        return Blob(digest, n, "")

    @staticmethod
    def _check(digest: str, expected: str | None) -> None:
        if expected is not None and digest != expected:
            raise DigestMismatchError(f"blob {expected}: content has digest {digest}")

    @staticmethod
    def _publish(tmp: str, final: Path) -> None:
        os.chmod(tmp, 0o644)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)

    # --- JSON cache and locks -------------------------------------------------

    def cache_dir(self, namespace: str) -> Path:
        """The directory of one cache namespace (created); the namespace is a plain name."""
        if not _SAFE_NAME.match(namespace) or ":" in namespace:
            raise ValueError(f"bad cache namespace {namespace!r}")
        path = self.home / "cache" / namespace
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _cache_file(self, namespace: str, key: str) -> Path:
        return self.cache_dir(namespace) / (_safe_name(key) + ".json")

    def cache_get_json(self, namespace: str, key: str) -> Any | None:
        """The document stored under ``key``, or None if absent or unreadable."""
        try:
            with open(self._cache_file(namespace, key), "rb") as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def cache_put_json(self, namespace: str, key: str, obj: Any) -> None:
        """Store ``obj`` under ``key`` atomically (concurrent writers: the last rename wins)."""
        write_atomic(self._cache_file(namespace, key), json.dumps(obj, sort_keys=True, separators=(",", ":")))

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold an exclusive ``flock`` on ``locks/<name>.lock`` (blocking) for the block."""
        fd = os.open(self.home / "locks" / (_safe_name(name) + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


@contextlib.contextmanager
def _removed_on_error(tmp: str | None) -> Iterator[None]:
    try:
        yield
    except BaseException:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise


def open_store(home: str | os.PathLike[str] | None = None) -> Store:
    """The store at ``home``, else ``$TRIMCAGE_HOME``, else ``~/.cache/trimcage``."""
    return Store(home or os.environ.get("TRIMCAGE_HOME") or Path.home() / ".cache" / "trimcage")
