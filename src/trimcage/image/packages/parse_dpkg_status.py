"""Parse dpkg's database: ``/var/lib/dpkg/status`` and distroless ``status.d/*``.

Pure functions, text in and :class:`Package` records out (syft's
``parse_dpkg_db.go`` shape: raw fields first, one conversion after).

Format (deb822, ``man 5 deb-control``): paragraphs separated by blank lines;
``Field: value`` lines, continuation lines starting with a space or a tab.

Decisions, tested in ``tests/image/packages/test_parse_dpkg_status.py``:

* A malformed database raises :class:`PackageDatabaseError` naming the file
  and line (a line that is neither a field nor a continuation, a paragraph
  without ``Package:``, a repeated field, undecodable bytes). No paragraph is
  skipped silently.
* Installed means the package's files are on disk: every status state except
  ``not-installed`` and ``config-files`` (so ``deinstall ok config-files`` is
  not reported). A paragraph without ``Status:`` (distroless ``status.d``
  files) counts as installed.
* ``source`` is the ``Source:`` field without its ``(version)`` part, or the
  package name when absent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from trimcage.image.paths import normalize
from trimcage.image.packages.interface import Package, PackageDatabaseError

_FIELD = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.+-]*):(.*)\Z")
NOT_INSTALLED_STATES = frozenset({"not-installed", "config-files"})


@dataclass(frozen=True)
class _Paragraph:
    """One deb822 paragraph: fields by lower-cased name, the raw text, first line number."""

    fields: dict[str, str]
    raw: str
    line: int


def parse_paragraphs(text: str, origin: str = "status") -> list[_Paragraph]:
    """Split deb822 ``text`` into paragraphs; raise ``PackageDatabaseError`` on a malformed line.

    Field names are case-insensitive (stored lower-cased); multi-line values
    keep their continuation lines joined by ``\\n`` with the leading space
    removed. An empty text gives an empty list.
    """
    out: list[_Paragraph] = []
    fields: dict[str, str] = {}
    raw: list[str] = []
    start = 0
    last: str | None = None
    lines = text.split("\n")
    for no, line in enumerate(lines, 1):
        line = line.rstrip("\r")
        if not line.strip():
            if raw:
                out.append(_Paragraph(fields, "\n".join(raw), start))
            fields, raw, last = {}, [], None
            continue
        if not raw:
            start = no
        raw.append(line)
        if line[0] in " \t":
            if last is None:
                raise PackageDatabaseError(f"{origin}: line {no}: continuation line outside a field")
            fields[last] += "\n" + line[1:]
            continue
        m = _FIELD.match(line)
        if not m:
            raise PackageDatabaseError(f"{origin}: line {no}: not a 'Field: value' line: {line[:60]!r}")
        name = m.group(1).lower()
        if name in fields:
            raise PackageDatabaseError(f"{origin}: line {no}: field {m.group(1)!r} repeated in one paragraph")
        fields[name] = m.group(2).strip()
        last = name
    if raw:
        out.append(_Paragraph(fields, "\n".join(raw), start))
    return out


def decode(data: bytes, origin: str) -> str:
    """Decode a database file as UTF-8; raise ``PackageDatabaseError`` naming ``origin`` if it is not."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PackageDatabaseError(f"{origin}: not UTF-8 text at byte {e.start}") from e


def is_installed(status: str | None) -> bool:
    """True when a ``Status:`` value (``want flag state``) means the files are on disk; None counts as installed."""
    if status is None:
        return True
    words = status.split()
    return bool(words) and words[-1] not in NOT_INSTALLED_STATES


def parse_dpkg_status(text: str | bytes, origin: str = "/var/lib/dpkg/status", *,
                      include_not_installed: bool = False) -> list[Package]:
    """Return the packages of a dpkg status text, in file order.

    ``origin`` names the file in error messages and becomes ``Package.database``.
    Packages not installed (see module docstring) are left out unless
    ``include_not_installed``. ``files`` is empty: the file lists live in
    ``info/*.list`` and are attached by the catalog.
    Raise ``PackageDatabaseError`` for a malformed database.
    """
    if isinstance(text, bytes):
        text = decode(text, origin)
    pkgs: list[Package] = []
    for para in parse_paragraphs(text, origin):
        f = para.fields
        name = f.get("package", "")
        if not name or any(c.isspace() for c in name):
            raise PackageDatabaseError(f"{origin}: line {para.line}: paragraph without a valid 'Package:' field")
        if not include_not_installed and not is_installed(f.get("status")):
            continue
        source = f.get("source", "").split("(")[0].strip() or name
        pkgs.append(Package(name=name, version=f.get("version", ""), source=source,
                            arch=f.get("architecture", ""), ecosystem="deb", raw=para.raw,
                            database=origin))
    return pkgs


def parse_dpkg_list(text: str | bytes, origin: str = "info/*.list") -> tuple[str, ...]:
    """Parse a dpkg ``info/<pkg>.list`` (or ``.md5sums``) file into sorted absolute paths.

    ``.list`` lines are absolute paths (``/.`` means the root, left out);
    ``.md5sums`` lines are ``<md5>  <relative path>``. Empty lines are ignored.
    """
    if isinstance(text, bytes):
        text = decode(text, origin)
    paths: set[str] = set()
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        if not line.startswith("/"):
            parts = line.split(None, 1)
            if len(parts) != 2 or not re.fullmatch(r"[0-9a-fA-F]{32}", parts[0]):
                raise PackageDatabaseError(f"{origin}: not a path or md5sums line: {line[:60]!r}")
            line = "/" + parts[1].lstrip("/")
        path = normalize(line)
        if path != "/":
            paths.add(path)
    return tuple(sorted(paths))
