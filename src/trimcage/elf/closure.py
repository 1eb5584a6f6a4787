"""Library search with ld.so's rules, without running anything.

Order for a DT_NEEDED name without a slash (glibc ``elf/dl-load.c``):
DT_RPATH of the loading object (only if it has no DT_RUNPATH) and of the
executable, ``LD_LIBRARY_PATH`` from the image environment, DT_RUNPATH,
the ld.so.conf directories (what ``ld.so.cache`` holds), the default
directories (multiarch first). Each directory is also tried through its
``glibc-hwcaps/x86-64-v{4,3,2}`` subdirectories; every existing candidate
is kept (the CPU decides at run time) so the result stays sound. musl uses
``/etc/ld-musl-x86_64.path`` or its default path.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from typing import Iterable

from trimcage.elf.fsview import FsView

DEFAULT_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64",
                "/lib", "/usr/lib")
MUSL_DEFAULT = ("/lib", "/usr/local/lib", "/usr/lib")
HWCAPS = ("glibc-hwcaps/x86-64-v4", "glibc-hwcaps/x86-64-v3", "glibc-hwcaps/x86-64-v2")
LIB_EXPANSIONS = ("lib/x86_64-linux-gnu", "lib64", "lib")
PLATFORM_EXPANSIONS = ("x86_64", "haswell", "xeon_phi")


def expand_tokens(path: str, origin: str) -> list[str]:
    """Expand ``$ORIGIN``, ``$LIB`` and ``$PLATFORM`` (and ``${...}``) in one path element."""
    path = path.replace("${ORIGIN}", "$ORIGIN").replace("${LIB}", "$LIB").replace("${PLATFORM}", "$PLATFORM")
    out = [path.replace("$ORIGIN", origin)]
    if "$LIB" in path:
        out = [p.replace("$LIB", e) for p in out for e in LIB_EXPANSIONS]
    if "$PLATFORM" in path:
        out = [p.replace("$PLATFORM", e) for p in out for e in PLATFORM_EXPANSIONS]
    return out


def parse_ld_so_conf(fs: FsView, path: str = "/etc/ld.so.conf", depth: int = 0) -> list[str]:
    """Directories listed in ld.so.conf, following ``include`` globs (in-image)."""
    text = fs.read_text(path)
    if text is None or depth > 8:
        return []
    dirs: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("include"):
            for pat in line.split()[1:]:
                if not pat.startswith("/"):
                    pat = posixpath.join(posixpath.dirname(path), pat)
                d, base = posixpath.split(pat)
                for name in fs.listdir(d):
                    if fnmatch.fnmatch(name, base):
                        dirs.extend(parse_ld_so_conf(fs, posixpath.join(d, name), depth + 1))
        elif line.startswith("hwcap"):
            continue
        else:
            dirs.extend(p for p in re.split(r"[:\s,]+", line) if p.startswith("/"))
    return dirs


class LibrarySearch:
    """Finds shared objects in one image for one program (see module docstring)."""

    def __init__(self, fs: FsView, env: dict[str, str], interp: str | None):
        self.fs = fs
        self.musl = bool(interp and "musl" in interp)
        self.ld_library_path = [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p]
        if self.musl:
            text = fs.read_text("/etc/ld-musl-x86_64.path")
            self.system = [p for p in re.split(r"[:\n]+", text or "") if p.strip()] or list(MUSL_DEFAULT)
        else:
            self.system = parse_ld_so_conf(fs) + list(DEFAULT_DIRS)

    def candidates(self, name: str, origin: str, rpath: Iterable[str], runpath: str | None) -> list[str]:
        """Directories to try for ``name`` needed by an object in ``origin``, in order."""
        dirs: list[str] = []
        if runpath is None:
            for rp in rpath:
                for el in rp.split(":"):
                    dirs.extend(expand_tokens(el, origin))
        dirs.extend(self.ld_library_path)
        if runpath is not None:
            for el in runpath.split(":"):
                dirs.extend(expand_tokens(el, origin))
        dirs.extend(self.system)
        seen: set[str] = set()
        return [d for d in dirs if d and not (d in seen or seen.add(d))]

    def find(self, name: str, origin: str, rpath: Iterable[str] = (), runpath: str | None = None
             ) -> list[str]:
        """In-image paths (as looked up, before symlinks) the loader may open for ``name``.

        The first match is first; hwcaps variants of the same directory come
        before it. [] if the library is not in the image.
        """
        if "/" in name:
            p = name if name.startswith("/") else posixpath.join(origin, name)
            return [p] if self.fs.is_file(p) else []
        for d in self.candidates(name, origin, rpath, runpath):
            found = []
            if not self.musl:
                for h in HWCAPS:
                    p = posixpath.join(d, h, name)
                    if self.fs.is_file(p):
                        found.append(p)
            p = posixpath.join(d, name)
            if self.fs.is_file(p):
                found.append(p)
            if found:
                return found
        return []


def nss_modules(fs: FsView) -> list[str]:
    """``libnss_<service>.so.2`` names from /etc/nsswitch.conf (sorted, unique)."""
    text = fs.read_text("/etc/nsswitch.conf") or ""
    out: set[str] = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        if ":" not in line:
            continue
        for word in line.split(":", 1)[1].split():
            if word.startswith("[") or word.endswith("]") or "=" in word:
                continue
            if re.fullmatch(r"[a-z0-9_]+", word):
                out.add(f"libnss_{word}.so.2")
    return sorted(out)


def gconv_modules(fs: FsView) -> list[str]:
    """In-image paths of gconv configuration files and the modules they name."""
    out: list[str] = []
    for d in ("/usr/lib/x86_64-linux-gnu/gconv", "/usr/lib64/gconv", "/usr/lib/gconv"):
        if not fs.is_dir(d):
            continue
        confs = [posixpath.join(d, "gconv-modules")]
        confs += [posixpath.join(d, "gconv-modules.d", n) for n in fs.listdir(posixpath.join(d, "gconv-modules.d"))]
        confs.append(posixpath.join(d, "gconv-modules.cache"))
        for c in confs:
            if not fs.is_file(c):
                continue
            out.append(c)
            if c.endswith(".cache"):
                continue
            for line in (fs.read_text(c) or "").splitlines():
                parts = line.split("#", 1)[0].split()
                if len(parts) >= 4 and parts[0] == "module":
                    so = parts[3] + ".so" if not parts[3].endswith(".so") else parts[3]
                    p = so if so.startswith("/") else posixpath.join(d, so)
                    if fs.is_file(p):
                        out.append(p)
    return sorted(set(out))


def nginx_modules(fs: FsView) -> list[str]:
    """Shared objects named by ``load_module`` in /etc/nginx/**/*.conf and modules-enabled/."""
    confs = [p for p in fs.index if p.startswith("/etc/nginx/") and
             (p.endswith(".conf") or p.startswith("/etc/nginx/modules-enabled/"))]
    out: set[str] = set()
    for c in sorted(confs):
        for m in re.finditer(r"^\s*load_module\s+([^;\s]+)\s*;", fs.read_text(c) or "", re.M):
            p = m.group(1).strip("'\"")
            if not p.startswith("/"):
                p = posixpath.join("/usr/share/nginx", p)
            if fs.is_file(p):
                out.add(p)
    return sorted(out)


def python_modules(fs: FsView, interp_path: str) -> list[str]:
    """Extension modules a Python interpreter may import: every ``.so`` under its
    ``lib-dynload`` and site/dist-packages (best effort, over-approximate)."""
    base = posixpath.basename(interp_path)
    m = re.match(r"python(\d+(?:\.\d+)?)", base)
    out: set[str] = set()
    for p in fs.index:
        if not p.endswith(".so") and ".so." not in p:
            continue
        if "/lib-dynload/" in p or "/site-packages/" in p or "/dist-packages/" in p:
            if m is None or "/python" in p:
                out.add(p)
    return sorted(out)
