"""The deterministic image writer: a directory (or a chosen subset of it) -> one-layer image.

:func:`scan_directory` turns a real directory into an :class:`Index` (lstat
only, nothing followed). :func:`build_image` writes ONE layer from a list of
:class:`Entry` records and returns the :class:`Image`, with all blobs in the
store. Same entries + same file contents + same arguments -> byte-identical
layer, config and manifest, hence the same manifest digest.

Determinism rules of the layer:

* members sorted by path (so parents precede children), a ``/`` entry
  first as ``./``; a missing parent directory is synthesised as ``0755 root:root``;
* metadata (type, mode incl. setuid/setgid/sticky, uid/gid, link target,
  device numbers, ``xattrs``) come from the Entry, never from the disk;
  ``uname``/``gname`` are empty; PAX format; xattrs as ``SCHILY.xattr.*``;
* **mtime policy**: each member's mtime is the Entry's ``mtime``; when the
  ``mtime`` argument is given, it is clamped to it (``min(entry.mtime, mtime)``,
  like ``tar --clamp-mtime`` / ``SOURCE_DATE_EPOCH``). Trees copied after that
  instant therefore give the same layer whatever their on-disk times;
* gzip with a fixed header (mtime 0, no file name) at level 6, compressed
  in 1 MiB blocks on both cores (pigz's scheme; the bytes do not depend on
  thread timing);
* config JSON canonical (sorted keys, no spaces), ``created`` fixed
  (default ``1970-01-01T00:00:00Z``), one history entry; OCI manifest.
"""

from __future__ import annotations

import collections
import errno
import hashlib
import io
import json
import os
import posixpath
import stat
import struct
import tarfile
import tempfile
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Mapping

from trimcage.image.interface import (
    BLOCK,
    CHAR,
    DIR,
    FIFO,
    HARDLINK,
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    REG,
    SYMLINK,
    Blob,
    Entry,
    HostileInputError,
    Image,
    ImageError,
    Index,
    StoreLike,
)
from trimcage.image.paths import normalize
from trimcage.util import dumps, sha256_bytes, sha256_file

EPOCH = "1970-01-01T00:00:00Z"
GZIP_LEVEL = 6
CAPABILITY_XATTR = "security.capability"

_TAR_TYPES = {REG: tarfile.REGTYPE, DIR: tarfile.DIRTYPE, SYMLINK: tarfile.SYMTYPE, HARDLINK: tarfile.LNKTYPE,
              CHAR: tarfile.CHRTYPE, BLOCK: tarfile.BLKTYPE, FIFO: tarfile.FIFOTYPE}


# --- scanning -----------------------------------------------------------------


