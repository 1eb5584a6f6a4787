"""Flattening: an image's layers, applied in order, as one :class:`Index` -- nothing extracted.

Each layer tar is streamed once; regular files are hashed on the way. Layers
apply like overlayfs/Docker apply them:

* a later entry replaces an earlier one at the same path; a non-directory
  replacing a directory removes the directory's children; a directory over a
  directory only updates its metadata;
* ``.wh.NAME`` removes NAME and its children from *lower* layers, and
  ``DIR/.wh..wh..opq`` removes DIR's lower-layer children; this layer's own
  entries survive both, whatever their order in the tar (OCI image spec);
  other ``.wh..wh.*`` names are aufs bookkeeping and are ignored;
* a hardlink becomes a ``HARDLINK`` entry naming its regular target; when a
  later layer replaces or deletes the target, the first of its links (sorted)
  becomes the regular file (its ``layer``/``source`` locate the old bytes);
* directories a layer leaves implicit are added as ``0755`` root-owned.

Anything that could make an extraction write outside its root or that is not
a well-formed layer raises :class:`HostileInputError` naming layer and entry:
``..`` above the root, a parent that is a symlink or a file, a hardlink to a
missing or non-regular path, a whiteout of the root, corrupt compression.
"""

from __future__ import annotations

import hashlib
import posixpath
import tarfile
from pathlib import Path
from typing import Any, Iterable, Sequence

from trimcage.image.interface import (
    BLOCK, CHAR, DIR, FIFO, HARDLINK, REG, SYMLINK, Entry, HostileInputError, Image, Index, StoreLike,
)
from trimcage.image.store import parse_digest
from trimcage.image.tario import MAX_PATH_BYTES, READ_CHUNK, member_path, open_layer

INDEX_FORMAT = 1           # bump when the cached JSON or the flattening rules change
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
AUFS_META = ".wh..wh."
MAX_ID = 2**32 - 1         # uid/gid (-1 means "unchanged" to chown)
MAX_MTIME = 2**40          # seconds either side of 1970: well inside what utimensat takes

LayerSource = tuple[str, str, "str | None"]  # blob path, label for messages, diff_id to verify


def layer_sources(image_or_layers: Image | Sequence[str | Path], store: StoreLike | None) -> list[LayerSource]:
    """The layers to read, bottom first, as ``(path, label, diff_id)``.

    For an Image the labels name the layer digest, and each compressed layer's
    uncompressed stream is checked against the config's ``diff_ids`` (when the
    config has them; a count that differs from the layers is hostile).
    """
    if not isinstance(image_or_layers, Image):
        return [(str(p), str(p), None) for p in image_or_layers]
    if store is None:
        raise TypeError("a store is needed to read an Image's layers")
    image = image_or_layers
    diff_ids = image.diff_ids
    if diff_ids and len(diff_ids) != len(image.layers):
        raise HostileInputError(f"image {image.image_id}: config lists {len(diff_ids)} diff_ids "
                                f"for {len(image.layers)} layers")
    out = []
    for i, blob in enumerate(image.layers):
        diff_id = diff_ids[i] if diff_ids else None
        if diff_id is not None:
            parse_digest(diff_id)
        out.append((store.blob_path(blob.digest), f"layer {i} ({blob.digest})",
                    None if diff_id == blob.digest else diff_id))
    return out


def index_key(image: Image) -> str:
    """The cache key of an image's flattened tree: a hash of its layer digests and diff_ids."""
    text = "\n".join([f"index-v{INDEX_FORMAT}", *(b.digest for b in image.layers), "", *image.diff_ids])
    return hashlib.sha256(text.encode()).hexdigest()


def flatten(image: Image, store: Any) -> Index:
    """The image's flattened tree, cached in the store by layer digests.

    ``store`` needs the blob methods of StoreLike plus ``cache_get_json``/``cache_put_json``.
    """
    key = index_key(image)
    doc = store.cache_get_json("index", key)
    if doc is not None:
        try:
            return index_from_json(doc)
        except (KeyError, TypeError, ValueError):
            pass  # stale or damaged cache entry: rebuild it
    index = _flatten(layer_sources(image, store))
    store.cache_put_json("index", key, index_to_json(index))
    return index


def flatten_layers(layers: Sequence[str | Path]) -> Index:
    """Flatten layer blobs given by path (bottom first); uncached."""
    return _flatten(layer_sources(layers, None))


