"""The whole job on every sample image: build, verify, static mode, determinism, a broken image.

These run the real thing: mmdebstrap-built images, bubblewrap, strace, the
attack prober, Podman and Docker. Builds are shared per session.
"""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import pytest

from samples import SAMPLES

pytestmark = [pytest.mark.samples, pytest.mark.slow, pytest.mark.root]


def probe_args(sample, tmp: Path) -> list[str]:
    probes = sample.meta.get("probes") or []
    if not probes:
        return []
    f = tmp / f"{sample.name}-probes.json"
    f.write_text(json.dumps(probes))
    return ["--probe-file", str(f)]


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """``built(name, mode)`` -> (sample, output dir, CompletedProcess) of ``trimcage build``."""
    from samples.build import ensure

    from tests.conftest import run_cli

    cache: dict = {}
    base = tmp_path_factory.mktemp("builds")

    def get(name: str, mode: str = "combined"):
        key = (name, mode)
        if key not in cache:
            sample = ensure(name)
            out = base / f"{name}-{mode}"
            cp = run_cli("build", f"oci-archive:{sample.path}", "--mode", mode, "-o", str(out),
                         *probe_args(sample, base), timeout=1200)
            cache[key] = (sample, out, cp)
        return cache[key]

    return get


def _explain(cp) -> str:
    out = cp.stdout
    try:  # --json verdicts: show what differed and which attacks stayed open
        v = json.loads(out)
        out = json.dumps({"differences": v.get("differences"), "missing": v.get("missing_files"),
                          "open": [a for a in v.get("attacks", []) if not a.get("blocked")],
                          "slim_log": (v.get("slim") or {}).get("log_tail", "")[-1500:]}, indent=1)
    except ValueError:
        out = out[:2000] + ("\n...\n" + out[-3000:] if len(out) > 5000 else out[2000:])
    return f"exit {cp.returncode}\nstdout:\n{out}\nstderr:\n{cp.stderr[-3000:]}"


@pytest.mark.parametrize("name", SAMPLES)
def test_combined_build_verifies_under_embedded_runtime(built, name):
    sample, out, cp = built(name)
    assert cp.returncode == 0, _explain(cp)
    for f in ("image.oci.tar", "seccomp.json", "run.sh", "k8s.yaml", "report.json", "verify.json"):
        assert (out / f).is_file(), f
    verdict = json.loads((out / "verify.json").read_text())
    assert verdict["equivalent"] and verdict["attacks_blocked"], verdict["differences"]
    assert len(verdict["attacks"]) >= 20
    report = json.loads((out / "report.json").read_text())
    assert report["image"]["after"]["bytes"] <= report["image"]["before"]["bytes"]
    assert report["image"]["after"]["files"] <= report["image"]["before"]["files"]
    if sample.meta.get("kind") == "service":  # a Debian service image always loses most of itself
        assert report["image"]["after"]["bytes"] < report["image"]["before"]["bytes"] / 2


@pytest.mark.docker
@pytest.mark.podman
@pytest.mark.parametrize("runtime", ["podman", "docker"])
@pytest.mark.parametrize("name", SAMPLES)
def test_slim_image_verifies_under_engine(built, cli, tmp_path, name, runtime):
    sample, out, cp = built(name)
    assert cp.returncode == 0, _explain(cp)
    v = cli("verify", f"oci-archive:{sample.path}", str(out), "--runtime", runtime, "--json",
            *probe_args(sample, tmp_path), timeout=900)
    assert v.returncode == 0, _explain(v)
    verdict = json.loads(v.stdout)
    assert verdict["equivalent"] and verdict["attacks_blocked"]


@pytest.mark.parametrize("name", SAMPLES)
def test_static_mode_image_still_passes_its_probe(built, name):
    """Static mode is the sound mode: its image must work. Its profile allows everything
    reachable, so an attack may stay open (then build exits 3, and says so)."""
    sample, out, cp = built(name, "static")
    assert cp.returncode in (0, 3) and (out / "verify.json").is_file(), _explain(cp)
    verdict = json.loads((out / "verify.json").read_text())
    assert verdict["equivalent"], (verdict["differences"], verdict["slim"]["log_tail"][-1500:])
    assert all(p["ok"] for p in verdict["slim"]["probes"])
    assert (cp.returncode == 0) == verdict["attacks_blocked"]