def scan_directory(root: Path) -> Index:
    """Walk ``root`` with ``lstat`` (never following symlinks) into an :class:`Index`.

    Paths are absolute inside the tree; ``root`` itself is the ``/`` entry
    (its mode and owner become the image root's). Regular files carry size and sha256 digest; files sharing a
    (dev, inode) become ``hardlink`` entries pointing at the first of them in
    sorted path order; symlinks carry their target as stored; devices their
    numbers; ``security.capability`` is recorded when present. Sockets are
    skipped. Raise ``ImageError`` if ``root`` is not a directory.
    """
    root = Path(root)
    try:
        if not stat.S_ISDIR(os.lstat(root).st_mode):
            raise ImageError(f"{root}: not a directory")
    except OSError as e:
        raise ImageError(f"{root}: cannot scan ({e.strerror})") from e
    raw: dict[str, tuple[os.stat_result, str]] = {}

    raw["/"] = (os.lstat(root), str(root))
    todo = [(str(root), "/")]  # iterative: a tree may be deeper than Python's recursion limit
    while todo:
        host, inner = todo.pop()
        try:
            names = sorted(os.listdir(host))
        except OSError as e:
            raise ImageError(f"{host}: cannot list ({e.strerror})") from e
        for name in names:
            h = os.path.join(host, name)
            p = posixpath.join(inner, name)
            try:
                st = os.lstat(h)
            except OSError as e:
                raise ImageError(f"{root}: cannot stat {p[:200]} ({e.strerror})") from e
            if stat.S_ISSOCK(st.st_mode):
                continue
            raw[p] = (st, h)
            if stat.S_ISDIR(st.st_mode):
                todo.append((h, p))
    files = sorted(p for p, (st, _) in raw.items() if stat.S_ISREG(st.st_mode))
    first_of: dict[tuple[int, int], str] = {}
    link_of: dict[str, str] = {}
    for p in files:
        st = raw[p][0]
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in first_of:
            link_of[p] = first_of[key]
        else:
            first_of.setdefault(key, p)
    to_hash = [p for p in files if p not in link_of]
    def digest(p: str) -> str:
        try:
            return sha256_file(raw[p][1])
        except OSError as e:
            raise ImageError(f"{root}: cannot read {p[:200]} ({e.strerror})") from e

    with ThreadPoolExecutor(max_workers=2) as pool:
        digests = dict(zip(to_hash, pool.map(digest, to_hash)))
    entries: dict[str, Entry] = {}
    for p, (st, h) in raw.items():
        mode = st.st_mode
        kw: dict[str, Any] = dict(path=p, mode=stat.S_IMODE(mode), uid=st.st_uid, gid=st.st_gid,
                                  mtime=int(st.st_mtime))
        if stat.S_ISREG(mode):
            target = link_of.get(p)
            kw.update(type=HARDLINK if target else REG, size=st.st_size, link=target,
                      digest=digests[target or p], xattrs=_caps(h))
        elif stat.S_ISDIR(mode):
            kw.update(type=DIR)
        elif stat.S_ISLNK(mode):
            try:
                kw.update(type=SYMLINK, link=os.readlink(h))
            except OSError as e:
                raise ImageError(f"{root}: cannot read the link {p[:200]} ({e.strerror})") from e
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            kw.update(type=CHAR if stat.S_ISCHR(mode) else BLOCK, devmajor=os.major(st.st_rdev),
                      devminor=os.minor(st.st_rdev))
        elif stat.S_ISFIFO(mode):
            kw.update(type=FIFO)
        else:  # pragma: no cover - doors, whiteouts...
            continue
        entries[p] = Entry(**kw)
    return Index(entries)


def _caps(host: str) -> dict[str, bytes]:
    try:
        return {CAPABILITY_XATTR: os.getxattr(host, CAPABILITY_XATTR, follow_symlinks=False)}
    except OSError:
        return {}


# --- building -------------------------------------------------------------------


