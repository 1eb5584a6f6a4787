"""Parse Alpine's package database ``/lib/apk/db/installed``. Pure: text in, packages out.

Format (apk-tools ``database.c``): records separated by blank lines; each
line is ``K:value`` with a one-letter key: ``P`` name, ``V`` version, ``A``
arch, ``o`` origin (source package), ``F`` a directory, ``R`` a file in the
last ``F`` directory (``Z``, ``a``, ``M`` and others describe it and are
kept only in ``raw``).

A line that is not ``K:value``, a record without ``P:``, or an ``R:`` before
any ``F:`` raises :class:`PackageDatabaseError` naming the file and line.
Every record in ``installed`` is installed (apk keeps no other state there).
"""

from __future__ import annotations

from trimcage.image.paths import normalize
from trimcage.image.packages.interface import Package, PackageDatabaseError
from trimcage.image.packages.parse_dpkg_status import decode


def parse_apk_installed(text: str | bytes, origin: str = "/lib/apk/db/installed") -> list[Package]:
    """Return the packages of an apk ``installed`` database, in file order.

    ``files`` holds the absolute paths of the ``F``+``R`` entries (directories
    included), sorted. An empty text gives an empty list.
    """
    if isinstance(text, bytes):
        text = decode(text, origin)
    out: list[Package] = []
    rec: dict[str, str] = {}
    raw: list[str] = []
    files: set[str] = set()
    cur_dir: str | None = None
    start = 0

    def flush() -> None:
        if not raw:
            return
        name = rec.get("P", "")
        if not name:
            raise PackageDatabaseError(f"{origin}: line {start}: record without a 'P:' (name) line")
        out.append(Package(name=name, version=rec.get("V", ""), source=rec.get("o", "") or name,
                           arch=rec.get("A", ""), ecosystem="apk", files=tuple(sorted(files)),
                           raw="\n".join(raw), database=origin))

    for no, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip():
            flush()
            rec, raw, files, cur_dir = {}, [], set(), None
            continue
        if not raw:
            start = no
        raw.append(line)
        if len(line) < 2 or line[1] != ":" or not line[0].isalnum():
            raise PackageDatabaseError(f"{origin}: line {no}: not a 'K:value' line: {line[:60]!r}")
        key, value = line[0], line[2:]
        if key == "F":
            cur_dir = normalize(value)
            if cur_dir != "/":
                files.add(cur_dir)
        elif key == "R":
            if cur_dir is None:
                raise PackageDatabaseError(f"{origin}: line {no}: 'R:' file before any 'F:' directory")
            files.add(normalize(cur_dir + "/" + value))
        elif key not in rec:
            rec[key] = value
    flush()
    return out
