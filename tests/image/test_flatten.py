"""Flattening layers into an Index: OCI whiteouts, links, metadata, compression, the cache."""

from __future__ import annotations

import hashlib
import sys
import tarfile

import pytest

from tests.image.hostile import M, gz, make_image, tar_bytes, write_layers, zst
from trimcage.image.flatten import flatten, flatten_layers, index_from_json, index_to_json
from trimcage.image.interface import BLOCK, CHAR, DIR, FIFO, HARDLINK, REG, SYMLINK, HostileInputError

flatten_mod = sys.modules["trimcage.image.flatten"]


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def flat(tmp_path, *layers):
    return flatten_layers(write_layers(tmp_path / "layers", [tar_bytes(m) if isinstance(m, list) else m
                                                            for m in layers]))


BASE = [M("./", "dir"), M("etc/", "dir"), M("etc/passwd", data=b"root:x:0:0\n"), M("etc/ssl/", "dir"),
        M("etc/ssl/cert.pem", data=b"pem"), M("etc/ssl/private/", "dir", mode=0o700),
        M("etc/ssl/private/key", data=b"key", mode=0o600)]


def test_files_metadata_and_implied_parents(tmp_path):
    idx = flat(tmp_path, [M("usr/bin/ping", data=b"\x7fELF", mode=0o4755, uid=0, gid=3, mtime=123),
                          M("usr/bin/wall", data=b"w", mode=0o2755, gname="tty"),
                          M("tmp/", "dir", mode=0o1777), M("home/u/f", data=b"", uid=1000, gid=1000, uname="u")])
    assert list(idx) == sorted(idx)
    e = idx["/usr/bin/ping"]
    assert (e.type, e.mode, e.gid, e.mtime, e.size, e.digest) == (REG, 0o4755, 3, 123, 4, sha(b"\x7fELF"))
    assert e.is_setuid and idx["/usr/bin/wall"].is_setgid and idx["/usr/bin/wall"].gname == "tty"
    assert idx["/tmp"].mode == 0o1777
    assert (idx["/home/u/f"].uid, idx["/home/u/f"].uname, idx["/home/u/f"].digest) == (1000, "u", sha(b""))
    for implied in ("/", "/usr", "/usr/bin", "/home", "/home/u"):
        assert (idx[implied].type, idx[implied].mode, idx[implied].uid) == (DIR, 0o755, 0)


def test_absolute_and_dotted_names_are_normalised(tmp_path):
    idx = flat(tmp_path, [M("/etc/hosts", data=b"h"), M("./usr//lib/./x", data=b"x"), M("a/b/../c", data=b"c")])
    assert {"/etc/hosts", "/usr/lib/x", "/a/c"} <= set(idx) and "/a/b" not in idx


def test_symlinks_devices_fifos_xattrs(tmp_path):
    cap = b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    idx = flat(tmp_path, [M("bin", "symlink", link="usr/bin"), M("etc/alt", "symlink", link="/nowhere/../x"),
                          M("dev/null", "char", dev=(1, 3), mode=0o666), M("dev/sda", "block", dev=(8, 0)),
                          M("run/initctl", "fifo"), M("usr/bin/ping", data=b"p", xattrs={"security.capability": cap,
                                                                                           "user.note": b"\xff\x00"})])
    assert (idx["/bin"].type, idx["/bin"].link) == (SYMLINK, "usr/bin")
    assert idx["/etc/alt"].link == "/nowhere/../x"
    assert (idx["/dev/null"].type, idx["/dev/null"].devmajor, idx["/dev/null"].devminor) == (CHAR, 1, 3)
    assert idx["/dev/sda"].type == BLOCK and idx["/run/initctl"].type == FIFO
    assert dict(idx["/usr/bin/ping"].xattrs) == {"security.capability": cap, "user.note": b"\xff\x00"}


def test_whiteout_removes_lower_file_and_subtree(tmp_path):
    idx = flat(tmp_path, BASE, [M("etc/.wh.passwd"), M("etc/.wh.ssl"), M("etc/.wh.never-existed")])
    assert "/etc/passwd" not in idx and not any(p.startswith("/etc/ssl") for p in idx)
    assert "/etc" in idx


@pytest.mark.parametrize("order", ["whiteout-first", "whiteout-last"])
def test_whiteout_spares_the_same_layer(tmp_path, order):
    upper = [M("etc/.wh.ssl"), M("etc/ssl/", "dir", mode=0o750), M("etc/ssl/new", data=b"n")]
    if order == "whiteout-last":
        upper = upper[1:] + upper[:1]
    idx = flat(tmp_path, BASE, upper)
    assert sorted(p for p in idx if p.startswith("/etc/ssl")) == ["/etc/ssl", "/etc/ssl/new"]
    assert idx["/etc/ssl"].mode == 0o750


@pytest.mark.parametrize("order", ["marker-first", "marker-last"])
def test_opaque_whiteout_keeps_this_layers_children(tmp_path, order):
    upper = [M("etc/ssl/", "dir"), M("etc/ssl/.wh..wh..opq"), M("etc/ssl/mine", data=b"m"),
             M("etc/ssl/private/", "dir", mode=0o710)]
    if order == "marker-last":
        upper = [upper[0], *upper[2:], upper[1]]
    idx = flat(tmp_path, BASE, upper)
    assert sorted(p for p in idx if p.startswith("/etc/ssl")) == ["/etc/ssl", "/etc/ssl/mine", "/etc/ssl/private"]
    assert idx["/etc/ssl/private"].mode == 0o710 and "/etc/passwd" in idx


