"""The sample images: built from Debian packages, cached, deterministic, and working under Podman.

Archives are inspected independently of trimcage (skopeo and Python's tarfile);
the run test loads each sample into real Podman, runs it with host networking
and checks its probes from the metadata.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from samples import SAMPLES
from samples import build as sb

pytestmark = pytest.mark.samples

ROOT = Path(__file__).resolve().parents[2]
PODMAN_RUN = ["podman", "--runtime", "runc", "run", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]


def _archive_members(path: Path) -> dict[str, bytes]:
    """Small members (index, manifests, configs) of an oci-archive, by name."""
    out = {}
    with tarfile.open(path) as tf:
        for m in tf.getmembers():
            if m.isfile() and m.size < 1 << 20:
                out[m.name.removeprefix("./")] = tf.extractfile(m).read()
    return out


def _layer_listing(path: Path) -> dict[str, tarfile.TarInfo]:
    """The members of the single layer of an oci-archive, found through index.json and the manifest."""
    with tarfile.open(path) as tf:
        def blob(digest: str):
            return tf.extractfile("blobs/sha256/" + digest.split(":", 1)[1])

        index = json.load(tf.extractfile("index.json"))
        manifest = json.load(blob(index["manifests"][0]["digest"]))
        assert len(manifest["layers"]) == 1
        with tarfile.open(fileobj=blob(manifest["layers"][0]["digest"]), mode="r|gz") as layer:
            names = {m.name.removeprefix("./").rstrip("/"): m for m in layer}
            names.pop(".", None)  # the root directory itself
            names.pop("", None)
            return names


def _skopeo(*args: str) -> str:
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, check=True, timeout=120).stdout


# --- every sample builds into a valid archive -------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", SAMPLES)
def test_sample_is_valid_oci_archive(sample, name):
    s = sample(name)
    assert s.path.is_file() and s.path.name == f"{name}.oci.tar"
    meta = s.meta
    assert meta["name"] == name and meta["hash"] == sb.recipe_hash(name)
    members = _archive_members(s.path)
    assert json.loads(members["oci-layout"])["imageLayoutVersion"] == "1.0.0"
    # skopeo reads the archive on its own and agrees on the manifest digest and the runtime config
    raw = _skopeo("inspect", "--raw", f"oci-archive:{s.path}")
    assert sb.sha256_bytes(raw.encode()) == meta["manifest_digest"]
    config = json.loads(_skopeo("inspect", "--config", f"oci-archive:{s.path}"))
    rc = config["config"]
    recipe = sb.load_recipe(name)
    assert rc["Entrypoint"] == recipe["config"]["Entrypoint"]
    assert rc.get("User") == recipe["config"].get("User")
    assert set(rc.get("ExposedPorts", {})) == {f"{p}/tcp" for p in meta["ports"]}
    assert config["created"] == "2023-11-14T22:13:20Z"
    if meta["kind"] == "service":
        assert meta["ports"] and meta["probes"]
        for probe in meta["probes"]:
            assert len({"http", "tcp", "cmd", "exec"} & set(probe)) == 1, probe
    else:
        assert meta["expect_output"]


@pytest.mark.slow
def test_hello_static_is_only_the_binary(sample):
    s = sample("hello-static")
    layer = _layer_listing(s.path)
    assert list(layer) == ["hello"]
    assert layer["hello"].mode & 0o777 == 0o755 and layer["hello"].uid == 0


@pytest.mark.slow
def test_debian_sample_looks_like_debian_bookworm_image(sample):
    """minbase like debian:bookworm: setuid su/passwd/mount present; apt lists, caches, logs, /dev nodes gone."""
    layer = _layer_listing(sample("nginx").path)
    for path in ("usr/bin/su", "usr/bin/passwd", "usr/bin/mount"):
        assert layer[path].mode & 0o4000, path
    assert "usr/bin/apt-get" in layer and "usr/sbin/nginx" in layer
    assert layer["etc/debian_version"].isfile()
    assert not [p for p in layer if p.startswith("var/lib/apt/lists/")]
    assert not [p for p in layer if p.startswith("var/cache/apt/") and p.endswith(".bin")]
    assert not [p for p in layer if p.startswith("dev/")]
    assert "var/log/dpkg.log" not in layer and "etc/resolv.conf" not in layer and "etc/hostname" not in layer
    assert all(m.mtime <= sb.SOURCE_DATE_EPOCH for m in layer.values())


# --- the cache and determinism ---------------------------------------------------------------


@pytest.mark.slow
def test_shared_cache_second_ensure_does_not_rebuild(sample):
    first = sample("hello-static")
    st = first.path.stat()
    again = sb.ensure("hello-static")
    st2 = again.path.stat()
    assert (st2.st_ino, st2.st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
    assert again.meta == first.meta


def test_cache_rebuilds_only_on_hash_change_or_force(tmp_path, monkeypatch):
    first = sb.ensure("hello-static", out=tmp_path)
    st = first.path.stat()
    first_sha = sb.sha256_file(first.path)
    # keep the old inodes alive (hard links) so a rebuilt file cannot reuse them
    (tmp_path / "keep").mkdir()
    keep = tmp_path / "keep" / "first"
    os.link(first.path, keep)
    meta_st = (tmp_path / "hello-static.json").stat()
    cached = sb.ensure("hello-static", out=tmp_path)
    assert cached.path.stat().st_ino == st.st_ino
    assert (tmp_path / "hello-static.json").stat().st_mtime_ns == meta_st.st_mtime_ns
    # --force rebuilds (a new file) and gives a byte-identical image
    forced = sb.ensure("hello-static", out=tmp_path, force=True)
    assert forced.path.stat().st_ino != st.st_ino
    assert forced.meta["manifest_digest"] == first.meta["manifest_digest"]
    assert sb.sha256_file(forced.path) == first_sha
    # a new builder version changes the hash, so the cache is stale and the sample is rebuilt
    os.link(forced.path, tmp_path / "keep" / "forced")
    monkeypatch.setattr(sb, "BUILDER_VERSION", "test-" + sb.BUILDER_VERSION)
    assert sb.cached("hello-static", tmp_path) is None
    rebuilt = sb.ensure("hello-static", out=tmp_path)
    assert rebuilt.meta["hash"] != first.meta["hash"]
    assert rebuilt.path.stat().st_ino != (tmp_path / "keep" / "forced").stat().st_ino
    assert not list((tmp_path / ".build").iterdir()), "temporary build directories left behind"


def test_cli_rejects_unknown_sample(tmp_path):
    cp = subprocess.run([sys.executable, "-m", "samples.build", "--out", str(tmp_path), "no-such-sample"],
                        capture_output=True, text=True, cwd=ROOT)
    assert cp.returncode == 2
    assert "no-such-sample" in cp.stderr and "Traceback" not in cp.stderr
    assert not list(tmp_path.glob("*.oci.tar"))


@pytest.mark.slow
def test_service_build_is_deterministic(tmp_path):
    """Two independent --force builds of a Debian service (in parallel, one per core) give the same digest."""
    procs = [subprocess.Popen([sys.executable, "-m", "samples.build", "--force", "--no-check",
                               "--out", str(tmp_path / f"b{i}"), "memcached"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
             for i in (1, 2)]
    outs = [p.communicate(timeout=850) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    metas = [json.loads((tmp_path / f"b{i}" / "memcached.json").read_text()) for i in (1, 2)]
    assert metas[0]["manifest_digest"] == metas[1]["manifest_digest"]
    assert metas[0]["manifest_digest"] in outs[0][0]
    assert not list((tmp_path / "b1" / ".build").iterdir())


# --- each sample works under real Podman ---------------------------------------------------


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) != 0


def _podman(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check, timeout=timeout)


@pytest.mark.slow
@pytest.mark.podman
@pytest.mark.parametrize("name", SAMPLES)
def test_sample_runs_under_podman(sample, name):
    s = sample(name)
    loaded = _podman("load", "-q", "-i", str(s.path)).stdout.strip()
    image_id = loaded.split()[-1]
    assert image_id.startswith("sha256:"), loaded
    assert image_id == _skopeo_config_digest(s.path)
    try:
        if s.meta["kind"] == "job":
            cp = subprocess.run([*PODMAN_RUN, "--rm", image_id], capture_output=True, text=True, timeout=120)
            assert cp.returncode == 0, cp.stderr
            assert cp.stdout.strip() == s.meta["expect_output"]
            return
        for port in s.meta["ports"]:
            assert _port_free(port), f"port {port} is already in use on the host"
        cid = subprocess.run([*PODMAN_RUN, "-d", "--network", "host", "--tmpfs", "/run", image_id],
                             capture_output=True, text=True, check=True, timeout=120).stdout.strip()
        try:
            pending = list(s.meta["probes"])
            deadline = time.monotonic() + 90
            detail = ""
            while pending and time.monotonic() < deadline:
                ok, detail = sb.run_probe(pending[0])
                if ok:
                    pending.pop(0)
                else:
                    time.sleep(0.5)
            logs = _podman("logs", cid, check=False).stdout[-2000:]
            assert not pending, f"probe {pending[0]} failed ({detail}); logs:\n{logs}"
            state = json.loads(_podman("inspect", cid).stdout)[0]["State"]
            assert state["Running"], logs
            user = s.meta["config"].get("User")
            if user:
                top = _podman("top", cid, "user", check=False).stdout.split()
                assert user in top, top
        finally:
            _podman("rm", "-f", "-v", cid, check=False)
    finally:
        _podman("rmi", image_id, check=False)


def _skopeo_config_digest(path: Path) -> str:
    manifest = json.loads(_skopeo("inspect", "--raw", f"oci-archive:{path}"))
    return manifest["config"]["digest"]
