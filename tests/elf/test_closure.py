"""Library closure: RUNPATH $ORIGIN, symlink chains, missing libraries."""

from __future__ import annotations

import os

from trimcage.elf.api import analyze_root
from trimcage.elf.interface import AnalyzeOptions
from tests.elf.conftest import gcc, index_of, make_root


def _build(tmp_path, with_missing: bool):
    b = tmp_path / "build"
    gcc(b / "libfoo.so.1.0", "-shared", "-fPIC", "-Wl,-soname,libfoo.so.1", "libfoo.c")
    os.symlink("libfoo.so.1.0", b / "libfoo.so.1")
    os.symlink("libfoo.so.1", b / "libfoo.so")
    gcc(b / "libmissing.so", "-shared", "-fPIC", "missing.c")
    args = ["usefoo.c", f"-L{b}", "-lfoo", "-Wl,--enable-new-dtags,-rpath,$ORIGIN/lib"]
    if with_missing:
        args = ["-DWITH_MISSING"] + args + ["-lmissing"]
    exe = gcc(b / "usefoo", *args)
    root = make_root(tmp_path / "root", {"/app/usefoo": exe, "/app/lib/libfoo.so.1.0": b / "libfoo.so.1.0"})
    os.symlink("libfoo.so.1.0", root / "app/lib/libfoo.so.1")
    return root


def test_runpath_origin_and_symlinks(tmp_path, cache):
    root = _build(tmp_path, with_missing=False)
    a = analyze_root(root, index_of(root), {"Entrypoint": ["/app/usefoo"]}, AnalyzeOptions(), store=cache)
    objs = {o.path: o for o in a.objects}
    assert objs["/app/usefoo"].resolved["libfoo.so.1"] == "/app/lib/libfoo.so.1.0"
    assert "/app/lib/libfoo.so.1" in a.files and "/app/lib/libfoo.so.1.0" in a.files
    assert a.unresolved_libraries == ()
    assert "getpgrp" in a.syscalls     # foo_call -> syscall(SYS_getpgrp) in libc


def test_missing_library_reported(tmp_path, cache):
    root = _build(tmp_path, with_missing=True)
    a = analyze_root(root, index_of(root), {"Entrypoint": ["/app/usefoo"]}, AnalyzeOptions(), store=cache)
    assert {"name": "libmissing.so", "needed_by": "/app/usefoo"} in [dict(u) for u in a.unresolved_libraries]
    objs = {o.path: o for o in a.objects}
    assert objs["/app/usefoo"].resolved["libmissing.so"] is None
    assert "getpgrp" in a.syscalls    # the rest is still analysed


def test_path_lookup_and_shebang(tmp_path, cache, progs):
    root = make_root(tmp_path / "root", {"/usr/bin/prog": progs["shared"]})
    (root / "app").mkdir()
    (root / "app/start.sh").write_text("#!/usr/bin/prog\n")
    (root / "app/start.sh").chmod(0o755)
    cfg = {"Entrypoint": ["start.sh"], "Env": ["PATH=/app:/usr/bin"]}
    a = analyze_root(root, index_of(root), cfg, AnalyzeOptions(), store=cache)
    assert [e.path for e in a.entry_points] == ["/usr/bin/prog"]
    assert "/app/start.sh" in a.files and "/usr/bin/prog" in a.files
