"""Fixtures of the elf tests: C programs compiled with gcc into small root trees."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from trimcage.elf.api import DirCache
from trimcage.elf.fsview import scan_directory

FIXTURES = Path(__file__).parent / "fixtures"
HOST_LIBDIR = Path("/lib/x86_64-linux-gnu")


def gcc(out: Path, *args: str) -> Path:
    """Compile with gcc (sources are named relative to fixtures/); return ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = ["gcc", "-O2", "-o", str(out)]
    argv += [str(FIXTURES / a) if a.endswith(".c") else a for a in args]
    subprocess.run(argv, check=True, capture_output=True, text=True)
    return out


def make_root(root: Path, files: dict[str, Path]) -> Path:
    """A minimal rootfs: the host's glibc and loader (Debian 12 = bookworm) plus ``files``."""
    lib = root / "lib" / "x86_64-linux-gnu"
    lib.mkdir(parents=True, exist_ok=True)
    for name in ("libc.so.6", "ld-linux-x86-64.so.2"):
        shutil.copy(HOST_LIBDIR / name, lib / name)
    (root / "lib64").mkdir(exist_ok=True)
    if not (root / "lib64" / "ld-linux-x86-64.so.2").is_symlink():
        os.symlink("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", root / "lib64" / "ld-linux-x86-64.so.2")
    for dest, src in files.items():
        d = root / dest.lstrip("/")
        d.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, d)
    return root


@pytest.fixture(scope="session")
def cache(tmp_path_factory) -> DirCache:
    """One summary cache for the session (libc is analysed once)."""
    return DirCache(tmp_path_factory.mktemp("elfcache"))


@pytest.fixture(scope="session")
def progs(tmp_path_factory) -> dict[str, Path]:
    """prog.c built shared and static, with and without the unknown-number call."""
    d = tmp_path_factory.mktemp("progs")
    return {
        "shared": gcc(d / "prog", "prog.c"),
        "static": gcc(d / "prog-static", "-static", "prog.c"),
        "static-known": gcc(d / "prog-static-known", "-static", "-DNO_UNKNOWN", "prog.c"),
        "shared-known": gcc(d / "prog-known", "-DNO_UNKNOWN", "prog.c"),
    }


def index_of(root: Path):
    return scan_directory(root)
