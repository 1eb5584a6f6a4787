"""Extraction: what lands in dest (content, links, metadata), subsets, rootfs reuse and locking."""

from __future__ import annotations

import multiprocessing
import os
import stat
import sys

import pytest

from tests.image.hostile import M, gz, make_image, tar_bytes, write_layers, zst
from trimcage.image.extract import extract, rootfs
from trimcage.image.flatten import flatten_layers
from trimcage.image.interface import DIR, REG, SYMLINK, Entry, HostileInputError, ImageError, Index

extract_mod = sys.modules["trimcage.image.extract"]
AS_ROOT = os.geteuid() == 0

LOWER = [M("./", "dir"), M("etc/", "dir", mtime=1000), M("etc/passwd", data=b"root:x:0:0\n", mtime=1001),
         M("etc/gone", data=b"gone"), M("etc/ssl/", "dir"), M("etc/ssl/old.pem", data=b"old"),
         M("usr/bin/ping", data=b"ping v1", mode=0o4755, uid=0, gid=0),
         M("usr/bin/sudo", data=b"sudo", mode=0o4711, uid=0, gid=27, xattrs={"user.test": b"\x00\xffv"}),
         M("usr/bin/perl", data=b"perl", mode=0o755), M("usr/bin/perl5", "hardlink", link="usr/bin/perl"),
         M("bin", "symlink", link="usr/bin"), M("dev/null", "char", dev=(1, 3), mode=0o666),
         M("run/fifo", "fifo"), M("home/alice/", "dir", mode=0o750, uid=1000, gid=1000),
         M("home/alice/notes", data=b"n", uid=1000, gid=1000, mode=0o600),
         M("ro/", "dir", mode=0o555, mtime=42), M("ro/f", data=b"f", mode=0o444)]
UPPER = [M("etc/.wh.gone"), M("etc/ssl/.wh..wh..opq"), M("etc/ssl/new.pem", data=b"new"),
         M("usr/bin/ping", data=b"ping v2!", mode=0o4755), M("etc/motd", data=b"hi", mtime=2000)]


@pytest.fixture
def layers(tmp_path):
    return write_layers(tmp_path / "layers", [tar_bytes(LOWER), gz(tar_bytes(UPPER))])


def tree(root) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = "/" + os.path.relpath(p, root)
            st = os.lstat(p)
            out[rel] = ("l:" + os.readlink(p) if stat.S_ISLNK(st.st_mode) else
                        "d" if stat.S_ISDIR(st.st_mode) else open(p, "rb").read().decode())
    return out


def test_full_extraction(layers, tmp_path):
    dest = tmp_path / "root"
    skipped = extract(layers, None, dest)
    assert skipped == {"/dev/null", "/run/fifo"}
    t = tree(dest)
    assert t["/etc/passwd"] == "root:x:0:0\n" and t["/etc/motd"] == "hi"
    assert "/etc/gone" not in t and "/etc/ssl/old.pem" not in t and t["/etc/ssl/new.pem"] == "new"
    assert t["/usr/bin/ping"] == "ping v2!" and t["/bin"] == "l:usr/bin"
    assert "/dev/null" not in t and "/run/fifo" not in t and t["/dev"] == "d"
    perl, perl5 = os.stat(dest / "usr/bin/perl"), os.stat(dest / "usr/bin/perl5")
    assert perl.st_ino == perl5.st_ino and perl.st_nlink == 2
    assert stat.S_IMODE(os.stat(dest / "usr/bin/ping").st_mode) == 0o4755
    assert stat.S_IMODE(os.stat(dest / "usr/bin/sudo").st_mode) == 0o4711
    assert stat.S_IMODE(os.stat(dest / "ro").st_mode) == 0o555 and os.stat(dest / "ro").st_mtime == 42
    assert os.stat(dest / "etc").st_mtime == 1000 and os.stat(dest / "etc/motd").st_mtime == 2000
    if AS_ROOT:
        st = os.stat(dest / "home/alice/notes")
        assert (st.st_uid, st.st_gid) == (1000, 1000)
        assert os.stat(dest / "usr/bin/sudo").st_gid == 27
        try:
            assert os.getxattr(dest / "usr/bin/sudo", "user.test") == b"\x00\xffv"
        except OSError:  # a file system without user xattrs
            pass


