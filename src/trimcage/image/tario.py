"""Reading layer tars as streams: decompression by magic bytes, hostile-input bounds.

A layer blob is gzip, zstd or a plain tar whatever its media type says; the
first bytes decide. :func:`open_layer` yields the members of one layer as
``(path, TarInfo, TarFile)`` with ``path`` the normalised absolute in-image
path, and turns every way a layer can be corrupt (truncated gzip or zstd, bad
tar header, a 0-byte file, absurd sizes) into one :class:`HostileInputError`
naming the layer. Nothing here touches the file system beyond reading the blob.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import tarfile
import zlib
from pathlib import Path
from typing import IO, Any, Iterator

import zstandard

from trimcage.image.interface import HostileInputError, ImageError

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

# Bounds on what one layer may claim; far beyond any real image, low enough
# that a crafted layer cannot exhaust memory or run for hours.
MAX_MEMBERS = 4_000_000           # tar members in one layer (whiteouts included)
MAX_LAYER_BYTES = 64 << 30        # uncompressed bytes of one layer
MAX_META_BYTES = 1 << 20          # one PAX or GNU long-name header
MAX_PATH_BYTES = 4096             # PATH_MAX
MAX_NAME_BYTES = 255              # NAME_MAX, one path component
MAX_DEPTH = 512                   # path components; much deeper trees break recursive tools (shutil.rmtree)

READ_CHUNK = 1 << 16              # measured best for tarfile's stream mode (see flatten)


class _Corrupt(Exception):
    """Raised inside tarfile's parser; turned into HostileInputError with the layer's name."""


class _SafeTarInfo(tarfile.TarInfo):
    """A TarInfo that refuses what tarfile would silently accept or buffer whole.

    tarfile treats a bad checksum or a short header in mid-archive as the end of
    the archive (dropping the rest of the layer) and reads PAX and GNU long-name
    headers of any declared size into memory.
    """

    @classmethod
    def frombuf(cls, buf: bytes, encoding: str, errors: str) -> tarfile.TarInfo:
        try:
            return super().frombuf(buf, encoding, errors)
        except (tarfile.InvalidHeaderError, tarfile.TruncatedHeaderError) as e:
            raise _Corrupt(f"bad tar header ({e})") from None

    def _proc_member(self, tarfile_: tarfile.TarFile) -> Any:
        if self.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                         tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK) and self.size > MAX_META_BYTES:
            raise _Corrupt(f"extended header of {self.size} bytes")
        return super()._proc_member(tarfile_)  # type: ignore[misc]


class _MeteredReader:
    """Read-through wrapper counting (and optionally hashing) the uncompressed bytes."""

    def __init__(self, raw: IO[bytes], hasher: Any | None):
        self._raw = raw
        self._hasher = hasher
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self.count += len(data)
        if self.count > MAX_LAYER_BYTES:
            raise _Corrupt(f"more than {MAX_LAYER_BYTES} uncompressed bytes")
        if self._hasher is not None:
            self._hasher.update(data)
        return data

    def drain(self) -> None:
        while self.read(READ_CHUNK):
            pass


def _decompressor(raw: IO[bytes]) -> IO[bytes]:
    """Wrap ``raw`` in the decompressor its first bytes call for (gzip, zstd or none)."""
    head = raw.read(4)
    raw.seek(0)
    if head.startswith(GZIP_MAGIC):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if head == ZSTD_MAGIC:
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)  # type: ignore[return-value]
    return raw


def member_path(name: str, label: str) -> str:
    """Return the normalised absolute in-image path of tar member name ``name``.

    A leading ``/`` and ``.`` components are dropped (as Docker does); ``..``
    is applied lexically. Raise HostileInputError when ``..`` climbs above the
    root, the name holds a NUL, is longer than PATH_MAX / NAME_MAX allow or
    deeper than MAX_DEPTH.
    """
    if "\0" in name:
        raise HostileInputError(f"{label}: entry {name!r} has a NUL byte in its name")
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise HostileInputError(f"{label}: entry {name!r} climbs out of the image root with '..'")
            parts.pop()
            continue
        if len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
            raise HostileInputError(f"{label}: entry {name[:80]!r}...: a path component exceeds {MAX_NAME_BYTES} bytes")
        parts.append(part)
    if len(parts) > MAX_DEPTH:
        raise HostileInputError(f"{label}: entry {name[:80]!r}...: more than {MAX_DEPTH} levels deep")
    path = "/" + "/".join(parts)
    if len(path.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        raise HostileInputError(f"{label}: entry {name[:80]!r}...: path exceeds {MAX_PATH_BYTES} bytes")
    return path


@contextlib.contextmanager
def open_layer(path: str | Path, label: str, *, diff_id: str | None = None
               ) -> Iterator[Iterator[tuple[str, tarfile.TarInfo, tarfile.TarFile]]]:
    """Open one layer blob; yield an iterator of ``(path, member, tarfile)``.

    The caller may read a regular member's data with ``tf.extractfile(member)``
    before asking for the next one (stream mode). Any corruption met while the
    ``with`` block runs -- including while the caller reads data -- becomes
    one HostileInputError naming ``label``. With ``diff_id``, the uncompressed
    stream is hashed to the end when the block exits normally and must match.
    """
    hasher = hashlib.new(diff_id.split(":", 1)[0]) if diff_id else None
    try:
        raw = open(path, "rb")
    except OSError as e:
        raise ImageError(f"{label}: cannot read the layer blob: {e.strerror}") from e
    try:
        with raw, _decompressor(raw) as stream:
            metered = _MeteredReader(stream, hasher)
            with tarfile.open(fileobj=metered, mode="r|", bufsize=READ_CHUNK, tarinfo=_SafeTarInfo,  # type: ignore[call-overload]
                              encoding="utf-8", errors="surrogateescape") as tf:
                yield _members(tf, label)
            if hasher is not None:
                metered.drain()
                got = f"{diff_id.split(':', 1)[0]}:{hasher.hexdigest()}"  # type: ignore[union-attr]
                if got != diff_id:
                    raise HostileInputError(f"{label}: uncompressed content has digest {got}, "
                                            f"the image config says {diff_id}")
    except _Corrupt as e:
        raise HostileInputError(f"{label}: {e}") from e
    except (EOFError, zlib.error, tarfile.TarError, gzip.BadGzipFile, zstandard.ZstdError) as e:
        raise HostileInputError(f"{label}: corrupt or truncated layer ({type(e).__name__}: {e or 'no data'})") from e


def _members(tf: tarfile.TarFile, label: str) -> Iterator[tuple[str, tarfile.TarInfo, tarfile.TarFile]]:
    count = 0
    while (ti := tf.next()) is not None:
        tf.members = []  # stream mode would otherwise keep every member in memory
        count += 1
        if count > MAX_MEMBERS:
            raise HostileInputError(f"{label}: more than {MAX_MEMBERS} entries")
        if ti.size > MAX_LAYER_BYTES:
            raise HostileInputError(f"{label}: entry {ti.name!r} claims {ti.size} bytes")
        yield member_path(ti.name, label), ti, tf
