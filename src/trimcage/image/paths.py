"""Path arithmetic inside an image, without touching the host file system."""

from __future__ import annotations

import posixpath
from typing import Mapping

from trimcage.image.interface import DIR, SYMLINK, Entry


def normalize(path: str) -> str:
    """Return ``path`` as an absolute, normalised in-image path; ``..`` is clamped at ``/``.

    ``normalize("./usr//bin/../lib/")`` is ``"/usr/lib"``; the empty path is ``"/"``.
    """
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


def resolve_chain(index: Mapping[str, Entry], path: str, *, follow_last: bool = True,
                  max_links: int = 40) -> tuple[str | None, list[str]]:
    """Resolve ``path`` through the index's symlinks with the image as root.

    Return (final absolute path, or None when a component is missing, a
    non-directory is used as a directory, or more than ``max_links`` symlinks
    are followed; the symlinks passed, as absolute paths in the order followed).
    ``..`` moves up from where resolution stands, clamped at ``/``.
    """
    todo = [p for p in path.split("/") if p not in ("", ".")]
    todo.reverse()
    cur = "/"
    links: list[str] = []
    while todo:
        part = todo.pop()
        if part == "..":
            cur = posixpath.dirname(cur) if cur != "/" else "/"
            continue
        nxt = posixpath.join(cur, part)
        entry = index.get(nxt)
        if entry is None:
            return None, links
        if entry.type == SYMLINK and (todo or follow_last):
            links.append(nxt)
            if len(links) > max_links:
                return None, links
            target = entry.link or ""
            if target.startswith("/"):
                cur = "/"
            todo.extend(reversed([p for p in target.split("/") if p not in ("", ".")]))
            continue
        if todo and entry.type != DIR:
            return None, links
        cur = nxt
    return cur, links


def resolve_in_index(index: Mapping[str, Entry], path: str, *, follow_last: bool = True,
                     max_links: int = 40) -> str | None:
    """Resolve ``path`` through the index's symlinks with the image as root.

    Return the final absolute path if it names an entry (``"/"`` always
    exists), None when a component is missing or more than ``max_links``
    symlinks are followed (a loop).
    """
    return resolve_chain(index, path, follow_last=follow_last, max_links=max_links)[0]
