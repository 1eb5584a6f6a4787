"""Syscalls and argument values of small gcc-built programs, shared and static."""

from __future__ import annotations

import pytest

from trimcage.elf.api import analyze_root
from trimcage.elf.interface import AnalyzeOptions

from tests.elf.conftest import index_of, make_root

CONFIG = {"Entrypoint": ["/app/prog"]}


def analyze(tmp_path, prog, cache):
    root = make_root(tmp_path / "root", {"/app/prog": prog})
    return analyze_root(root, index_of(root), CONFIG, AnalyzeOptions(), store=cache)


@pytest.mark.parametrize("kind", ["shared", "static"])
def test_found_syscalls(tmp_path, progs, cache, kind):
    a = analyze(tmp_path, progs[kind], cache)
    assert [e.path for e in a.entry_points] == ["/app/prog"]
    s = set(a.syscalls)
    assert "socket" in s
    assert "getpid" in s                 # syscall(SYS_getpid) through the syscall() wrapper
    assert "sync" in s and "getppid" in s  # functions called only through a pointer table
    assert "acct" not in s               # the function nobody calls or takes the address of
    assert list(a.syscalls) == sorted(set(a.syscalls))


def test_static_socket_arguments_exact(tmp_path, progs, cache):
    a = analyze(tmp_path, progs["static"], cache)
    assert a.arguments["socket"]["0"] == (2,)      # AF_INET
    assert a.arguments["socket"]["1"] == (1,)      # SOCK_STREAM
    assert "socket" not in a.open_arguments


def test_shared_socket_family_includes_program_value(tmp_path, progs, cache):
    # libc's own socket() callers reachable from its function tables add their families;
    # the program's AF_INET must be among the values, and nothing is invented.
    a = analyze(tmp_path, progs["shared"], cache)
    fam = a.arguments.get("socket", {}).get("0")
    assert fam is not None and 2 in fam
    assert all(0 < v < 64 for v in fam)


@pytest.mark.parametrize("kind", ["shared", "static"])
def test_unknown_number_counted(tmp_path, progs, cache, kind):
    unknown = analyze(tmp_path / "u", progs[kind], cache)
    known = analyze(tmp_path / "k", progs[f"{kind}-known"], cache)
    marker = "unknown at call site /app/prog+"
    assert any(marker in s for s in unknown.unresolved_sites["sites"])
    assert not any(marker in s for s in known.unresolved_sites["sites"])
    assert "policy" in unknown.unresolved_sites
    per = unknown.unresolved_sites["per_object"]
    assert sum(per.values()) == unknown.unresolved_sites["total"]


def test_objects_and_files(tmp_path, progs, cache):
    a = analyze(tmp_path, progs["shared"], cache)
    paths = {o.path: o for o in a.objects}
    assert set(paths) == {"/app/prog", "/lib/x86_64-linux-gnu/libc.so.6",
                          "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"}
    assert paths["/app/prog"].kind == "pie"
    assert paths["/app/prog"].resolved == {"libc.so.6": "/lib/x86_64-linux-gnu/libc.so.6"}
    # the PT_INTERP symlink is kept in files
    assert "/lib64/ld-linux-x86-64.so.2" in a.files
    assert "socket" in paths["/lib/x86_64-linux-gnu/libc.so.6"].syscalls


def test_cache_hit_and_same_result(tmp_path, progs):
    from trimcage.elf.api import DirCache

    cache = DirCache(tmp_path / "fresh-cache")
    a = analyze(tmp_path / "1", progs["shared"], cache)
    b = analyze(tmp_path / "2", progs["shared"], cache)
    assert not any(o.cache_hit for o in a.objects)
    assert all(o.cache_hit for o in b.objects)
    strip = lambda j: {**j, "objects": [{**o, "cache_hit": None} for o in j["objects"]]}  # noqa: E731
    assert strip(a.to_json(timings=False)) == strip(b.to_json(timings=False))


def test_parallel_equals_serial(tmp_path, progs, tmp_path_factory):
    from trimcage.elf.api import DirCache

    root = make_root(tmp_path / "root", {"/app/prog": progs["shared"]})
    one = analyze_root(root, index_of(root), CONFIG, AnalyzeOptions(workers=1),
                       store=DirCache(tmp_path / "c1"))
    two = analyze_root(root, index_of(root), CONFIG, AnalyzeOptions(workers=2),
                       store=DirCache(tmp_path / "c2"))
    assert one.to_json(timings=False) == two.to_json(timings=False)
