"""The deterministic writer: scanning a real tree and building a one-layer image from it."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import socket
import struct
import subprocess
import tarfile
from pathlib import Path

import pytest

from trimcage.image.interface import (
    BLOCK,
    CHAR,
    DIR,
    FIFO,
    HARDLINK,
    OCI_MANIFEST,
    REG,
    SYMLINK,
    Entry,
    HostileInputError,
)
from trimcage.image.writer import EPOCH, build_image, scan_directory
from trimcage.util import dumps

# struct vfs_cap_data, revision 2, effective flag, permitted = CAP_NET_BIND_SERVICE (10)
CAP_BYTES = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)
T0 = 1_600_000_000


def make_tree(root: Path, hello: bytes) -> Path:
    """A small real tree with every entry kind the writer must carry (needs root)."""
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "hello").write_bytes(hello)
    os.chmod(root / "bin" / "hello", 0o755)
    os.link(root / "bin" / "hello", root / "bin" / "hello-link")
    os.symlink("hello", root / "bin" / "sh")
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "suid").write_bytes(hello)
    os.chmod(root / "usr" / "bin" / "suid", 0o4755)
    (root / "usr" / "bin" / "pinger").write_bytes(b"#!/bin/true\n")
    os.chmod(root / "usr" / "bin" / "pinger", 0o755)
    os.setxattr(root / "usr" / "bin" / "pinger", "security.capability", CAP_BYTES)
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)
    (root / "home" / "user").mkdir(parents=True)
    (root / "home" / "user" / "secret").write_bytes(b"s3cret\n")
    os.chmod(root / "home" / "user" / "secret", 0o600)
    os.chown(root / "home" / "user" / "secret", 1000, 1000)
    os.chown(root / "home" / "user", 1000, 1000)
    (root / "dev").mkdir()
    os.mknod(root / "dev" / "null", 0o666 | 0o020000, os.makedev(1, 3))
    os.mknod(root / "dev" / "loop0", 0o660 | 0o060000, os.makedev(7, 0))
    os.mkfifo(root / "dev" / "fifo", 0o644)
    (root / "etc").mkdir()
    (root / "etc" / "motd").write_text("welcome\n")
    with socket.socket(socket.AF_UNIX) as s:  # sockets never go into layers
        s.bind(str(root / "tmp" / "sock"))
    return root


@pytest.fixture
def tree(tmp_path, hello_static) -> Path:
    return make_tree(tmp_path / "tree", hello_static)


def layer_members(store, image) -> tuple[bytes, list[tarfile.TarInfo], dict[str, bytes]]:
    raw = Path(store.blob_path(image.layers[0].digest)).read_bytes()
    tar = gzip.decompress(raw)
    members, data = [], {}
    with tarfile.open(fileobj=io.BytesIO(tar), mode="r:", encoding="utf-8", errors="surrogateescape") as tf:
        for m in tf:
            members.append(m)
            if m.isreg():
                data[m.name] = tf.extractfile(m).read()
    return raw, members, data


@pytest.mark.root
def test_scan_directory_records_every_kind(tree, hello_static):
    idx = scan_directory(tree)
    assert "/tmp/sock" not in idx
    assert idx["/"].type == DIR and idx["/"].mode == 0o755
    assert list(idx) == sorted(idx)
    hello = idx["/bin/hello"]
    assert hello.type == REG and hello.mode == 0o755 and hello.size == len(hello_static)
    assert hello.digest == "sha256:" + hashlib.sha256(hello_static).hexdigest()
    link = idx["/bin/hello-link"]
    assert link.type == HARDLINK and link.link == "/bin/hello" and link.digest == hello.digest
    assert idx["/bin/sh"].type == SYMLINK and idx["/bin/sh"].link == "hello"
    assert idx["/usr/bin/suid"].mode == 0o4755 and idx["/usr/bin/suid"].is_setuid
    assert idx["/usr/bin/pinger"].xattrs == {"security.capability": CAP_BYTES}
    assert idx["/tmp"].type == DIR and idx["/tmp"].mode == 0o1777
    secret = idx["/home/user/secret"]
    assert (secret.uid, secret.gid, secret.mode) == (1000, 1000, 0o600)
    assert idx["/dev/null"].type == CHAR and (idx["/dev/null"].devmajor, idx["/dev/null"].devminor) == (1, 3)
    assert idx["/dev/loop0"].type == BLOCK and idx["/dev/loop0"].devmajor == 7
    assert idx["/dev/fifo"].type == FIFO
    assert idx["/etc/motd"].mtime == int(os.lstat(tree / "etc" / "motd").st_mtime)


@pytest.mark.root
def test_build_image_layer_follows_the_entries(store, tree):
    idx = scan_directory(tree)
    image = build_image(store, tree, idx.iter_entries(), {"Cmd": ["/bin/hello"]}, mtime=T0)
    raw, members, data = layer_members(store, image)
    # fixed gzip header: no FNAME flag, mtime 0
    assert raw[:3] == b"\x1f\x8b\x08" and raw[3] == 0 and raw[4:8] == b"\0\0\0\0"
    names = [m.name.rstrip("/") for m in members]
    assert names == [p.lstrip("/") or "." for p in sorted(idx)]
    by = {m.name.rstrip("/"): m for m in members}
    assert all(m.uname == "" and m.gname == "" for m in members)
    assert all(m.mtime <= T0 for m in members)
    assert by["bin/hello-link"].islnk() and by["bin/hello-link"].linkname == "bin/hello"
    assert by["bin/sh"].issym() and by["bin/sh"].linkname == "hello"
    assert by["usr/bin/suid"].mode == 0o4755 and by["tmp"].mode == 0o1777
    assert by["home/user/secret"].uid == 1000 and data["home/user/secret"] == b"s3cret\n"
    assert by["dev/null"].ischr() and (by["dev/null"].devmajor, by["dev/null"].devminor) == (1, 3)
    assert by["dev/loop0"].isblk() and by["dev/fifo"].isfifo()
    cap = by["usr/bin/pinger"].pax_headers["SCHILY.xattr.security.capability"]
    assert cap.encode("utf-8", "surrogateescape") == CAP_BYTES
    # config: canonical JSON, fixed created, diff_id of the uncompressed tar, one history entry
    cdata = store.read_blob(image.config_blob.digest)
    config = json.loads(cdata)
    assert cdata == dumps(config)
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(gzip.decompress(raw)).hexdigest()]
    assert config["created"] == EPOCH and len(config["history"]) == 1
    assert (config["architecture"], config["os"], config["config"]) == ("amd64", "linux", {"Cmd": ["/bin/hello"]})
    manifest = json.loads(store.read_blob(image.manifest_digest))
    assert manifest["mediaType"] == OCI_MANIFEST and manifest["layers"][0]["digest"] == image.layers[0].digest


@pytest.mark.root
def test_same_input_same_digest(store, tree, tmp_path):
    entries = list(scan_directory(tree).iter_entries())
    a = build_image(store, tree, entries, {"Cmd": ["/bin/hello"]}, mtime=T0)
    b = build_image(store, tree, entries, {"Cmd": ["/bin/hello"]}, mtime=T0)
    assert a.manifest_digest == b.manifest_digest
    # a copy of the tree (hardlinks, owners, xattrs kept) with other on-disk mtimes
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(tree), str(copy)], check=True)
    later = T0 + 12345
    for dirpath, dirnames, filenames in os.walk(copy):
        for n in dirnames + filenames:
            os.utime(os.path.join(dirpath, n), (later, later), follow_symlinks=False)
    c_entries = list(scan_directory(copy).iter_entries())
    assert [e.mtime for e in c_entries] != [e.mtime for e in entries]
    c = build_image(store, copy, c_entries, {"Cmd": ["/bin/hello"]}, mtime=T0)
    assert c.manifest_digest == a.manifest_digest
    # without the clamp the on-disk times show through
    d = build_image(store, copy, c_entries, {"Cmd": ["/bin/hello"]})
    assert d.manifest_digest != a.manifest_digest
    # and a different runtime config is a different image
    e = build_image(store, tree, entries, {"Cmd": ["/bin/sh"]}, mtime=T0)
    assert e.manifest_digest != a.manifest_digest


@pytest.mark.root
def test_overlay_and_subset(store, tree):
    idx = scan_directory(tree)
    keep = [idx[p] for p in ("/bin/hello-link", "/etc/motd")]  # parents and the link target left out
    image = build_image(store, tree, keep, {}, overlay={"/etc/motd": b"replaced\n", "/etc/new.conf": b"x=1\n"},
                        mtime=T0)
    _raw, members, data = layer_members(store, image)
    by = {m.name.rstrip("/"): m for m in members}
    assert sorted(by) == ["bin", "bin/hello-link", "etc", "etc/motd", "etc/new.conf"]
    assert by["bin"].isdir() and by["bin"].mode == 0o755
    # a hardlink whose target is not written carries the content itself
    assert by["bin/hello-link"].isreg() and data["bin/hello-link"] == (tree / "bin" / "hello").read_bytes()
    assert data["etc/motd"] == b"replaced\n" and by["etc/motd"].size == 9
    assert data["etc/new.conf"] == b"x=1\n" and by["etc/new.conf"].mode == 0o644


def test_refuses_symlinked_parents(store, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(str(outside), root / "etc")
    os.symlink(str(outside / "passwd"), root / "motd")
    entries = [Entry("/etc", DIR, 0o755), Entry("/etc/passwd", REG, 0o644)]
    with pytest.raises(HostileInputError, match="symlink"):
        build_image(store, root, entries, {})
    with pytest.raises(HostileInputError, match="symlink"):
        build_image(store, root, [Entry("/motd", REG, 0o644)], {})


def test_scan_of_a_file_is_an_error(tmp_path):
    from trimcage.image.interface import ImageError

    (tmp_path / "f").write_text("x")
    with pytest.raises(ImageError, match="not a directory"):
        scan_directory(tmp_path / "f")
    with pytest.raises(ImageError):
        scan_directory(tmp_path / "missing")


@pytest.mark.parametrize("size", [0, 1, (1 << 20) - 1, (3 << 20) + 12345])
def test_parallel_gzip_is_plain_gzip(size, tmp_path):
    from trimcage.image.writer import _HashWriter, _ParallelGzip

    data = (os.urandom(4096) + b"abc" * 40000) * (size // 124096 + 1)
    data = data[:size]
    outs = []
    for _ in range(2):
        buf = io.BytesIO()
        gz = _ParallelGzip(_HashWriter(buf), 6)
        for i in range(0, len(data), 70000):  # odd write sizes, as tarfile makes them
            gz.write(data[i:i + 70000])
        gz.finish()
        outs.append(buf.getvalue())
    assert outs[0] == outs[1]
    assert gzip.decompress(outs[0]) == data
    (tmp_path / "x.gz").write_bytes(outs[0])
    cp = subprocess.run(["gzip", "-dc", str(tmp_path / "x.gz")], capture_output=True)  # an independent decoder
    assert cp.returncode == 0 and cp.stdout == data


def test_deep_tree_scans_and_builds(store, tmp_path):
    """A tree deeper than the recursion limit allows: scanning and building must not recurse per level."""
    import inspect
    import sys

    depth = 400
    root = tmp_path / "deep"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        nfd = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    with os.fdopen(os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as f:
        f.write("bottom\n")
    os.close(fd)
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 150)
    try:
        idx = scan_directory(root)
        image = build_image(store, root, idx.iter_entries(), {}, mtime=T0)
    finally:
        sys.setrecursionlimit(old)
    leaf = "/" + "d/" * depth + "leaf"
    assert len(idx) == depth + 2 and idx[leaf].type == REG
    _raw, members, data = layer_members(store, image)
    assert len(members) == depth + 2 and data[leaf[1:]] == b"bottom\n"
