"""Safe extraction: write (part of) a flattened image into a directory and nowhere else.

Every file-system call is relative to a directory file descriptor opened with
``O_NOFOLLOW`` from ``dest`` down, so nothing -- not a symlink in the image,
not one already lying in ``dest`` -- can redirect a write outside ``dest``.
Directories are created as real directories (a non-directory in the way is
removed), symlinks are created and never followed, hardlinks only join files
this extraction wrote. Device nodes and fifos are not created; their paths are
returned. Ownership and xattrs are applied only when running as root;
directory metadata is applied last, deepest first, so their mtimes hold.

File content is streamed from the layer that last wrote each path (only the
layers that hold wanted content are read, and each only as far as needed) and
checked against the index's digest, so a layer that changed since it was
indexed cannot slip in other bytes.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import os
import posixpath
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Iterator, Sequence

from trimcage.image.flatten import flatten, flatten_layers, index_key, layer_sources
from trimcage.image.interface import (
    BLOCK, CHAR, DIR, FIFO, HARDLINK, REG, SYMLINK, Entry, HostileInputError, Image, ImageError, Index,
)
from trimcage.image.paths import normalize
from trimcage.image.tario import READ_CHUNK, open_layer

log = logging.getLogger(__name__)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def extract(image_or_layers: Image | Sequence[str | Path], store: Any, dest: str | os.PathLike[str], *,
            index: Index | None = None, paths: Collection[str] | None = None) -> frozenset[str]:
    """Write the image's tree (or ``paths`` of it, plus their parent directories) into ``dest``.

    ``image_or_layers`` is an Image whose blobs are in ``store``, or layer blob
    paths (bottom first; ``store`` may then be None). ``index`` defaults to the
    flattened image; a given index must come from the same layers. Return the
    device nodes and fifos that were skipped. Raise ImageError if a path asked
    for is not in the image, HostileInputError if the index is inconsistent or
    a layer no longer holds the indexed content, ImageError if writing fails
    (disk full, permissions). On error ``dest`` may hold a
    partial tree (``rootfs`` extracts into a temporary directory for that reason).
    """
    sources = layer_sources(image_or_layers, store)
    if index is None:
        index = flatten(image_or_layers, store) if isinstance(image_or_layers, Image) else flatten_layers(
            image_or_layers)
    selected = _select(index, paths)
    _check(index, selected, len(sources))
    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        with _Dirs(dest) as dirs:
            writer = _Writer(dirs, index, selected)
            writer.make_dirs()
            writer.write_files(sources)
            skipped = writer.make_links_and_specials()
            writer.finish_dirs()
    except OSError as e:  # disk full, permissions: the user's to fix (exit 2), not an internal error
        raise ImageError(f"cannot extract into {dest}: {e}") from e
    if skipped:
        log.info("extract to %s: skipped %d device nodes and fifos", dest, len(skipped))
    return frozenset(skipped)


def rootfs(image: Image, store: Any) -> Path:
    """The image's whole tree, extracted once into ``<store>/rootfs/<key>/`` and reused.

    Concurrent callers (threads or processes) wait on a lock; the tree is built in
    a temporary directory and renamed into place, so it is either complete or absent.
    """
    key = index_key(image)
    base = Path(store.home) / "rootfs"
    final = base / key
    if final.is_dir():
        return final
    base.mkdir(parents=True, exist_ok=True)
    with store.lock(f"rootfs-{key}"):
        if final.is_dir():
            return final
        for stale in base.glob(f".{key}.*"):  # left by a crashed extraction; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=base))
        try:
            extract(image, store, tmp)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


# --- selection and checks ------------------------------------------------------


def _select(index: Index, paths: Collection[str] | None) -> list[Entry]:
    """The entries to write, sorted: all, or ``paths`` plus their ancestors."""
    if paths is None:
        return list(index.iter_entries())
    want = {"/"}
    for p in paths:
        n = normalize(p)
        if n not in index:
            raise ImageError(f"cannot extract {p}: not in the image")
        while n not in want:
            want.add(n)
            n = posixpath.dirname(n)
    return [index[p] for p in sorted(want)]


def _check(index: Index, selected: list[Entry], nlayers: int) -> None:
    """Refuse an index that breaks the invariants extraction relies on (it may not come from flatten)."""
    for e in selected:
        def bad(why: str) -> HostileInputError:
            return HostileInputError(f"index entry {e.path!r}: {why}")
        if e.path != normalize(e.path) or "\0" in e.path:
            raise bad("not a normalised absolute path")
        if e.path == "/":
            if e.type != DIR:
                raise bad("the root is not a directory")
            continue
        parent = index.get(posixpath.dirname(e.path))
        if parent is None or parent.type != DIR:
            raise bad("its parent is not a directory")
        content = e
        if e.type == HARDLINK:
            content = index.get(e.link or "")  # type: ignore[assignment]
            if content is None or content.type != REG:
                raise bad(f"hardlink target {e.link!r} is not a regular file")
        if content.type == REG and (not 0 <= content.layer < nlayers or not content.digest):
            raise bad(f"layer {content.layer} or digest {content.digest} does not fit the {nlayers} layers")
        if e.type == SYMLINK and (not e.link or "\0" in e.link):
            raise bad("empty or NUL-bearing symlink target")


# --- the writer -----------------------------------------------------------------


class _Dirs:
    """Directory fds under ``dest``, each opened with O_NOFOLLOW relative to its parent's fd."""

    MAX_OPEN = 128

    def __init__(self, dest: Path):
        self.root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.fds: collections.OrderedDict[str, int] = collections.OrderedDict()

    def __enter__(self) -> "_Dirs":
        return self

    def __exit__(self, *exc: Any) -> None:
        for fd in self.fds.values():
            os.close(fd)
        os.close(self.root)

    def fd(self, d: str) -> int:
        """An fd of in-image directory ``d`` (valid until the next call)."""
        if d == "/":
            return self.root
        fd = self.fds.get(d)
        if fd is not None:
            self.fds.move_to_end(d)
            return fd
        chain = [d]
        while (up := posixpath.dirname(chain[-1])) != "/" and up not in self.fds:
            chain.append(up)
        cur = self.fd(up)
        for sub in reversed(chain):
            try:
                cur = os.open(posixpath.basename(sub), _DIR_FLAGS, dir_fd=cur)
            except OSError as e:
                raise HostileInputError(f"cannot enter {sub} in the extraction without following a link: "
                                        f"{e.strerror}") from e
            self.fds[sub] = cur
            if len(self.fds) > self.MAX_OPEN:  # never the newest: ``cur`` stays open
                os.close(self.fds.popitem(last=False)[1])
        return cur

    def parent(self, path: str) -> tuple[int, str]:
        """``(fd of the parent directory, base name)``: the pair every ``*at`` call takes."""
        return self.fd(posixpath.dirname(path)), posixpath.basename(path)


