"""The package-database contract: what an image says is installed in it.

Parsers (``parse_dpkg_status``, ``parse_apk_installed``) are pure: text in,
:class:`Package` records out. :mod:`~trimcage.image.packages.catalog` finds the
databases in a flattened image and attaches each package's file list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from trimcage.image.interface import ImageError

#: Reads one file of the image by absolute in-image path (already resolved
#: through symlinks); raises ``OSError`` if the content is unavailable.
Reader = Callable[[str], bytes]


class PackageDatabaseError(ImageError):
    """A package database (dpkg ``status``, ``status.d/*``, apk ``installed``) is malformed.

    The message names the database file and the line of the problem. Parsers
    never skip a bad record silently: a database that cannot be trusted is
    reported, not half-read.
    """


@dataclass(frozen=True)
class Package:
    """One installed package as its database records it.

    ``ecosystem`` is ``"deb"`` or ``"apk"``. ``source`` is the source package
    (dpkg ``Source:`` without its version, apk ``o:`` origin), or ``name``
    when the database gives none. ``arch`` may be ``""`` when unknown.
    ``files`` are absolute in-image paths the package owns, sorted; empty
    when the database lists none. ``raw`` is the record exactly as it
    appears in the database (without the separating blank line), so a later
    stage can rewrite the database keeping only some records.
    ``database`` is the in-image path of the file the record came from.
    """

    name: str
    version: str
    source: str
    arch: str
    ecosystem: str
    files: tuple[str, ...] = ()
    raw: str = ""
    database: str = ""

    def to_json(self, *, with_files: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "version": self.version, "source": self.source,
                             "arch": self.arch, "ecosystem": self.ecosystem, "files": len(self.files)}
        if with_files:
            d["paths"] = list(self.files)
        return d
