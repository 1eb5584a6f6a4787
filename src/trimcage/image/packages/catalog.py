"""Find the package databases of a flattened image and read them (syft's cataloger shape).

A cataloger is a name plus ``catalog(index, read) -> list[Package]``; the
module-level :func:`catalog` runs them all. File content is read through the
``read`` callable with paths already resolved through the image's symlinks
(``Index.resolve``), so this module never touches the host file system.
"""

from __future__ import annotations

import dataclasses
import posixpath
from typing import Protocol

from trimcage.image.interface import DIR, HARDLINK, REG, Index
from trimcage.image.packages.interface import Package, PackageDatabaseError, Reader
from trimcage.image.packages.parse_apk_installed import parse_apk_installed
from trimcage.image.packages.parse_dpkg_status import parse_dpkg_list, parse_dpkg_status

DPKG_STATUS = "/var/lib/dpkg/status"
DPKG_INFO = "/var/lib/dpkg/info"
DPKG_STATUS_D = "/var/lib/dpkg/status.d"
APK_INSTALLED = "/lib/apk/db/installed"

#: Database files larger than this are refused as hostile (a real status is < 10 MiB).
MAX_DB_BYTES = 64 << 20


class Cataloger(Protocol):
    """Finds one kind of package database in an image."""

    name: str

    def catalog(self, index: Index, read: Reader) -> list[Package]:
        """Return the packages found, or ``[]`` when the image has no such database."""
        ...


def _regular(index: Index, path: str) -> str | None:
    """Resolve ``path``; return the resolved path if it is a regular file, else None."""
    real = index.resolve(path)
    if real is None or index[real].type not in (REG, HARDLINK):
        return None
    return real


def _read(index: Index, read: Reader, path: str, shown: str) -> bytes:
    real = _regular(index, path)
    if real is None:
        raise PackageDatabaseError(f"{shown}: not a regular file")
    entry = index[real]
    if entry.type == HARDLINK and entry.link:
        real = entry.link
        entry = index[real] if real in index else entry
    if entry.size > MAX_DB_BYTES:
        raise PackageDatabaseError(f"{shown}: {entry.size} bytes, larger than {MAX_DB_BYTES}")
    try:
        return read(real)
    except OSError as e:
        raise PackageDatabaseError(f"{shown}: cannot read: {e.strerror or e}") from e


def _children(index: Index, directory: str) -> list[str]:
    """Sorted regular files directly inside ``directory`` (itself resolved) of the index."""
    real = index.resolve(directory)
    if real is None or index[real].type != DIR:
        return []
    prefix = real.rstrip("/") + "/"
    return [p for p in index if p.startswith(prefix) and "/" not in p[len(prefix):]
            and index[p].type in (REG, HARDLINK)]


class DpkgCataloger:
    """Debian: ``/var/lib/dpkg/status`` with ``info/<pkg>[:<arch>].list``, and distroless ``status.d/*``."""

    name = "dpkg"

    def catalog(self, index: Index, read: Reader) -> list[Package]:
        out: list[Package] = []
        if _regular(index, DPKG_STATUS):
            for pkg in parse_dpkg_status(_read(index, read, DPKG_STATUS, DPKG_STATUS), DPKG_STATUS):
                files: tuple[str, ...] = ()
                for cand in (f"{pkg.name}:{pkg.arch}.list", f"{pkg.name}.list"):
                    path = posixpath.join(DPKG_INFO, cand)
                    if "/" not in cand and _regular(index, path):
                        files = parse_dpkg_list(_read(index, read, path, path), path)
                        break
                out.append(dataclasses.replace(pkg, files=files))
        status_d = _children(index, DPKG_STATUS_D)
        names = set(status_d)
        for path in status_d:
            if path.endswith(".md5sums"):
                continue
            for pkg in parse_dpkg_status(_read(index, read, path, path), path):
                files = ()
                for cand in (path + ".md5sums", posixpath.join(posixpath.dirname(path), pkg.name + ".md5sums")):
                    if cand in names:
                        files = parse_dpkg_list(_read(index, read, cand, cand), cand)
                        break
                out.append(dataclasses.replace(pkg, files=files))
        return out


class ApkCataloger:
    """Alpine: ``/lib/apk/db/installed``."""

    name = "apk"

    def catalog(self, index: Index, read: Reader) -> list[Package]:
        if not _regular(index, APK_INSTALLED):
            return []
        return parse_apk_installed(_read(index, read, APK_INSTALLED, APK_INSTALLED), APK_INSTALLED)


CATALOGERS: tuple[Cataloger, ...] = (DpkgCataloger(), ApkCataloger())


def catalog(index: Index, read: Reader) -> list[Package]:
    """Return every installed package the image's databases record.

    Sorted by (ecosystem, name, arch, version, database); ``[]`` for an
    image without any known database (scratch, distroless static).
    Raise ``PackageDatabaseError`` (an ``ImageError``) naming the file when a
    database is malformed or unreadable.
    """
    pkgs: list[Package] = []
    for c in CATALOGERS:
        pkgs.extend(c.catalog(index, read))
    pkgs.sort(key=lambda p: (p.ecosystem, p.name, p.arch, p.version, p.database))
    return pkgs