def test_nginx_slim_is_small_and_has_no_shell_package_manager_or_setuid(built, cli):
    sample, out, cp = built("nginx")
    assert cp.returncode == 0, _explain(cp)
    report = json.loads((out / "report.json").read_text())
    assert report["image"]["after"]["bytes"] <= 15 * 1024 * 1024
    assert report["image"]["before"]["bytes"] >= 150 * 1024 * 1024
    inv = json.loads(cli("inspect", f"oci-archive:{out / 'image.oci.tar'}", "--json", check=True).stdout)
    assert inv["shells"] == [] and inv["package_managers"] == []
    assert inv["setuid"] == [] and inv["setgid"] == []
    assert inv["bytes"] <= 15 * 1024 * 1024


def _slim_files(oci_tar: Path) -> dict[str, bytes]:
    """Every member of the slim image's single layer: path -> content (files) or b'' (others)."""
    import gzip
    import io

    with tarfile.open(oci_tar) as outer:
        index = json.load(outer.extractfile("index.json"))
        manifest_digest = index["manifests"][0]["digest"].split(":")[1]
        manifest = json.load(outer.extractfile(f"blobs/sha256/{manifest_digest}"))
        (layer,) = manifest["layers"]
        data = outer.extractfile(f"blobs/sha256/{layer['digest'].split(':')[1]}").read()
    files = {}
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as t:
        for m in t:
            name = "/" + m.name.lstrip("./").rstrip("/")
            files[name] = t.extractfile(m).read() if m.isfile() else b""
    return files


def test_nginx_dpkg_status_lists_only_packages_with_kept_files(built):
    sample, out, cp = built("nginx")
    assert cp.returncode == 0, _explain(cp)
    files = _slim_files(out / "image.oci.tar")
    status = files["/var/lib/dpkg/status"].decode()
    names = re.findall(r"^Package: (\S+)$", status, re.M)
    assert "nginx-light" in names or "nginx" in names
    assert "apt" not in names and "bash" not in names and "dpkg" not in names
    for name in names:
        lists = [p for p in files if re.fullmatch(rf"/var/lib/dpkg/info/{re.escape(name)}(:\w+)?\.list", p)]
        assert lists, f"{name}: no info list"
        listed = [line for line in files[lists[0]].decode().splitlines() if line and line != "/."]
        kept_nondir = [p for p in listed if p in files and files[p] != b"" or (p in files and not p.endswith("/")
                                                                              and p not in _dirs(files))]
        assert kept_nondir, f"{name} is listed but none of its files is in the image"
        assert all(p in files for p in listed), f"{name}: its list names files that are not in the image"


def _dirs(files: dict[str, bytes]) -> set[str]:
    out = set()
    for p in files:
        parent = p.rsplit("/", 1)[0]
        while parent:
            out.add(parent)
            parent = parent.rsplit("/", 1)[0]
    return out


def _manifest_digest(oci_tar: Path) -> str:
    with tarfile.open(oci_tar) as t:
        return json.load(t.extractfile("index.json"))["manifests"][0]["digest"]


def test_two_builds_of_the_same_input_give_the_same_digest(built, cli, tmp_path):
    sample, out, cp = built("nginx")
    assert cp.returncode == 0, _explain(cp)
    digests = set()
    for i in range(2):
        dest = tmp_path / f"again{i}"
        cli("build", f"oci-archive:{sample.path}", "--trace", str(out / "trace.json"), "--no-verify",
            "-o", str(dest), check=True, timeout=900)
        digests.add(_manifest_digest(dest / "image.oci.tar"))
    assert digests == {_manifest_digest(out / "image.oci.tar")}


def test_broken_slim_image_fails_verify_and_names_the_missing_file(built, cli, tmp_path, store):
    from trimcage.image.api import read_image, write_image
    from trimcage.image.extract import rootfs
    from trimcage.image.flatten import flatten
    from trimcage.image.writer import build_image

    sample, out, cp = built("nginx")
    assert cp.returncode == 0, _explain(cp)
    slim = read_image(f"oci-archive:{out / 'image.oci.tar'}", store)
    index = flatten(slim, store)
    victims = {p for p in index if re.search(r"/libpcre2-8\.so", p)}
    assert victims, "nginx's slim image should hold libpcre2-8"
    entries = [e for e in index.iter_entries() if e.path not in victims and e.path != "/"]
    broken = build_image(store, rootfs(slim, store), entries, dict(slim.runtime_config))
    broken_tar = tmp_path / "broken.oci.tar"
    write_image(f"oci-archive:{broken_tar}", broken, store)
    v = cli("verify", f"oci-archive:{sample.path}", f"oci-archive:{broken_tar}", "--seccomp",
            str(out / "seccomp.json"), *probe_args(sample, tmp_path), timeout=900)
    assert v.returncode == 3, _explain(v)
    assert "libpcre2-8.so.0" in v.stdout + v.stderr