class _HashWriter(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through to ``inner``."""

    def __init__(self, inner: Any):
        self.inner, self.h, self.n = inner, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        b = bytes(b)
        self.h.update(b)
        self.n += len(b)
        self.inner.write(b)
        return len(b)

    def tell(self) -> int:
        return self.n

    def digest(self) -> str:
        return "sha256:" + self.h.hexdigest()


class _ParallelGzip(io.RawIOBase):
    """A gzip writer compressing 1 MiB blocks on two threads (the pigz scheme).

    Each block is raw deflate primed with the previous block's last 32 KiB and
    ended by a sync flush (the last one by a finish), so the concatenation is
    one valid deflate stream. The output depends only on the data, the block
    size and the level, never on thread timing. Header: no name, mtime 0,
    OS 255 (unknown), as Python's ``gzip`` module writes it.
    """

    BLOCK = 1 << 20
    WINDOW = 32 << 10

    def __init__(self, out: Any, level: int, workers: int = 2):
        self.out, self.level = out, level
        self.buf = bytearray()
        self.crc = 0
        self.size = 0
        self.tail = b""
        self.pool = ThreadPoolExecutor(max_workers=workers)
        self.pending: collections.deque[Future[bytes]] = collections.deque()
        xfl = 2 if level == 9 else 4 if level == 1 else 0
        out.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + bytes([xfl, 255]))

    def writable(self) -> bool:
        return True

    def _deflate(self, data: bytes, zdict: bytes, last: bool) -> bytes:
        c = (zlib.compressobj(self.level, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, zdict) if zdict
             else zlib.compressobj(self.level, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY))
        return c.compress(data) + c.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)

    def _submit(self, data: bytes, last: bool) -> None:
        self.crc = zlib.crc32(data, self.crc)
        self.size += len(data)
        self.pending.append(self.pool.submit(self._deflate, data, self.tail, last))
        self.tail = data[-self.WINDOW:]
        while len(self.pending) > 4:
            self.out.write(self.pending.popleft().result())

    def write(self, b: Any) -> int:
        self.buf += b
        while len(self.buf) >= self.BLOCK:
            self._submit(bytes(self.buf[: self.BLOCK]), False)
            del self.buf[: self.BLOCK]
        return len(b)

    def finish(self) -> None:
        self._submit(bytes(self.buf), True)
        self.buf.clear()
        while self.pending:
            self.out.write(self.pending.popleft().result())
        self.pool.shutdown()
        self.out.write(struct.pack("<II", self.crc & 0xFFFFFFFF, self.size & 0xFFFFFFFF))


def open_beneath(root: Path, path: str) -> BinaryIO:
    """Open ``root/<path>`` for reading without following any symlink on the way.

    Raise ``HostileInputError`` if a parent or the file itself is a symlink
    or the file is not a regular file, ``ImageError`` if it is missing.
    """
    parts = [p for p in normalize(path).split("/") if p]
    if not parts:
        raise ImageError(f"{root}: cannot read the root as a file")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            flags = os.O_RDONLY | os.O_NOFOLLOW | (0 if last else os.O_DIRECTORY)
            try:
                nfd = os.open(part, flags, dir_fd=fd)
            except OSError as e:
                where = "/" + "/".join(parts[: i + 1])
                if e.errno in (errno.ELOOP, errno.ENOTDIR):  # a symlink or a non-directory on the way
                    raise HostileInputError(f"{root}: refusing to read {path}: {where} is a symlink "
                                            "or not a directory") from e
                raise ImageError(f"{root}: cannot read {path} ({e.strerror})") from e
            os.close(fd)
            fd = nfd
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise HostileInputError(f"{root}: refusing to read {path}: not a regular file")
        f = os.fdopen(fd, "rb")
        fd = -1
        return f
    finally:
        if fd >= 0:
            os.close(fd)


def _tarinfo(e: Entry, mtime: int | None) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(e.path.lstrip("/") or ".")
    ti.type = _TAR_TYPES[e.type]
    ti.mode = e.mode & 0o7777
    ti.uid, ti.gid = e.uid, e.gid
    ti.uname = ti.gname = ""
    ti.mtime = int(e.mtime if mtime is None else min(e.mtime, mtime))
    ti.size = 0
    if e.type == SYMLINK:
        ti.linkname = e.link or ""
    elif e.type == HARDLINK:
        ti.linkname = (e.link or "").lstrip("/")
    elif e.type in (CHAR, BLOCK):
        ti.devmajor, ti.devminor = e.devmajor, e.devminor
    if e.xattrs:
        pax: dict[str, str] = {}
        binary = False
        for k, v in sorted(e.xattrs.items()):
            try:
                pax[f"SCHILY.xattr.{k}"] = v.decode("utf-8")
            except UnicodeDecodeError:
                binary = True
                pax[f"SCHILY.xattr.{k}"] = v.decode("utf-8", "surrogateescape")
        if binary:
            pax["hdrcharset"] = "BINARY"
        ti.pax_headers = pax
    return ti


def _plan(root: Path, entries: Iterable[Entry], overlay: Mapping[str, bytes], mtime: int | None) -> list[Entry]:
    """Entries to write, sorted, parents synthesised, overlay-only files added.

    A ``/`` entry, if given, is written first as ``./`` (the image root's mode and owner)."""
    by_path: dict[str, Entry] = {}
    for e in entries:
        p = normalize(e.path)
        if p == "/" and e.type != DIR:
            raise ImageError(f"the image root / must be a directory, not a {e.type}")
        by_path[p] = e.replace(path=p) if p != e.path else e
    for p in overlay:
        np_ = normalize(p)
        if np_ != "/" and np_ not in by_path:
            by_path[np_] = Entry(path=np_, type=REG, mode=0o644, mtime=mtime or 0)
    for p in list(by_path):
        parent = posixpath.dirname(p)
        while parent != "/" and parent not in by_path:
            by_path[parent] = Entry(path=parent, type=DIR, mode=0o755, mtime=mtime or 0)
            parent = posixpath.dirname(parent)
    for p, e in by_path.items():
        parent = posixpath.dirname(p)
        if parent != "/" and by_path[parent].type != DIR:
            raise ImageError(f"cannot write {p}: its parent {parent} is a {by_path[parent].type}, not a directory")
    return [by_path[p] for p in sorted(by_path)]


def write_layer(out: BinaryIO, root: Path, entries: Iterable[Entry], *,
                overlay: Mapping[str, bytes] | None = None, mtime: int | None = None) -> tuple[str, str, int]:
    """Write the deterministic gzip layer to ``out``; return ``(diff_id, digest, size)``."""
    overlay = {normalize(k): v for k, v in (overlay or {}).items()}
    plan = _plan(Path(root), entries, overlay, mtime)
    comp = _HashWriter(out)
    gz = _ParallelGzip(comp, GZIP_LEVEL)
    try:
        diff = _HashWriter(gz)
        tf = tarfile.open(fileobj=diff, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8",
                          errors="surrogateescape")
        regular: set[str] = set()
        for e in plan:
            if e.type not in _TAR_TYPES:
                raise ImageError(f"{e.path}: unknown entry type {e.type!r}")
            if e.type == HARDLINK and normalize(e.link or "") not in regular:
                e = e.replace(type=REG, link=None)  # its target was left out: store the content
            ti = _tarinfo(e, mtime)
            if e.type != REG:
                tf.addfile(ti)
                continue
            if e.path in overlay:
                data = overlay[e.path]
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            else:
                with open_beneath(Path(root), e.path) as f:
                    ti.size = os.fstat(f.fileno()).st_size
                    try:
                        tf.addfile(ti, f)
                    except OSError as ex:
                        raise ImageError(f"{root}{e.path}: changed while being read ({ex})") from ex
            regular.add(e.path)
        tf.close()
        gz.finish()
    finally:
        gz.pool.shutdown(cancel_futures=True)
    return diff.digest(), comp.digest(), comp.n


def build_image(store: StoreLike, root: Path, entries: Iterable[Entry], config: Mapping[str, Any], *,
                overlay: Mapping[str, bytes] | None = None, mtime: int | None = None,
                created: str | None = None, history_comment: str = "trimcage",
                architecture: str = "amd64", os_name: str = "linux") -> Image:
    """Build a one-layer OCI image from ``entries`` (content from ``root`` or ``overlay``).

    ``config`` is the runtime config (``Entrypoint``, ``Cmd``, ``Env``,
    ``User``, ``WorkingDir``, ``ExposedPorts``...). ``overlay`` maps in-image
    paths to replacement bytes (a path not among ``entries`` is added as a
    ``0644 root:root`` file). File content is read from ``root/<path>``
    refusing symlinked parents (``HostileInputError``). Layer, config and
    manifest go into ``store``; the returned :class:`Image` names them.
    See the module docstring for the determinism rules and the mtime policy.
    """
    created = created or EPOCH
    with tempfile.TemporaryDirectory(prefix="trimcage-layer-") as tmp:
        layer_path = os.path.join(tmp, "layer.tar.gz")
        with open(layer_path, "wb") as out:
            diff_id, digest, size = write_layer(out, Path(root), entries, overlay=overlay, mtime=mtime)
        store.put_blob_file(layer_path, expected_digest=digest)
    layer = Blob(digest, size, OCI_LAYER_GZIP)
    cfg = {
        "architecture": architecture,
        "os": os_name,
        "config": dict(config),
        "created": created,
        "history": [{"created": created, "created_by": "trimcage build", "comment": history_comment}],
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    cdata = dumps(cfg)
    store.put_blob_bytes(cdata, expected_digest=sha256_bytes(cdata))
    config_blob = Blob(sha256_bytes(cdata), len(cdata), OCI_CONFIG)
    manifest = dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_blob.to_json(),
                      "layers": [layer.to_json()]})
    store.put_blob_bytes(manifest, expected_digest=sha256_bytes(manifest))
    return Image(config_blob=config_blob, config=json.loads(cdata), layers=(layer,),
                 manifest_digest=sha256_bytes(manifest), name=None)


__all__ = ["scan_directory", "build_image", "write_layer", "open_beneath"]
