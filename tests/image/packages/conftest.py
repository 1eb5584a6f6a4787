"""Helpers for the package-database tests: index a fixture tree the way flattening would."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from trimcage.image.interface import DIR, REG, SYMLINK, Entry, Index

TESTDATA = Path(__file__).parent / "testdata"


def index_of(root: Path) -> Index:
    """An Index of a small directory tree (dirs, regular files, symlinks), paths relative to ``root``."""
    entries = {"/": Entry(path="/", type=DIR, mode=0o755)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            path = "/" + os.path.relpath(full, root)
            st = os.lstat(full)
            if stat.S_ISDIR(st.st_mode):
                entries[path] = Entry(path=path, type=DIR, mode=0o755)
            elif stat.S_ISLNK(st.st_mode):
                entries[path] = Entry(path=path, type=SYMLINK, mode=0o777, link=os.readlink(full))
            else:
                entries[path] = Entry(path=path, type=REG, mode=0o644, size=st.st_size)
    return Index(entries)


@pytest.fixture(name="index_of")
def index_of_fixture():
    return index_of


@pytest.fixture
def testdata() -> Path:
    return TESTDATA