def test_aufs_metadata_is_ignored(tmp_path):
    idx = flat(tmp_path, [M(".wh..wh.plnk/", "dir"), M(".wh..wh.plnk/1.2", data=b"x"), M("ok", data=b"")])
    assert sorted(idx) == ["/", "/ok"]


def test_replacement_rules(tmp_path):
    lower = [M("d/", "dir", mode=0o700), M("d/child", data=b"c"), M("s", "symlink", link="d"), M("f", data=b"f"),
             M("e/", "dir"), M("e/kept", data=b"k")]
    upper = [M("d", data=b"now a file"), M("s/", "dir"), M("s/x", data=b"x"), M("f", "symlink", link="d"),
             M("e/", "dir", mode=0o711, uid=5)]
    idx = flat(tmp_path, lower, upper)
    assert idx["/d"].type == REG and "/d/child" not in idx
    assert idx["/s"].type == DIR and "/s/x" in idx
    assert idx["/f"].type == SYMLINK
    assert (idx["/e"].mode, idx["/e"].uid) == (0o711, 5) and "/e/kept" in idx
    assert idx["/d"].layer == 1 and idx["/e/kept"].layer == 0


def test_later_layer_wins(tmp_path):
    idx = flat(tmp_path, [M("a", data=b"old", mode=0o600)], [M("a", data=b"new!", mode=0o640)])
    assert (idx["/a"].digest, idx["/a"].size, idx["/a"].mode, idx["/a"].layer) == (sha(b"new!"), 4, 0o640, 1)


def test_hardlinks(tmp_path):
    idx = flat(tmp_path, [M("usr/bin/perl5.36", data=b"perl", mode=0o755),
                          M("usr/bin/perl", "hardlink", link="usr/bin/perl5.36"),
                          M("usr/bin/perl2", "hardlink", link="./usr/bin/perl")])
    for p in ("/usr/bin/perl", "/usr/bin/perl2"):
        e = idx[p]
        assert (e.type, e.link, e.digest, e.size) == (HARDLINK, "/usr/bin/perl5.36", sha(b"perl"), 4) and e.is_file


@pytest.mark.parametrize("upper", [[M("bin/a", data=b"new a")], [M("bin/.wh.a")], [M(".wh.bin")]])
def test_hardlink_outlives_its_replaced_target(tmp_path, upper):
    lower = [M("bin/a", data=b"shared"), M("bin/b", "hardlink", link="bin/a"), M("bin/c", "hardlink", link="bin/a"),
             M("sbin/d", "hardlink", link="bin/a")]
    idx = flat(tmp_path, lower, upper)
    d = idx["/sbin/d"]
    if upper[0].name == ".wh.bin":
        assert (d.type, d.digest, d.layer, d.source) == (REG, sha(b"shared"), 0, "/bin/a")
        assert not any(p.startswith("/bin") for p in idx)
    else:
        b = idx["/bin/b"]
        assert (b.type, b.digest, b.layer, b.source) == (REG, sha(b"shared"), 0, "/bin/a")
        assert (idx["/bin/c"].type, idx["/bin/c"].link) == (HARDLINK, "/bin/b")
        assert (d.type, d.link) == (HARDLINK, "/bin/b")


def test_compression_is_detected_by_magic(tmp_path):
    layers = [gz(tar_bytes([M("g", data=b"g")])), zst(tar_bytes([M("z", data=b"z")])), tar_bytes([M("p", data=b"p")])]
    idx = flat(tmp_path, *layers)
    assert [idx[p].layer for p in ("/g", "/z", "/p")] == [0, 1, 2]


def test_non_utf8_names(tmp_path):
    idx = flat(tmp_path, tar_bytes([M("caf\udce9/x\udcff", data=b"latin1")], fmt=tarfile.GNU_FORMAT))
    assert "/caf\udce9/x\udcff" in idx
    assert index_from_json(index_to_json(idx)) == idx


def test_index_is_deterministic_and_round_trips(tmp_path):
    layers = [tar_bytes(BASE), gz(tar_bytes([M("etc/.wh.ssl"), M("x", "hardlink", link="etc/passwd"),
                                             M("y", data=b"y", xattrs={"user.a": b"1"})]))]
    a = flatten_layers(write_layers(tmp_path / "a", layers))
    b = flatten_layers(write_layers(tmp_path / "b", layers))
    assert a.to_json() == b.to_json() and dict(a) == dict(b)
    assert dict(index_from_json(index_to_json(a))) == dict(a)


def test_flatten_image_is_cached(store, monkeypatch):
    image = make_image(store, [gz(tar_bytes(BASE)), tar_bytes([M("etc/.wh.passwd")])])
    first = flatten(image, store)
    assert "/etc/passwd" not in first and "/etc/ssl/cert.pem" in first

    def no_layers(*a, **k):
        raise AssertionError("a cached flatten must not read layers")
    monkeypatch.setattr(flatten_mod, "open_layer", no_layers)
    assert dict(flatten(image, store)) == dict(first)


def test_diff_id_mismatch_is_hostile(store):
    layer = gz(tar_bytes([M("a", data=b"a")]))
    image = make_image(store, [layer], diff_ids=[sha(b"something else")])
    with pytest.raises(HostileInputError, match="diff_id|config says"):
        flatten(image, store)
    image = make_image(store, [layer], diff_ids=[sha(b"1"), sha(b"2")])
    with pytest.raises(HostileInputError, match="2 diff_ids for 1 layers"):
        flatten(image, store)
