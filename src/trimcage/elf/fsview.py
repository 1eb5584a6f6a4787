"""Reading an image's files safely: a root directory plus its :class:`Index`.

Every path is resolved inside the index (symlinks followed with the image as
root, never the host's), and the bytes are read from the extracted root only
after checking that the host path stays inside it.
"""

from __future__ import annotations

import os
import posixpath
import stat
from pathlib import Path
from typing import Mapping

from trimcage.elf.interface import ElfError
from trimcage.image.interface import DIR, HARDLINK, REG, SYMLINK, Entry, Index
from trimcage.image.paths import normalize, resolve_chain


def scan_directory(root: Path) -> Index:
    """Build an :class:`Index` of the tree under ``root`` (no digests, no xattrs).

    Used when only an extracted directory is at hand (development, tests).
    """
    root = Path(root)
    entries: dict[str, Entry] = {"/": Entry("/", DIR, 0o755)}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = "/" + os.path.relpath(dirpath, root).replace(os.sep, "/")
        rel = normalize(rel)
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            p = posixpath.join(rel, name)
            try:
                st = os.lstat(full)
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode):
                entries[p] = Entry(p, SYMLINK, 0o777, link=os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                entries[p] = Entry(p, DIR, stat.S_IMODE(st.st_mode))
            elif stat.S_ISREG(st.st_mode):
                entries[p] = Entry(p, REG, stat.S_IMODE(st.st_mode), size=st.st_size)
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
    return Index(entries)


class FsView:
    """An image's files: ``index`` for names and links, ``root`` for bytes."""

    def __init__(self, root: Path, index: Mapping[str, Entry]):
        self.root = Path(root).resolve()
        self.index = index

    def resolve_chain(self, path: str) -> tuple[str | None, list[str]]:
        """Resolve ``path`` in the image; return (final path or None, symlinks passed).

        The symlinks are absolute in-image paths, in the order followed.
        """
        return resolve_chain(self.index, path)

    def resolve(self, path: str) -> str | None:
        return self.resolve_chain(path)[0]

    def entry(self, path: str) -> Entry | None:
        """The entry at the resolved ``path``; None if missing."""
        r = self.resolve(path)
        return self.index.get(r) if r else None

    def is_file(self, path: str) -> bool:
        e = self.entry(path)
        return e is not None and e.type in (REG, HARDLINK)

    def is_dir(self, path: str) -> bool:
        r = self.resolve(path)
        return r == "/" or (r is not None and self.index[r].type == DIR)

    def listdir(self, path: str) -> list[str]:
        """Sorted names directly inside the resolved directory ``path`` ([] if none)."""
        r = self.resolve(path)
        if r is None:
            return []
        prefix = r.rstrip("/") + "/"
        out = []
        for p in self.index:
            if p.startswith(prefix) and "/" not in p[len(prefix):] and p != prefix:
                out.append(p[len(prefix):])
        return sorted(out)

    def host_path(self, path: str) -> Path:
        """The host path of the resolved in-image file ``path``; ElfError if it escapes."""
        r = self.resolve(path)
        if r is None:
            raise ElfError(f"{path}: not in the image")
        e = self.index[r]
        if e.type == HARDLINK and e.link:
            r = e.link
        hp = (self.root / r.lstrip("/"))
        real = hp.resolve()
        if real != self.root and self.root not in real.parents:
            raise ElfError(f"{path}: resolves outside the image root")
        return real

    def read(self, path: str, limit: int | None = None) -> bytes:
        """Bytes of the in-image file ``path`` (first ``limit`` bytes if given)."""
        hp = self.host_path(path)
        try:
            with open(hp, "rb") as f:
                return f.read() if limit is None else f.read(limit)
        except OSError as e:
            raise ElfError(f"{path}: cannot read: {e}") from e

    def read_text(self, path: str, limit: int = 1 << 20) -> str | None:
        """Text of a small in-image file; None if missing or unreadable."""
        if not self.is_file(path):
            return None
        try:
            return self.read(path, limit).decode("utf-8", "replace")
        except ElfError:
            return None

    def glob_files(self, directory: str, suffix: str = "") -> list[str]:
        """In-image paths of files (resolved) under ``directory`` recursively ending in ``suffix``."""
        r = self.resolve(directory)
        if r is None:
            return []
        prefix = r.rstrip("/") + "/"
        return [p for p in self.index if p.startswith(prefix) and p.endswith(suffix)]
