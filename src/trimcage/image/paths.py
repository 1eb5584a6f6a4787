"""Path arithmetic inside an image, without touching the host file system."""

from __future__ import annotations

import posixpath
from typing import Mapping

from trimcage.image.interface import Entry, SYMLINK


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


def resolve_in_index(index: Mapping[str, Entry], path: str, *, follow_last: bool = True,
                     max_links: int = 40) -> str | None:
    """Resolve ``path`` through the index's symlinks with the image as root.

    Return the final absolute path if it names an entry (``"/"`` always
    exists), None when a component is missing or more than ``max_links``
    symlinks are followed (a loop).
    """
    todo = [p for p in path.split("/") if p not in ("", ".")]
    todo.reverse()
    cur = "/"
    links = 0
    while todo:
        part = todo.pop()
        if part == "..":
            cur = posixpath.dirname(cur) if cur != "/" else "/"
            continue
        nxt = posixpath.join(cur, part)
        entry = index.get(nxt)
        if entry is None:
            return None
        if entry.type == SYMLINK and (todo or follow_last):
            links += 1
            if links > max_links:
                return None
            target = entry.link or ""
            if target.startswith("/"):
                cur = "/"
            rest = [p for p in target.split("/") if p not in ("", ".")]
            todo.extend(reversed(rest))
            continue
        cur = nxt
    if cur != "/" and cur not in index:
        return None
    return cur
