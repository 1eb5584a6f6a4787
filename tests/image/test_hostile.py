"""The hostile suite: crafted layers and blobs that try to escape or break the image stage.

Each case must raise HostileInputError (DigestMismatchError for blobs) with a
one-line message naming the layer, and nothing may appear outside the
extraction directory: not next to it (a sentinel directory stays empty), not in
the unique directory an evil symlink points at.
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
import uuid

import pytest

from tests.image.hostile import M, gz, make_image, tar_bytes, write_layers, zst
from trimcage.image.extract import extract, rootfs
from trimcage.image.flatten import flatten
from trimcage.image.interface import DigestMismatchError, HostileInputError

tario = sys.modules["trimcage.image.tario"]


@pytest.fixture
def target():
    """A unique directory outside the test's tmp dir that evil symlinks point at; must stay untouched."""
    path = f"/tmp/trimcage-hostile-{uuid.uuid4().hex}"
    os.mkdir(path)
    yield path
    assert os.listdir(path) == [], "something was written through an evil symlink"
    os.rmdir(path)


def _pax_with(names: dict[str, str], **pax: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, linkname in names.items():
            ti = tarfile.TarInfo("placeholder")
            ti.type, ti.linkname = tarfile.SYMTYPE, linkname
            ti.pax_headers = {"path": name, **pax}  # PAX names may hold a NUL; ustar ones cannot
            tf.addfile(ti)
    return buf.getvalue()


def cases(target: str) -> dict[str, list[bytes]]:
    ok = tar_bytes([M("etc/passwd", data=b"root")])
    big = tar_bytes([M("a", data=os.urandom(200_000))])
    return {
        "dotdot": [tar_bytes([M("../escaped", data=b"x")])],
        "dotdot-deep": [tar_bytes([M("a/b/../../../escaped", data=b"x")])],
        "dotdot-absolute": [tar_bytes([M("/../../escaped", data=b"x")])],
        "file-through-symlink": [tar_bytes([M("evil", "symlink", link=target), M("evil/passwd", data=b"pwned")])],
        "file-through-relative-symlink": [tar_bytes([M("evil", "symlink", link="../../.."),
                                                     M("evil/tmp/x", data=b"pwned")])],
        "symlink-in-lower-layer": [tar_bytes([M("evil", "symlink", link=target)]),
                                   gz(tar_bytes([M("evil/passwd", data=b"pwned")]))],
        "dir-through-symlink": [tar_bytes([M("evil", "symlink", link=target), M("evil/sub/", "dir")])],
        "hardlink-through-symlink": [tar_bytes([M("evil", "symlink", link=target),
                                                M("a", data=b"x"), M("evil/h", "hardlink", link="a")])],
        "hardlink-outside": [tar_bytes([M("h", "hardlink", link="../../etc/passwd")])],
        "hardlink-absolute-missing": [tar_bytes([M("h", "hardlink", link="/etc/shadow")])],
        "hardlink-to-dir": [tar_bytes([M("d/", "dir"), M("h", "hardlink", link="d")])],
        "hardlink-to-symlink": [tar_bytes([M("s", "symlink", link=target), M("h", "hardlink", link="s")])],
        "hardlink-to-itself": [tar_bytes([M("h", data=b"x"), M("h", "hardlink", link="h")])],
        "whiteout-root": [ok, tar_bytes([M(".wh.")])],
        "whiteout-dot": [ok, tar_bytes([M("./.wh..")])],
        "whiteout-dotdot": [ok, tar_bytes([M("etc/.wh..."), M(".wh..")])],
        "whiteout-through-symlink": [tar_bytes([M("evil", "symlink", link="/etc"), M("etc/passwd", data=b"r")]),
                                     tar_bytes([M("evil/.wh.passwd")])],
        "file-under-file": [tar_bytes([M("f", data=b"x"), M("f/g", data=b"y")])],
        "root-is-symlink": [tar_bytes([M("./", "symlink", link=target)])],
        "empty-symlink": [tar_bytes([M("s", "symlink", link="")])],
        "unknown-type": [tar_bytes([M("v", b"V")])],
        "truncated-gzip": [gz(big)[:-5000]],
        "gzip-garbage": [gz(big)[:100] + bytes(200) + gz(big)[300:]],
        "truncated-zstd": [zst(big)[:-5000]],
        "truncated-tar": [big[:100_000]],
        "not-a-tar": [b"this is not a tar archive at all" * 40],
        "bad-header-midway": [ok[:1024] + b"\x01" * 512 + ok[1024:]],
        "zero-bytes": [b""],
        "zero-bytes-gzip": [gz(b"")],
        "nul-in-name": [_pax_with({"a\0b": "x"})],
        "mtime-infinite": [_pax_with({"a": "x"}, mtime="inf")],
        "mtime-nan": [_pax_with({"a": "x"}, mtime="nan")],
        "uid-huge": [tar_bytes([M("a", uid=2**40)])],
        "gid-negative": [_pax_with({"a": "x"}, gid="-5")],
    }


CASES = sorted(cases("/x"))


def _assert_contained(tmp_path, dest, sentinel):
    assert os.listdir(sentinel) == []
    assert sorted(os.listdir(tmp_path)) == sorted(["layers", "sentinel"] + (["dest"] if dest.exists() else []))
    assert not os.path.exists("/escaped") and not os.path.exists(tmp_path.parent / "escaped")


@pytest.mark.parametrize("case", CASES)
def test_hostile_layer(case, tmp_path, target):
    layers = write_layers(tmp_path / "layers", cases(target)[case])
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    dest = tmp_path / "dest"
    with pytest.raises(HostileInputError) as ei:
        extract(layers, None, dest)
    msg = str(ei.value)
    assert "\n" not in msg and "layers/layer" in msg, msg
    assert not dest.exists(), "nothing is written before the layers are known to be sound"
    _assert_contained(tmp_path, dest, sentinel)


@pytest.mark.parametrize("case", ["file-through-symlink", "truncated-gzip", "whiteout-root", "zero-bytes"])
def test_hostile_image_through_the_store(case, store, target):
    image = make_image(store, cases(target)[case])
    with pytest.raises(HostileInputError, match=r"layer \d \(sha256:"):
        flatten(image, store)
    with pytest.raises(HostileInputError):
        rootfs(image, store)
    assert not (store.home / "rootfs").exists() or list((store.home / "rootfs").iterdir()) == []


def test_absolute_names_land_inside_dest(tmp_path, target):
    layers = write_layers(tmp_path / "layers", [tar_bytes([M(f"{target}/x", data=b"inside"),
                                                           M("/etc/passwd", data=b"root")])])
    dest = tmp_path / "dest"
    extract(layers, None, dest)
    assert (dest / target.lstrip("/") / "x").read_bytes() == b"inside"
    assert (dest / "etc/passwd").read_bytes() == b"root"


def test_symlinks_pointing_out_are_created_not_followed(tmp_path, target):
    layers = write_layers(tmp_path / "layers", [tar_bytes([M("evil", "symlink", link=target),
                                                           M("rel", "symlink", link="../../../../../tmp")])])
    dest = tmp_path / "dest"
    extract(layers, None, dest)
    assert os.readlink(dest / "evil") == target and os.readlink(dest / "rel") == "../../../../../tmp"


def test_blob_digest_mismatch(store, tmp_path):
    blob = tmp_path / "blob"
    blob.write_bytes(gz(tar_bytes([M("a", data=b"a")])))
    claimed = "sha256:" + "ab" * 32
    with pytest.raises(DigestMismatchError) as ei:
        store.put_blob_file(blob, claimed)
    assert claimed in str(ei.value) and "\n" not in str(ei.value)
    assert not store.has_blob(claimed) and os.listdir(store.home / "tmp") == []
    assert list((store.home / "blobs").rglob("*")) in ([], [store.home / "blobs" / "sha256"])


@pytest.mark.parametrize("limit,value,members", [
    ("MAX_MEMBERS", 3, [M(f"f{i}") for i in range(5)]),
    ("MAX_META_BYTES", 100, [M("x" * 300, data=b"long name")]),
    ("MAX_LAYER_BYTES", 4096, [M("big", data=bytes(10_000))]),
])
def test_absurd_sizes_are_bounded(limit, value, members, tmp_path, monkeypatch):
    monkeypatch.setattr(tario, limit, value)
    layers = write_layers(tmp_path / "layers", [tar_bytes(members)])
    with pytest.raises(HostileInputError, match="layer0.tar"):
        extract(layers, None, tmp_path / "dest")


def test_overlong_paths(tmp_path):
    for name in ["a" * 256, "/".join(["d"] * 2100), "/".join(["d"] * 513)]:
        layers = write_layers(tmp_path / "layers", [tar_bytes([M(name, data=b"x")])])
        with pytest.raises(HostileInputError, match="exceeds|levels deep"):
            extract(layers, None, tmp_path / "dest")
