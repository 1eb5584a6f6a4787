"""Small static C tools trimcage brings into containers, built once with gcc.

The embedded runtime's exec helper and verify's attack prober are shipped as
C source in the package and compiled on first use with ``gcc -static``; the
binary is cached in the store by source hash (``cache/tools``), written
atomically, so concurrent callers never see a partial file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from trimcage.errors import TrimcageError
from trimcage.util import atomic_path, sha256_bytes


def tool_source(package: str, filename: str) -> bytes:
    """The C source shipped as package data."""
    return resources.files(package).joinpath(filename).read_bytes()


def static_binary(source: bytes, name: str, error: type[TrimcageError] = TrimcageError) -> Path:
    """Return the path of ``source`` compiled with ``gcc -static -O2``, building it on first use.

    Raise ``error`` (one line) when gcc is missing or the build fails.
    """
    from trimcage.image.store import open_store

    key = sha256_bytes(source).split(":", 1)[1][:32]
    dest = Path(open_store().cache_dir("tools")) / f"{name}-{key}"
    if dest.is_file() and os.access(dest, os.X_OK):
        return dest
    gcc = shutil.which("gcc")
    if gcc is None:
        raise error(f"gcc not found: needed to build {name} (apt-get install gcc libc6-dev)")
    with atomic_path(dest) as tmp:
        csrc = tmp.with_name(tmp.name + ".c")
        try:
            csrc.write_bytes(source)
            cp = subprocess.run([gcc, "-static", "-O2", "-o", str(tmp), str(csrc)],
                                capture_output=True, text=True, timeout=300)
        finally:
            csrc.unlink(missing_ok=True)
        if cp.returncode != 0:
            raise error(f"building {name} failed: {cp.stderr.strip()[-300:]}")
        tmp.chmod(0o755)
    return dest


def exec_helper_path() -> Path:
    """The embedded runtime's exec helper (``exec_helper.c``): user, chdir, seccomp, exec."""
    from trimcage.trace.interface import TraceError

    return static_binary(tool_source("trimcage.trace", "exec_helper.c"), "trimcage-exec", TraceError)
