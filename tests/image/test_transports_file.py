"""The file transports (oci, oci-archive, docker-archive): round trips, real tools, hostile input."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import struct
import subprocess
import tarfile
from itertools import permutations
from pathlib import Path

import pytest

from trimcage.image.api import read_image, write_image
from trimcage.image.flatten import flatten
from trimcage.image.interface import (
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    OCI_INDEX,
    Blob,
    DigestMismatchError,
    HostileInputError,
    ImageError,
    TransportOptions,
)
from trimcage.image.store import Store
from trimcage.image.transports import _layout_util as lu
from trimcage.image.writer import build_image, scan_directory
from trimcage.util import dumps, sha256_bytes

T0 = 1_600_000_000
CAP_BYTES = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)
# the trees carry a security.capability xattr and the archives are loaded into daemons: root only
pytestmark = pytest.mark.root
RUN = ["--runtime", "runc", "run", "--rm", "--network", "host", "--ulimit", "nofile=1024:1024",
       "--ulimit", "nproc=4096:4096"]


def make_tree(root: Path, hello: bytes) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "hello").write_bytes(hello)
    os.chmod(root / "bin" / "hello", 0o755)
    os.link(root / "bin" / "hello", root / "bin" / "true")
    os.symlink("hello", root / "bin" / "sh")
    (root / "usr" / "sbin").mkdir(parents=True)
    (root / "usr" / "sbin" / "suid").write_bytes(b"#!/bin/sh\n")
    os.chmod(root / "usr" / "sbin" / "suid", 0o4755)
    os.setxattr(root / "usr" / "sbin" / "suid", "security.capability", CAP_BYTES)
    (root / "etc").mkdir()
    (root / "etc" / "motd").write_text("welcome\n")
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)
    return root


@pytest.fixture
def tree(tmp_path, hello_static) -> Path:
    return make_tree(tmp_path / "tree", hello_static)


@pytest.fixture
def built(store, tree):
    return build_image(store, tree, scan_directory(tree).iter_entries(), {"Cmd": ["/bin/hello"]}, mtime=T0)


REFS = {
    "oci": "oci:{d}/layout:v1",
    "oci-archive": "oci-archive:{d}/img.tar:v1",
    "docker-archive": "docker-archive:{d}/img.tar:trimcage-test:v1",
}


def _ref(kind: str, d: Path) -> str:
    return REFS[kind].format(d=d)


def test_writer_output_flattens_to_the_scanned_tree(store, tree, built):
    scanned = scan_directory(tree)
    index = flatten(built, store)
    assert list(index) == list(scanned)
    for path, e in scanned.items():
        f = index[path]
        assert (f.type, f.mode, f.uid, f.gid, f.link, f.digest, dict(f.xattrs)) == \
            (e.type, e.mode, e.uid, e.gid, e.link, e.digest, dict(e.xattrs)), path


@pytest.mark.parametrize("a,b", list(permutations(REFS, 2)))
def test_round_trip_pairs(tmp_path, store, built, a, b):
    want = flatten(built, store)
    ref_a, ref_b = _ref(a, tmp_path / "a"), _ref(b, tmp_path / "b")
    write_image(ref_a, built, store)
    s1 = Store(tmp_path / "s1")
    one = read_image(ref_a, s1)
    write_image(ref_b, one, s1)
    s2 = Store(tmp_path / "s2")
    two = read_image(ref_b, s2)
    assert flatten(one, s1) == want
    assert flatten(two, s2) == want
    assert two.config == built.config and two.diff_ids == built.diff_ids
    assert [x.digest for x in two.layers] == [x.digest for x in built.layers]
    if "docker-archive" not in (a, b):  # OCI all the way: the manifest itself is preserved
        assert two.manifest_digest == built.manifest_digest


@pytest.mark.parametrize("kind", ["oci-archive", "docker-archive"])
def test_archive_output_is_deterministic(tmp_path, store, built, kind):
    write_image(_ref(kind, tmp_path / "1"), built, store)
    write_image(_ref(kind, tmp_path / "2"), built, store)
    assert (tmp_path / "1" / "img.tar").read_bytes() == (tmp_path / "2" / "img.tar").read_bytes()
    assert [p.name for p in (tmp_path / "1").iterdir()] == ["img.tar"]  # no temporaries left


def test_oci_layout_holds_several_tags(tmp_path, store, tree, built):
    other = build_image(store, tree, scan_directory(tree).iter_entries(), {"Cmd": ["/bin/sh"]}, mtime=T0)
    d = tmp_path / "layout"
    write_image(f"oci:{d}:v1", built, store)
    write_image(f"oci:{d}:v2", other, store)
    write_image(f"oci:{d}:v1", built, store)  # rewriting a tag replaces it
    index = json.loads((d / "index.json").read_text())
    assert sorted(e["annotations"][lu.REF_NAME] for e in index["manifests"]) == ["v1", "v2"]
    s = Store(tmp_path / "s")
    assert read_image(f"oci:{d}:v2", s).runtime_config == {"Cmd": ["/bin/sh"]}
    assert read_image(f"oci:{d}:v1", s).manifest_digest == built.manifest_digest
    with pytest.raises(ImageError, match="2 images"):
        read_image(f"oci:{d}", s)
    with pytest.raises(ImageError, match="no image tagged 'v3'"):
        read_image(f"oci:{d}:v3", s)


def test_platform_selection_and_docker_manifests(tmp_path, store, tree):
    entries = list(scan_directory(tree).iter_entries())
    amd = build_image(store, tree, entries, {}, mtime=T0)
    arm = build_image(store, tree, entries, {}, mtime=T0, architecture="arm64")
    d = tmp_path / "multi"
    write_image(f"oci:{d}:amd", amd, store)
    # the arm64 image goes in with a Docker v2 schema 2 manifest
    arm_docker = lu.manifest_bytes(arm, store, "docker")
    assert json.loads(arm_docker)["mediaType"] == DOCKER_MANIFEST
    for digest in (arm.config_blob.digest, arm.layers[0].digest):
        shutil.copyfile(store.blob_path(digest), d / lu.blob_member(digest))
    (d / lu.blob_member(sha256_bytes(arm_docker))).write_bytes(arm_docker)
    amd_manifest = store.read_blob(amd.manifest_digest)
    index = dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": DOCKER_MANIFEST, "digest": sha256_bytes(arm_docker), "size": len(arm_docker),
         "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        {"mediaType": lu.OCI_MANIFEST, "digest": amd.manifest_digest, "size": len(amd_manifest),
         "platform": {"os": "linux", "architecture": "amd64"}}]})
    (d / lu.blob_member(sha256_bytes(index))).write_bytes(index)
    (d / "index.json").write_bytes(lu.index_json([{"mediaType": OCI_INDEX, "digest": sha256_bytes(index),
                                                   "size": len(index), "annotations": {lu.REF_NAME: "multi"}}]))
    s = Store(tmp_path / "s")
    got = read_image(f"oci:{d}:multi", s, TransportOptions(platform="linux/arm64"))
    assert got.config["architecture"] == "arm64" and got.manifest_digest == sha256_bytes(arm_docker)
    assert got.layers[0].media_type == DOCKER_LAYER_GZIP
    assert read_image(f"oci:{d}:multi", s).config["architecture"] == "amd64"
    with pytest.raises(ImageError, match="linux/arm64/v8"):
        read_image(f"oci:{d}:multi", s, TransportOptions(platform="linux/s390x"))
    # the same two manifests listed straight in index.json, untagged: the platform chooses
    (d / "index.json").write_bytes(lu.index_json(json.loads(index)["manifests"]))
    assert read_image(f"oci:{d}", s, TransportOptions(platform="linux/arm64")).config["architecture"] == "arm64"
    assert read_image(f"oci:{d}", s).config["architecture"] == "amd64"
    # the Docker-manifest image converts to OCI on the way out, and reads back the same
    write_image(f"oci-archive:{tmp_path}/arm.tar", got, s)
    again = read_image(f"oci-archive:{tmp_path}/arm.tar", Store(tmp_path / "s3"))
    assert again.config == got.config and again.manifest_digest != got.manifest_digest


def test_failed_write_leaves_nothing(tmp_path, store, built):
    ghost = dataclasses.replace(built, layers=(Blob("sha256:" + "0" * 64, 1, lu.OCI_LAYER_GZIP),))
    for kind in REFS:
        out = tmp_path / kind
        out.mkdir()
        with pytest.raises(ImageError, match="not in the store"):
            write_image(_ref(kind, out), ghost, store)
        assert list(out.iterdir()) == []


# --- real tools ------------------------------------------------------------------


def _skopeo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True, timeout=300)


def test_skopeo_reads_our_archives(tmp_path, store, built):
    write_image(f"oci-archive:{tmp_path}/o.tar:v1", built, store)
    write_image(f"docker-archive:{tmp_path}/d.tar:trimcage-test:v1", built, store)
    for ref in (f"oci-archive:{tmp_path}/o.tar:v1", f"docker-archive:{tmp_path}/d.tar"):
        cp = _skopeo("inspect", ref)
        assert cp.returncode == 0, cp.stderr
        info = json.loads(cp.stdout)
        assert info["Architecture"] == "amd64" and len(info["Layers"]) == 1
    cp = _skopeo("inspect", "--config", f"oci-archive:{tmp_path}/o.tar:v1")
    assert json.loads(cp.stdout)["rootfs"]["diff_ids"] == list(built.diff_ids)
    # skopeo copies each to an OCI layout; our reader gets the same tree back
    want = flatten(built, store)
    for i, src in enumerate((f"oci-archive:{tmp_path}/o.tar:v1", f"docker-archive:{tmp_path}/d.tar")):
        cp = _skopeo("copy", src, f"oci:{tmp_path}/sk{i}:x")
        assert cp.returncode == 0, cp.stderr
        s = Store(tmp_path / f"s{i}")
        assert flatten(read_image(f"oci:{tmp_path}/sk{i}:x", s), s) == want


@pytest.mark.podman
@pytest.mark.slow
def test_podman_loads_and_runs_our_docker_archive(tmp_path, store, built, podman, unique):
    name = f"localhost/{unique}:v1"
    write_image(f"docker-archive:{tmp_path}/d.tar:{name}", built, store)
    cp = subprocess.run([podman, "load", "-i", f"{tmp_path}/d.tar"], capture_output=True, text=True, timeout=300)
    assert cp.returncode == 0, cp.stderr
    try:
        assert name in cp.stdout
        run = subprocess.run([podman, *RUN, name, "/bin/hello", unique], capture_output=True, text=True,
                             timeout=300)
        assert run.returncode == 0, run.stderr
        assert run.stdout == f"hello from {unique}\n"
        # podman's own archives of it read back as the same tree
        want = flatten(built, store)
        for fmt in ("oci-archive", "docker-archive"):
            out = tmp_path / f"podman-{fmt}.tar"
            cp = subprocess.run([podman, "save", "--format", fmt, "-o", str(out), name], capture_output=True,
                                text=True, timeout=300)
            assert cp.returncode == 0, cp.stderr
            s = Store(tmp_path / f"s-{fmt}")
            img = read_image(str(out), s)  # autodetected
            assert flatten(img, s) == want and img.config["config"] == {"Cmd": ["/bin/hello"]}
    finally:
        subprocess.run([podman, "rmi", "-f", name], capture_output=True, timeout=300)


@pytest.mark.docker
@pytest.mark.slow
def test_docker_loads_and_runs_our_docker_archive(tmp_path, store, built, docker_daemon, unique):
    name = f"{unique}:v1"
    write_image(f"docker-archive:{tmp_path}/d.tar:{name}", built, store)
    cp = subprocess.run(["docker", "load", "-i", f"{tmp_path}/d.tar"], capture_output=True, text=True, timeout=300)
    assert cp.returncode == 0, cp.stderr
    try:
        assert f"Loaded image: {name}" in cp.stdout
        run = subprocess.run(["docker", "run", "--rm", "--network", "host", name, "/bin/true", unique],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        assert run.stdout == f"hello from {unique}\n"
        # `docker save` output (the legacy layout with <id>/layer.tar) reads back as the same tree
        out = tmp_path / "saved.tar"
        cp = subprocess.run(["docker", "save", "-o", str(out), name], capture_output=True, text=True, timeout=300)
        assert cp.returncode == 0, cp.stderr
        with tarfile.open(out) as tf:
            assert any(n.endswith("/layer.tar") for n in tf.getnames())
        s = Store(tmp_path / "s")
        img = read_image(f"docker-archive:{out}:{name}", s)
        assert flatten(img, s) == flatten(built, store)
        assert img.image_id == built.image_id and img.name == name
    finally:
        subprocess.run(["docker", "rmi", "-f", name], capture_output=True, timeout=300)


# --- hostile archives -----------------------------------------------------------------


def _members(path: Path) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    out = {}
    with tarfile.open(path) as tf:
        for m in tf:
            out[m.name] = (m, tf.extractfile(m).read() if m.isreg() else b"")
    return out


def _retar(path: Path, members: dict[str, tuple[tarfile.TarInfo, bytes]]) -> None:
    with tarfile.open(path, "w") as tf:
        for name, (m, data) in members.items():
            m = tarfile.TarInfo(name) if m is None else m
            m.name = name
            if m.isreg():
                m.size = len(data)
                tf.addfile(m, io.BytesIO(data))
            else:
                tf.addfile(m)


def _one_line(e: BaseException) -> str:
    msg = str(e)
    assert "\n" not in msg and msg
    return msg


@pytest.mark.parametrize("kind", ["oci-archive", "docker-archive"])
def test_empty_and_non_tar_archives(tmp_path, store, kind):
    (tmp_path / "empty.tar").write_bytes(b"")
    (tmp_path / "junk.tar").write_bytes(b"\x7fELF" + os.urandom(4000))
    for name in ("empty.tar", "junk.tar"):
        with pytest.raises(HostileInputError) as ei:
            read_image(f"{kind}:{tmp_path / name}", store)
        assert name in _one_line(ei.value)


def test_oci_archive_missing_blob_bad_config_wrong_digest(tmp_path, store, built):
    good = tmp_path / "good.tar"
    write_image(f"oci-archive:{good}", built, store)
    layer = lu.blob_member(built.layers[0].digest)
    config = lu.blob_member(built.config_blob.digest)

    m = _members(good)
    del m[layer]
    _retar(tmp_path / "missing.tar", m)
    with pytest.raises(HostileInputError, match="missing") as ei:
        read_image(f"oci-archive:{tmp_path}/missing.tar", Store(tmp_path / "s1"))
    assert built.layers[0].digest.split(":")[1] in _one_line(ei.value)

    m = _members(good)
    info, data = m[layer]
    m[layer] = (info, data[:-1] + bytes([data[-1] ^ 1]))  # same size, one bit flipped
    _retar(tmp_path / "flipped.tar", m)
    s2 = Store(tmp_path / "s2")
    with pytest.raises(DigestMismatchError) as ei:
        read_image(f"oci-archive:{tmp_path}/flipped.tar", s2)
    _one_line(ei.value)
    assert not s2.has_blob(sha256_bytes(m[layer][1]))  # nothing unverified is kept

    # a config that is not JSON, under its true digest, named by a consistent manifest
    m = _members(good)
    junk = b"this is not json {"
    man = json.loads(m[lu.blob_member(built.manifest_digest)][1])
    man["config"] = {"mediaType": lu.OCI_CONFIG, "digest": sha256_bytes(junk), "size": len(junk)}
    mbytes = dumps(man)
    del m[config]
    m[lu.blob_member(sha256_bytes(junk))] = (None, junk)
    m[lu.blob_member(sha256_bytes(mbytes))] = (None, mbytes)
    m["index.json"] = (None, lu.index_json([lu.index_entry(mbytes, None)]))
    _retar(tmp_path / "badconfig.tar", m)
    with pytest.raises(HostileInputError, match="not valid JSON") as ei:
        read_image(f"oci-archive:{tmp_path}/badconfig.tar", Store(tmp_path / "s3"))
    _one_line(ei.value)


def test_hostile_member_names_are_never_extracted(tmp_path, store, built):
    good = tmp_path / "good.tar"
    write_image(f"oci-archive:{good}", built, store)
    m = _members(good)
    layer = lu.blob_member(built.layers[0].digest)
    evil_dir = tmp_path / "victim"
    m[f"../../../../{evil_dir}/pwned"] = (None, b"owned\n")
    m[f"{evil_dir}/abs-pwned"] = (None, b"owned\n")
    _retar(tmp_path / "evil.tar", m)
    work = tmp_path / "cwd"
    work.mkdir()
    old = os.getcwd()
    os.chdir(work)
    try:
        img = read_image(f"oci-archive:{tmp_path}/evil.tar", Store(tmp_path / "s1"))
    finally:
        os.chdir(old)
    assert img.manifest_digest == built.manifest_digest
    assert not evil_dir.exists() and list(work.iterdir()) == []
    # a blob member that is a symlink to a host file is "missing", never read from the host
    m = _members(good)
    info = tarfile.TarInfo(layer)
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    m[layer] = (info, b"")
    _retar(tmp_path / "link.tar", m)
    with pytest.raises(HostileInputError, match="missing"):
        read_image(f"oci-archive:{tmp_path}/link.tar", Store(tmp_path / "s2"))


def test_docker_archive_hostile(tmp_path, store, built):
    good = tmp_path / "good.tar"
    write_image(f"docker-archive:{good}:x:y", built, store)
    m = _members(good)
    manifest = json.loads(m["manifest.json"][1])[0]
    cname, lname = manifest["Config"], manifest["Layers"][0]

    bad = dict(m)
    del bad[lname]
    _retar(tmp_path / "nolayer.tar", bad)
    with pytest.raises(HostileInputError, match="missing"):
        read_image(f"docker-archive:{tmp_path}/nolayer.tar", Store(tmp_path / "s1"))

    bad = dict(m)
    bad[cname] = (m[cname][0], b"\x00garbage")
    _retar(tmp_path / "badconfig.tar", bad)
    with pytest.raises(DigestMismatchError, match="config"):  # named by its digest, which no longer holds
        read_image(f"docker-archive:{tmp_path}/badconfig.tar", Store(tmp_path / "s2"))

    bad = dict(m)
    del bad[cname]
    bad["config.json"] = (None, b"{not json")
    bad["manifest.json"] = (None, json.dumps([{**manifest, "Config": "config.json"}]).encode())
    _retar(tmp_path / "notjson.tar", bad)
    with pytest.raises(HostileInputError, match="not valid JSON"):
        read_image(f"docker-archive:{tmp_path}/notjson.tar", Store(tmp_path / "s3"))

    import gzip

    bad = dict(m)
    raw = gzip.decompress(m[lname][1])
    bad[lname] = (m[lname][0], gzip.compress(raw[:-1024] + b"X" * 1024))  # valid gzip, wrong diff_id
    _retar(tmp_path / "wrongdiff.tar", bad)
    with pytest.raises(DigestMismatchError, match="diff_id") as ei:
        read_image(f"docker-archive:{tmp_path}/wrongdiff.tar", Store(tmp_path / "s4"))
    _one_line(ei.value)

    bad = dict(m)
    bad["manifest.json"] = (None, b'{"not": "a list"}')
    _retar(tmp_path / "badmanifest.tar", bad)
    with pytest.raises(HostileInputError, match="manifest.json"):
        read_image(f"docker-archive:{tmp_path}/badmanifest.tar", Store(tmp_path / "s5"))

    with pytest.raises(ImageError, match="no image tagged 'other:latest'"):
        read_image(f"docker-archive:{good}:other", Store(tmp_path / "s6"))
    assert read_image(f"docker-archive:{good}:x:y", Store(tmp_path / "s7")).name == "x:y"


def test_oci_layout_dir_blob_symlink_is_refused(tmp_path, store, built):
    d = tmp_path / "layout"
    write_image(f"oci:{d}", built, store)
    layer = d / lu.blob_member(built.layers[0].digest)
    copy = tmp_path / "elsewhere"
    shutil.copyfile(layer, copy)
    layer.unlink()
    os.symlink(copy, layer)
    with pytest.raises(HostileInputError, match="missing or not a regular file"):
        read_image(f"oci:{d}", Store(tmp_path / "s"))


def test_docker_archive_oci_inside_form_with_linked_layers(tmp_path, store, built):
    """Docker >= 25 `docker save`: an OCI layout plus manifest.json naming blobs/sha256/*, layers plain tars;
    a repeated layer stored once and linked (as docker save does for shared layers)."""
    import gzip

    raw = gzip.decompress(Path(store.blob_path(built.layers[0].digest)).read_bytes())
    diff_id = sha256_bytes(raw)
    assert diff_id == built.diff_ids[0]
    config = dict(built.config)
    config["rootfs"] = {"type": "layers", "diff_ids": [diff_id, diff_id]}
    cbytes = dumps(config)
    m: dict[str, tuple[tarfile.TarInfo | None, bytes]] = {
        "oci-layout": (None, lu.LAYOUT_JSON),
        lu.blob_member(sha256_bytes(cbytes)): (None, cbytes),
        lu.blob_member(diff_id): (None, raw),
    }
    link = tarfile.TarInfo("blobs/sha256/again")
    link.type, link.linkname = tarfile.SYMTYPE, diff_id.split(":")[1]
    m["blobs/sha256/again"] = (link, b"")
    m["manifest.json"] = (None, json.dumps([{
        "Config": lu.blob_member(sha256_bytes(cbytes)), "RepoTags": ["app:1"],
        "Layers": [lu.blob_member(diff_id), "blobs/sha256/again"]}]).encode())
    _retar(tmp_path / "new.tar", m)
    s = Store(tmp_path / "s")
    img = read_image(f"docker-archive:{tmp_path}/new.tar:app:1", s)
    assert [b.digest for b in img.layers] == [diff_id, diff_id]
    assert img.image_id == sha256_bytes(cbytes) and img.name == "app:1"
    got, want = flatten(img, s), flatten(built, store)
    assert {p: e.replace(layer=0) for p, e in got.items()} == dict(want.items())
    assert {e.layer for e in got.iter_entries()} == {1}  # the second copy of the layer wrote everything


def test_oci_layout_dir_wrong_digest_and_foreign_dir(tmp_path, store, built):
    d = tmp_path / "layout"
    write_image(f"oci:{d}:v1", built, store)
    config = d / lu.blob_member(built.config_blob.digest)
    data = config.read_bytes()
    config.write_bytes(data.replace(b'"amd64"', b'"arm64"'))  # same size, other bytes
    with pytest.raises(DigestMismatchError, match="config") as ei:
        read_image(f"oci:{d}:v1", Store(tmp_path / "s"))
    _one_line(ei.value)
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(ImageError, match="not an OCI layout"):
        write_image(f"oci:{foreign}", built, store)
    assert sorted(p.name for p in foreign.iterdir()) == ["cat.jpg"]
