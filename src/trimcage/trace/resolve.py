"""Complete a trace with what the kernel did without a system call the tracer sees.

Reads the (read-only, cached) root file system, never the container:
``execve`` loads the ELF interpreter (``PT_INTERP``, e.g. the loader) and a
script's ``#!`` interpreter without an ``open`` in the trace, so they are
added with the ``interp`` operation; every traced path is resolved through
the image's symlinks (``resolved``) and the links met on the way are listed
under ``symlinks`` (link path -> target as stored).
"""

from __future__ import annotations

import os
import struct
from typing import Any

VIRTUAL = ("/proc", "/sys", "/dev")


def walk_in_root(root: str, path: str, *, links: dict[str, str] | None = None, max_links: int = 40,
                 keep_missing: bool = False) -> str | None:
    """Resolve ``path`` with ``root`` as ``/`` (``..`` clamped there), never leaving ``root``.

    Symlinks met are recorded in ``links`` (link path -> target). Return the
    absolute in-root path, or None when a component is missing (unless
    ``keep_missing``: missing components are then kept as they are) or more
    than ``max_links`` links are followed.
    """
    parts = [p for p in path.split("/") if p not in ("", ".")]
    cur: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if cur:
                cur.pop()
            continue
        host = os.path.join(root, *cur, part)
        if os.path.islink(host):
            hops += 1
            if hops > max_links:
                return None
            target = os.readlink(host)
            if links is not None:
                links["/" + "/".join(cur + [part])] = target
            if target.startswith("/"):
                cur = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        if not keep_missing and not os.path.lexists(host):
            return None
        cur.append(part)
    return "/" + "/".join(cur)


def resolve(root: str, path: str, links: dict[str, str] | None = None, max_links: int = 40) -> str | None:
    """Resolve ``path`` with ``root`` as ``/``; record symlinks met in ``links``; None if missing."""
    return walk_in_root(root, path, links=links, max_links=max_links)


def interpreter(root: str, path: str) -> str | None:
    """The ``PT_INTERP`` of an ELF file or the ``#!`` program of a script, None if neither."""
    real = resolve(root, path)
    if real is None:
        return None
    host = os.path.join(root, real.lstrip("/"))
    try:
        fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            head = f.read(64)
            if head.startswith(b"#!"):
                line = (head + f.read(192)).split(b"\n", 1)[0][2:].strip().split()
                return line[0].decode("utf-8", "surrogateescape") if line else None
            if not head.startswith(b"\x7fELF") or len(head) < 64 or head[4] != 2 or head[5] != 1:
                return None
            phoff, = struct.unpack_from("<Q", head, 32)
            phentsize, phnum = struct.unpack_from("<HH", head, 54)
            f.seek(phoff)
            table = f.read(phentsize * min(phnum, 256))
            for i in range(min(phnum, 256)):
                off = i * phentsize
                if off + 56 > len(table):
                    break
                p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", table, off)
                if p_type == 3 and 0 < p_filesz < 4096:
                    f.seek(p_offset)
                    return f.read(p_filesz).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    except (OSError, struct.error):
        return None
    return None


def enrich(doc: dict[str, Any], root: str) -> None:
    """Add interpreters, ``resolved`` paths and ``symlinks`` to ``doc`` in place;
    drop from ``writes`` the paths that resolve into a tmpfs or virtual mount."""
    files: dict[str, Any] = doc["files"]
    todo = [p for p, f in files.items() if any(o["op"] == "exec" and o["ok"] for o in f["ops"])]
    seen: set[str] = set()
    while todo:
        exe = todo.pop()
        if exe in seen:
            continue
        seen.add(exe)
        interp = interpreter(root, exe)
        if interp and interp.startswith("/"):
            entry = files.setdefault(interp, {"ops": []})
            if not any(o["op"] == "interp" for o in entry["ops"]):
                entry["ops"].append({"op": "interp", "ok": True})
            todo.append(interp)
    links: dict[str, str] = {}
    for path in list(files):
        if any(path == v or path.startswith(v + "/") for v in VIRTUAL):
            continue
        real = resolve(root, path, links)
        if real is not None and real != path:
            files[path]["resolved"] = real
            if real not in files:
                files[real] = {"ops": [dict(o, via=path) for o in files[path]["ops"] if o["ok"]]}
    doc["files"] = {k: files[k] for k in sorted(files)}
    tmpfs = ("/tmp", "/run", "/dev", "/proc", "/sys")
    from trimcage.trace.config import secure_path

    def target_of(path: str) -> str:
        try:
            return secure_path(root, path)  # also for links to runtime paths absent from the image
        except Exception:  # a link loop: keep the path itself
            return path

    doc["writes"] = [w for w in doc.get("writes", [])
                     if not any(target_of(w) == t or target_of(w).startswith(t + "/") for t in tmpfs)]
    doc["symlinks"] = dict(sorted(links.items()))