def _flatten(sources: Iterable[LayerSource]) -> Index:
    tree = _Tree()
    for i, (path, label, diff_id) in enumerate(sources):
        tree.apply_layer(i, path, label, diff_id)
    return Index(tree.entries)


class _Tree:
    """The tree being built: entries, each directory's children, each file's hardlinks."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {"/": Entry("/", DIR, 0o755)}
        self.children: dict[str, set[str]] = {"/": set()}
        self.links: dict[str, set[str]] = {}   # regular file -> hardlinks naming it
        self.layer = 0
        self.label = ""
        self.written: set[str] = set()         # paths this layer wrote (whiteouts spare them)

    def fail(self, name: str, why: str) -> HostileInputError:
        return HostileInputError(f"{self.label}: entry {name!r}: {why}")

    # --- one layer ---------------------------------------------------------

    def apply_layer(self, layer: int, path: str, label: str, diff_id: str | None) -> None:
        self.layer, self.label, self.written = layer, label, set()
        whiteouts: list[tuple[str, str, str]] = []
        with open_layer(path, label, diff_id=diff_id) as members:
            for p, ti, tf in members:
                base = p.rpartition("/")[2]
                if base.startswith(WHITEOUT):
                    if base == OPAQUE:
                        whiteouts.append(("opaque", posixpath.dirname(p), ti.name))
                    elif not base.startswith(AUFS_META):
                        if base in (WHITEOUT, WHITEOUT + ".", WHITEOUT + ".."):
                            raise self.fail(ti.name, "whiteout of the image root")
                        whiteouts.append(("remove", posixpath.join(posixpath.dirname(p), base[4:]), ti.name))
                elif AUFS_META not in p:
                    self.member(p, ti, tf)
        for kind, p, name in whiteouts:
            self.whiteout(kind, p, name)

    def member(self, p: str, ti: tarfile.TarInfo, tf: tarfile.TarFile) -> None:
        name = ti.name
        if not (0 <= ti.uid < MAX_ID and 0 <= ti.gid < MAX_ID):
            raise self.fail(name, f"owner {ti.uid}:{ti.gid} out of range")
        if not -MAX_MTIME < ti.mtime < MAX_MTIME:  # also false for NaN
            raise self.fail(name, f"mtime {ti.mtime} out of range")
        common: dict[str, Any] = dict(mode=ti.mode & 0o7777, uid=ti.uid, gid=ti.gid, mtime=int(ti.mtime),
                                      layer=self.layer, uname=ti.uname, gname=ti.gname)
        xattrs = {k[13:]: v.encode("utf-8", "surrogateescape")
                  for k, v in ti.pax_headers.items() if k.startswith("SCHILY.xattr.")}
        if xattrs:
            common["xattrs"] = xattrs
        if p == "/":
            if not ti.isdir():
                raise self.fail(name, "the image root must be a directory")
            self.entries["/"] = Entry("/", DIR, **common)
            return
        self.ensure_parent(p, name)
        if ti.isreg():
            h = hashlib.sha256()
            f = tf.extractfile(ti)
            assert f is not None
            while chunk := f.read(READ_CHUNK):
                h.update(chunk)
            self.put(Entry(p, REG, size=ti.size, digest="sha256:" + h.hexdigest(), **common))
        elif ti.isdir():
            self.put(Entry(p, DIR, **common))
        elif ti.issym():
            target = ti.linkname
            if not target or "\0" in target or len(target.encode("utf-8", "surrogateescape")) >= MAX_PATH_BYTES:
                raise self.fail(name, "empty, NUL-bearing or overlong symlink target")
            self.put(Entry(p, SYMLINK, link=target, **common))
        elif ti.islnk():
            if p in self.entries:
                self.prune(p, frozenset())
            target = member_path(ti.linkname, f"{self.label}: hardlink {name!r} target")
            t = self.entries.get(target)
            if t is not None and t.type == HARDLINK:
                t = self.entries[t.link]  # type: ignore[index]
            if t is None or t.type != REG:
                why = "missing" if t is None else f"a {t.type}, not a regular file"
                raise self.fail(name, f"hardlink target {ti.linkname!r} is {why}")
            self.put(Entry(p, HARDLINK, size=t.size, link=t.path, digest=t.digest, **common))
        elif ti.ischr() or ti.isblk():
            self.put(Entry(p, CHAR if ti.ischr() else BLOCK, devmajor=ti.devmajor, devminor=ti.devminor, **common))
        elif ti.isfifo():
            self.put(Entry(p, FIFO, **common))
        else:
            raise self.fail(name, f"unsupported tar entry type {ti.type!r}")

    def whiteout(self, kind: str, p: str, name: str) -> None:
        """Apply one whiteout after the layer's entries (so the layer's own entries survive)."""
        d = p if kind == "opaque" else posixpath.dirname(p)
        while d not in self.entries:
            d = posixpath.dirname(d)
        if self.entries[d].type != DIR:
            raise self.fail(name, f"whiteout through {d}, a {self.entries[d].type}")
        if kind == "opaque":
            if d == p:
                for child in list(self.children[p]):
                    self.prune(child, self.written)
        elif p in self.entries:
            self.prune(p, self.written)

    # --- tree edits ----------------------------------------------------------

    def ensure_parent(self, p: str, name: str) -> None:
        """Make sure ``p``'s parent is a directory, adding implied ones; a symlink or file there is hostile."""
        missing = []
        d = posixpath.dirname(p)
        while (e := self.entries.get(d)) is None:
            missing.append(d)
            d = posixpath.dirname(d)
        if e.type != DIR:
            raise self.fail(name, f"its parent {d} is a {e.type}" + (" (writing through a symlink)" if e.type == SYMLINK else ""))
        for d in reversed(missing):
            self.put(Entry(d, DIR, 0o755, layer=self.layer))

    def put(self, e: Entry) -> None:
        old = self.entries.get(e.path)
        if old is not None:
            if old.type == DIR and e.type == DIR:
                self.entries[e.path] = e
                self.written.add(e.path)
                return
            self.prune(e.path, frozenset())
        self.entries[e.path] = e
        self.children[posixpath.dirname(e.path)].add(e.path)
        if e.type == DIR:
            self.children[e.path] = set()
        elif e.type == HARDLINK:
            self.links.setdefault(e.link, set()).add(e.path)  # type: ignore[arg-type]
        self.written.add(e.path)

    def prune(self, top: str, keep: set[str] | frozenset[str]) -> None:
        """Remove ``top`` and everything under it except paths in ``keep`` and their parents."""
        order, stack = [], [top]
        while stack:
            p = stack.pop()
            order.append(p)
            stack.extend(self.children.get(p, ()))
        spared: set[str] = set()
        for p in reversed(order):  # children before their parents
            if p in keep or p in spared:
                spared.add(posixpath.dirname(p))
            else:
                self.remove_one(p)

    def remove_one(self, p: str) -> None:
        e = self.entries.pop(p)
        self.children[posixpath.dirname(p)].discard(p)
        self.children.pop(p, None)
        if e.type == HARDLINK:
            self.links.get(e.link, set()).discard(p)  # type: ignore[arg-type]
        elif e.type == REG and self.links.get(p):
            self.detach(e)

    def detach(self, root: Entry) -> None:
        """``root`` goes away: its first hardlink becomes the regular file, the others link to that."""
        first, *rest = sorted(self.links.pop(root.path))
        self.entries[first] = self.entries[first].replace(type=REG, link=None, layer=root.layer,
                                                          source=root.source or root.path)
        for h in rest:
            self.entries[h] = self.entries[h].replace(link=first)
        if rest:
            self.links[first] = set(rest)


# --- the cached form ---------------------------------------------------------


def index_to_json(index: Index) -> dict[str, Any]:
    """A compact JSON form of ``index`` that :func:`index_from_json` reads back exactly."""
    rows = [[e.path, e.type, e.mode, e.uid, e.gid, e.size, e.mtime, e.link, e.digest, e.layer, e.devmajor,
             e.devminor, e.uname, e.gname, {k: v.hex() for k, v in e.xattrs.items()}, e.source]
            for e in index.iter_entries()]
    return {"format": INDEX_FORMAT, "entries": rows}


def index_from_json(doc: dict[str, Any]) -> Index:
    """Inverse of :func:`index_to_json`; raise ValueError for another format version."""
    if doc.get("format") != INDEX_FORMAT:
        raise ValueError("index format")
    entries = {}
    for (path, type_, mode, uid, gid, size, mtime, link, digest, layer, dmaj, dmin, uname, gname, xattrs,
         source) in doc["entries"]:
        entries[path] = Entry(path, type_, mode, uid, gid, size, mtime, link, digest, layer, dmaj, dmin, uname,
                              gname, {k: bytes.fromhex(v) for k, v in xattrs.items()} if xattrs else {}, source)
    return Index(entries)