def test_subset_with_parents(layers, tmp_path):
    dest = tmp_path / "sub"
    skipped = extract(layers, None, dest, paths=["/usr/bin/perl5", "etc/ssl/new.pem", "/dev/null"])
    assert skipped == {"/dev/null"}
    assert tree(dest) == {"/usr": "d", "/usr/bin": "d", "/usr/bin/perl5": "perl", "/etc": "d", "/etc/ssl": "d",
                          "/etc/ssl/new.pem": "new", "/dev": "d"}
    with pytest.raises(ImageError, match="not in the image"):
        extract(layers, None, tmp_path / "x", paths=["/etc/gone"])


def test_subset_reads_only_the_layers_it_needs(layers, tmp_path, monkeypatch):
    idx = flatten_layers(layers)
    opened = []
    real = extract_mod.open_layer

    def spy(path, label, **kw):
        opened.append(label)
        return real(path, label, **kw)
    monkeypatch.setattr(extract_mod, "open_layer", spy)
    extract(layers, None, tmp_path / "d", index=idx, paths=["/etc/motd"])
    assert opened == [str(layers[1])]


def test_detached_hardlink_gets_the_old_bytes(tmp_path):
    ls = write_layers(tmp_path / "l", [tar_bytes([M("a", data=b"old"), M("b", "hardlink", link="a"),
                                                  M("c", "hardlink", link="a")]),
                                       zst(tar_bytes([M("a", data=b"new")]))])
    dest = tmp_path / "d"
    extract(ls, None, dest)
    assert tree(dest) == {"/a": "new", "/b": "old", "/c": "old"}
    assert os.stat(dest / "b").st_ino == os.stat(dest / "c").st_ino != os.stat(dest / "a").st_ino


def test_existing_symlink_in_dest_is_replaced_not_followed(layers, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "root"
    dest.mkdir()
    (dest / "etc").symlink_to(outside)
    (dest / "usr").mkdir()
    (dest / "usr" / "bin").symlink_to(outside)
    extract(layers, None, dest)
    assert list(outside.iterdir()) == []
    assert (dest / "etc").is_dir() and not (dest / "etc").is_symlink()
    assert (dest / "etc/passwd").read_bytes() == b"root:x:0:0\n"


def test_forged_index_cannot_write_through_a_symlink(layers, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    forged = Index({"/": Entry("/", DIR, 0o755), "/evil": Entry("/evil", SYMLINK, 0o777, link=str(outside)),
                    "/evil/passwd": Entry("/evil/passwd", REG, 0o644, size=4, digest="sha256:" + "0" * 64)})
    with pytest.raises(HostileInputError, match="parent is not a directory"):
        extract(layers, None, tmp_path / "d", index=forged)
    forged = Index({"/": Entry("/", DIR, 0o755), "/../x": Entry("/../x", REG, 0o644, size=1, digest="sha256:0")})
    with pytest.raises(HostileInputError, match="normalised"):
        extract(layers, None, tmp_path / "d", index=forged)
    assert list(outside.iterdir()) == []


def test_changed_layer_is_detected(tmp_path):
    ls = write_layers(tmp_path / "l", [tar_bytes([M("a", data=b"aaaa")])])
    idx = flatten_layers(ls)
    ls[0].write_bytes(tar_bytes([M("a", data=b"bbbb")]))
    with pytest.raises(HostileInputError, match="changed since it was indexed"):
        extract(ls, None, tmp_path / "d", index=idx)


def test_rootfs_is_built_once(store, monkeypatch):
    image = make_image(store, [tar_bytes(LOWER), gz(tar_bytes(UPPER))])
    root = rootfs(image, store)
    assert root.parent == store.home / "rootfs" and (root / "etc/motd").read_bytes() == b"hi"
    monkeypatch.setattr(extract_mod, "extract", lambda *a, **k: pytest.fail("re-extracted"))
    assert rootfs(image, store) == root
    assert [p.name for p in (store.home / "rootfs").iterdir()] == [root.name]


def _rootfs_in_child(home, image, q):
    from trimcage.image.store import Store

    q.put(str(rootfs(image, Store(home))))


def test_rootfs_two_processes(store):
    image = make_image(store, [tar_bytes(LOWER + [M(f"bulk/{i}", data=os.urandom(20_000)) for i in range(200)])])
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_rootfs_in_child, args=(str(store.home), image, q)) for _ in range(2)]
    for p in procs:
        p.start()
    results = {q.get(timeout=120) for _ in procs}
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0] and len(results) == 1
    assert [p.name for p in (store.home / "rootfs").iterdir()] == [os.path.basename(results.pop())]


