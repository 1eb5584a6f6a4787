"""Honest package metadata: rewrite dpkg and apk databases for the kept files.

A package stays when at least one of its non-directory files is kept. The
rewritten databases hold only those packages, their records byte-for-byte as
they were, and their file lists (``info/*.list``, ``md5sums``, apk ``R:``
lines) cut to the kept files, so a scanner lists exactly what is present.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Iterable

from trimcage.image.interface import DIR, SYMLINK, Index
from trimcage.image.packages.interface import Package

DPKG_STATUS = "/var/lib/dpkg/status"
DPKG_STATUS_D = "/var/lib/dpkg/status.d"
DPKG_INFO = "/var/lib/dpkg/info"
APK_INSTALLED = "/lib/apk/db/installed"


@dataclass(frozen=True)
class Rewrite:
    """Rewritten database files (path -> content) and the package split."""

    files: dict[str, bytes]
    kept: tuple[Package, ...]
    removed: tuple[Package, ...]


def package_is_kept(pkg: Package, index: Index, kept: set[str]) -> bool:
    """True when at least one non-directory file of ``pkg`` is kept.

    A symlink to a directory counts as a directory: usrmerge images have
    ``/lib -> usr/lib``, which every package lists as its own ``/lib``.
    """
    for f in pkg.files:
        if f in kept:
            e = index.get(f)
            if e is None or e.type == DIR:
                continue
            if e.type == SYMLINK:
                real = index.resolve(f)
                if real is not None and index[real].type == DIR:
                    continue
            return True
    return False


def _cut_lines(text: str, kept: set[str], path_of) -> str:
    out = []
    for line in text.splitlines():
        p = path_of(line)
        if p is None or p in kept:
            out.append(line)
    return "".join(x + "\n" for x in out)


def _list_path(line: str) -> str | None:
    line = line.strip()
    if not line or line == "/.":
        return None
    return line


def _md5_path(line: str) -> str | None:
    parts = line.split(None, 1)
    return "/" + parts[1].lstrip("/") if len(parts) == 2 else None


def rewrite_databases(packages: Iterable[Package], index: Index, read, kept: set[str]) -> Rewrite:
    """Return the rewritten database files for the kept set.

    ``read(path) -> bytes`` reads an in-image file. Files of removed packages
    (``info/NAME.*``, ``status.d/NAME*``) are simply not in ``files``; callers
    keep only paths from ``files`` under the database directories.
    """
    packages = list(packages)
    kept_pkgs = [p for p in packages if package_is_kept(p, index, kept)]
    removed = [p for p in packages if p not in kept_pkgs]
    files: dict[str, bytes] = {}

    debs = [p for p in kept_pkgs if p.ecosystem == "deb"]
    by_db: dict[str, list[Package]] = {}
    for p in debs:
        by_db.setdefault(p.database, []).append(p)
    all_by_db: dict[str, int] = {}
    for p in packages:
        all_by_db[p.database] = all_by_db.get(p.database, 0) + 1
    for db in sorted(set(all_by_db)):
        if not db or db.startswith(APK_INSTALLED):
            continue
        recs = by_db.get(db, [])
        if db.startswith(DPKG_STATUS_D + "/"):
            if recs:
                files[db] = read(db)
            continue
        files[db] = "".join(r.raw.rstrip("\n") + "\n\n" for r in recs).encode("utf-8", "surrogateescape")
    for p in debs:
        for stem in (p.name, f"{p.name}:{p.arch}"):
            for ext, path_of in ((".list", _list_path), (".md5sums", _md5_path)):
                path = posixpath.join(DPKG_INFO, stem + ext)
                if path in index and index[path].is_file:
                    text = read(path).decode("utf-8", "surrogateescape")
                    files[path] = _cut_lines(text, kept, path_of).encode("utf-8", "surrogateescape")
        for path in (posixpath.join(DPKG_STATUS_D, p.name + ".md5sums"),):
            if path in index and index[path].is_file:
                text = read(path).decode("utf-8", "surrogateescape")
                files[path] = _cut_lines(text, kept, _md5_path).encode("utf-8", "surrogateescape")

    apks = [p for p in kept_pkgs if p.ecosystem == "apk"]
    if any(p.ecosystem == "apk" for p in packages):
        files[APK_INSTALLED] = "".join(_cut_apk_record(p.raw, kept) + "\n" for p in apks).encode()
    return Rewrite(files=files, kept=tuple(kept_pkgs), removed=tuple(removed))


def _cut_apk_record(raw: str, kept: set[str]) -> str:
    """Drop ``R:`` file lines (and their ``a:``/``Z:`` attribute lines) of files not kept."""
    out, folder, skipping = [], "", False
    for line in raw.rstrip("\n").splitlines():
        key, _, value = line.partition(":")
        if key == "F":
            folder, skipping = value, False
        elif key == "R":
            skipping = "/" + posixpath.join(folder, value).lstrip("/") not in kept
        elif key not in ("a", "Z"):
            skipping = False
        if not skipping:
            out.append(line)
    return "\n".join(out) + "\n"