@dataclass
class _Holder:
    """One inode to write: ``path`` gets the bytes (and metadata) of regular entry ``root``.

    The other selected paths of the group are hardlinked to ``path`` afterwards.
    """

    path: str
    root: Entry
    done: bool = False


class _Writer:
    def __init__(self, dirs: _Dirs, index: Index, selected: list[Entry]):
        self.dirs = dirs
        self.selected = selected
        self.as_root = os.geteuid() == 0
        groups: dict[str, list[str]] = {}
        for e in selected:
            if e.type in (REG, HARDLINK):
                groups.setdefault(e.path if e.type == REG else e.link, []).append(e.path)  # type: ignore[arg-type]
        self.holders: dict[str, _Holder] = {}   # any member path of a group -> its holder
        for root_path, members in groups.items():
            first = root_path if root_path in members else members[0]
            h = _Holder(first, index[root_path])
            for m in members:
                self.holders[m] = h

    # phase 1: directories, created 0700 so this process can fill them; modes come last
    def make_dirs(self) -> None:
        for e in self.selected:
            if e.type == DIR and e.path != "/":
                pfd, name = self.dirs.parent(e.path)
                try:
                    os.mkdir(name, 0o700, dir_fd=pfd)
                except FileExistsError:
                    if not stat.S_ISDIR(os.stat(name, dir_fd=pfd, follow_symlinks=False).st_mode):
                        _clear(pfd, name)
                        os.mkdir(name, 0o700, dir_fd=pfd)

    # phase 2: file contents, layer by layer, only as far as each layer is needed
    def write_files(self, sources: list[tuple[str, str, str | None]]) -> None:
        wanted: dict[int, dict[str, list[_Holder]]] = {}
        for h in {id(h): h for h in self.holders.values()}.values():
            if h.root.size == 0:
                with self._create(h.path) as fd:
                    self._meta(fd, h.root)
                h.done = True
            else:
                wanted.setdefault(h.root.layer, {}).setdefault(h.root.source or h.root.path, []).append(h)
        for layer, members in sorted(wanted.items()):
            path, label, _ = sources[layer]
            pending = sum(len(hs) for hs in members.values())
            with open_layer(path, label) as stream:
                for p, ti, tf in stream:
                    todo = [h for h in members.get(p, ()) if not h.done] if ti.isreg() else None
                    if todo:
                        pending -= self._write(todo, tf.extractfile(ti))
                        if pending == 0:
                            break
            for hs in members.values():
                for h in hs:
                    if not h.done:
                        raise HostileInputError(f"{label}: no entry with the indexed content of {h.path} "
                                                f"({h.root.digest}); the layer changed since it was indexed")

    def _write(self, todo: list[_Holder], src: Any) -> int:
        """Copy one member's bytes to every holder in ``todo``; keep those whose digest matches."""
        digest = hashlib.sha256()
        with contextlib.ExitStack() as stack:
            fds = [stack.enter_context(self._create(h.path)) for h in todo]
            while chunk := src.read(READ_CHUNK):
                digest.update(chunk)
                for fd in fds:
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
            got = "sha256:" + digest.hexdigest()
            done = 0
            for h, fd in zip(todo, fds):
                if got == h.root.digest:
                    self._meta(fd, h.root)
                    h.done = True
                    done += 1
            return done

    @contextlib.contextmanager
    def _create(self, path: str) -> Iterator[int]:
        pfd, name = self.dirs.parent(path)
        _clear(pfd, name)
        fd = os.open(name, _NEW_FILE, 0o600, dir_fd=pfd)
        try:
            yield fd
        finally:
            os.close(fd)

    # phase 3: symlinks, hardlinks; devices and fifos are only reported
    def make_links_and_specials(self) -> list[str]:
        skipped = []
        for e in self.selected:
            if e.type == SYMLINK:
                pfd, name = self.dirs.parent(e.path)
                _clear(pfd, name)
                os.symlink(e.link, name, dir_fd=pfd)  # type: ignore[arg-type]
                if self.as_root:
                    _try(os.chown, name, e.uid, e.gid, dir_fd=pfd, follow_symlinks=False)
                os.utime(name, ns=(e.mtime * 10**9,) * 2, dir_fd=pfd, follow_symlinks=False)
            elif e.type in (REG, HARDLINK) and self.holders[e.path].path != e.path:
                h = self.holders[e.path]
                src_pfd = os.dup(self.dirs.parent(h.path)[0])
                try:
                    pfd, name = self.dirs.parent(e.path)
                    _clear(pfd, name)
                    os.link(posixpath.basename(h.path), name, src_dir_fd=src_pfd, dst_dir_fd=pfd,
                            follow_symlinks=False)
                finally:
                    os.close(src_pfd)
            elif e.type in (CHAR, BLOCK, FIFO):
                skipped.append(e.path)
        return skipped

    # phase 4: directory metadata, deepest first, so nothing changes their mtimes afterwards
    def finish_dirs(self) -> None:
        for e in reversed(self.selected):
            if e.type == DIR:
                self._meta(self.dirs.fd(e.path), e)

    def _meta(self, fd: int, e: Entry) -> None:
        """Owner, then mode (chown clears setuid), then xattrs (chown clears capabilities), then mtime."""
        if self.as_root:
            _try(os.fchown, fd, e.uid, e.gid)
        os.fchmod(fd, e.mode & 0o7777)
        if self.as_root:
            for k, v in e.xattrs.items():
                _try(os.setxattr, fd, k, v)
        os.utime(fd, ns=(e.mtime * 10**9,) * 2)


def _clear(pfd: int, name: str) -> None:
    """Remove whatever is at ``name`` in directory ``pfd`` (a directory with its contents), never following links."""
    try:
        st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=pfd)
    else:
        os.unlink(name, dir_fd=pfd)


def _try(fn: Any, *args: Any, **kw: Any) -> None:
    """Apply ownership or an xattr; a refusal (user namespace, file system without xattrs) is logged, not fatal."""
    try:
        fn(*args, **kw)
    except OSError as e:
        log.debug("%s%r: %s", fn.__name__, args[1:], e)