@pytest.mark.samples
@pytest.mark.slow
def test_real_image_rootfs_matches_its_index(sample, store):
    """The nginx sample (a real mmdebstrap image): every index entry is on disk as indexed."""
    import hashlib

    from trimcage.image.api import read_image

    image = read_image(f"oci-archive:{sample('nginx').path}", store)
    idx = extract_mod.flatten(image, store)
    root = rootfs(image, store)
    kinds = {REG: stat.S_ISREG, DIR: stat.S_ISDIR, SYMLINK: stat.S_ISLNK, "hardlink": stat.S_ISREG}
    for e in idx.iter_entries():
        p = root / e.path.lstrip("/")
        if e.type not in kinds:
            assert not os.path.lexists(p), e.path
            continue
        st = os.lstat(p)
        assert kinds[e.type](st.st_mode), e.path
        if e.type == SYMLINK:
            assert os.readlink(p) == e.link
            continue
        assert stat.S_IMODE(st.st_mode) == e.mode and int(st.st_mtime) == e.mtime, e.path
        if AS_ROOT:
            assert (st.st_uid, st.st_gid) == (e.uid, e.gid), e.path
        if e.is_file:
            assert st.st_size == e.size and "sha256:" + hashlib.sha256(p.read_bytes()).hexdigest() == e.digest
    assert sum(1 for _ in root.rglob("*")) == len(idx) - 1 - sum(e.type not in kinds for e in idx.iter_entries())


def test_non_utf8_names_and_capabilities(tmp_path):
    import tarfile

    cap = bytes.fromhex("0100000200200000000000000000000000000000")  # cap_net_raw+ep
    ls = write_layers(tmp_path / "l", [tar_bytes([M("caf\udce9/x\udcff", data=b"latin1")], fmt=tarfile.GNU_FORMAT),
                                       tar_bytes([M("usr/bin/ping", data=b"p", mode=0o755,
                                                    xattrs={"security.capability": cap})])])
    dest = tmp_path / "d"
    extract(ls, None, dest)
    assert os.listdir(os.fsencode(dest / "caf\udce9")) == [b"x\xff"]
    if AS_ROOT:
        try:
            got = os.getxattr(dest / "usr/bin/ping", "security.capability")
        except OSError as e:
            pytest.skip(f"no security xattrs here: {e}")
        assert got == cap


def test_deep_tree(tmp_path):
    """250 nested directories: more than the directory fds extraction keeps open at once."""
    deep = "/".join(["d"] * 250)
    ls = write_layers(tmp_path / "l", [tar_bytes([M(deep + "/f", data=b"bottom")])])
    dest = tmp_path / "d"
    extract(ls, None, dest)
    assert (dest / deep / "f").read_bytes() == b"bottom"


def test_write_and_read_failures_are_image_errors(layers, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ImageError, match="cannot extract into"):
        extract(layers, None, blocker / "dest")
    with pytest.raises(ImageError, match="cannot read the layer blob"):
        extract([tmp_path / "missing.tar"], None, tmp_path / "d")
