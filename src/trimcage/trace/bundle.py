"""The tracer bundle: host ``strace`` and ``setpriv`` with their libraries and loader.

Built once from the host and cached under ``$TRIMCAGE_HOME/tracer/<digest>``
(the digest covers every copied file, so a host upgrade makes a new bundle).
Mounted read-only at ``/.trimcage`` in every container, it runs without any
file of the image: ``/.trimcage/ld.so --library-path /.trimcage/lib
/.trimcage/bin/strace ...``. Programs started by strace get a clean loader
environment (``--library-path`` is an argument, not ``LD_LIBRARY_PATH``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

from trimcage.trace.interface import TraceError
from trimcage.util import atomic_path

TOOLS = ("/usr/bin/strace", "/usr/bin/setpriv")
MOUNT = "/.trimcage"
OUT_MOUNT = "/.trimcage-out"
LOADER = f"{MOUNT}/ld.so"
LIBDIR = f"{MOUNT}/lib"


def home() -> Path:
    """The store root: ``$TRIMCAGE_HOME`` or ``~/.cache/trimcage``."""
    return Path(os.environ.get("TRIMCAGE_HOME") or Path.home() / ".cache" / "trimcage")


def _deps(binary: str) -> tuple[str, list[str]]:
    """Return (loader, libraries) of a host binary, from ``ldd``."""
    try:
        out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise TraceError(f"{binary}: cannot list its libraries with ldd: {e}") from e
    loader, libs = "", []
    for line in out.splitlines():
        m = re.search(r"=>\s+(/\S+)", line)
        if m:
            libs.append(m.group(1))
            continue
        m = re.match(r"\s*(/\S+ld-linux\S*)", line)
        if m:
            loader = m.group(1)
    if not loader:
        raise TraceError(f"{binary}: no dynamic loader found by ldd")
    return loader, libs


def bundle_dir() -> Path:
    """Build (once) and return the host directory to mount at ``/.trimcage``."""
    for t in TOOLS:
        if not os.access(t, os.X_OK):
            raise TraceError(f"{t} is missing on the host (apt-get install strace util-linux)")
    files: dict[str, str] = {}
    loader = ""
    for t in TOOLS:
        loader, libs = _deps(t)
        files[f"bin/{os.path.basename(t)}"] = t
        for lib in libs:
            files[f"lib/{os.path.basename(lib)}"] = lib
    files["ld.so"] = loader
    h = hashlib.sha256()
    for rel, src in sorted(files.items()):
        st = os.stat(src)
        h.update(f"{rel}\0{os.path.realpath(src)}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    dest = home() / "tracer" / h.hexdigest()[:16]
    if dest.is_dir():
        return dest
    with atomic_path(dest, is_dir=True) as tmp:
        for rel, src in sorted(files.items()):
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
            os.chmod(target, 0o755)
        os.chmod(tmp, 0o755)
    return dest


def strace_argv(log: str = f"{OUT_MOUNT}/trace.log") -> list[str]:
    """The in-container command prefix that runs strace from the bundle."""
    return [LOADER, "--library-path", LIBDIR, f"{MOUNT}/bin/strace", "-f", "-q", "-X", "raw", "-y",
            "-s", "4096", "-o", log, "--"]


def setpriv_argv(uid: int, gid: int, groups: list[int] | None) -> list[str]:
    """The in-container command prefix switching to ``uid:gid`` (supplementary ``groups``)."""
    g = ["--groups", ",".join(str(x) for x in groups)] if groups else ["--clear-groups"]
    return [LOADER, "--library-path", LIBDIR, f"{MOUNT}/bin/setpriv", "--reuid", str(uid),
            "--regid", str(gid), *g, "--"]
