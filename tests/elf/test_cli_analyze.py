"""``trimcage analyze`` end to end on OCI archives built from gcc programs."""

from __future__ import annotations

import json
import os

import pytest

from tests.elf.conftest import index_of, make_root


@pytest.fixture(scope="session")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("trimcage-home")


def _archive(tmp_path, home, files: dict, config: dict) -> str:
    from trimcage.image.api import write_image
    from trimcage.image.store import Store
    from trimcage.image.writer import build_image

    root = make_root(tmp_path / "root", {})
    for dest, data in files.items():
        p = root / dest.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        p.chmod(0o755)
    store = Store(home)
    image = build_image(store, root, list(index_of(root).iter_entries()), config)
    out = tmp_path / "image.tar"
    write_image(f"oci-archive:{out}", image, store)
    return str(out)


def test_analyze_writes_both_files(tmp_path, home, progs, cli):
    ref = _archive(tmp_path, home, {"/app/prog": progs["static"].read_bytes()}, {"Entrypoint": ["/app/prog"]})
    out = tmp_path / "out"
    env = {"TRIMCAGE_HOME": str(home)}
    cp = cli("analyze", ref, "-o", str(out), env=env, check=True)
    assert "syscalls:" in cp.stdout and "restricted arguments:" in cp.stdout
    analysis = json.loads((out / "analysis.json").read_text())
    profile = json.loads((out / "seccomp.json").read_text())
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO" and profile["architectures"] == ["SCMP_ARCH_X86_64"]
    allowed = {n for rule in profile["syscalls"] for n in rule["names"]}
    assert allowed == set(analysis["syscalls"])
    sock = [r for r in profile["syscalls"] if r["names"] == ["socket"]]
    assert sock and all(r.get("args") for r in sock)
    assert {(a["index"], a["value"]) for r in sock for a in r["args"]} == {(0, 2), (1, 1)}
    first = (out / "seccomp.json").read_bytes()
    # second run: warm cache, same profile bytes; --json prints the analysis
    cp2 = cli("analyze", ref, "-o", str(out), "--json", env=env, check=True)
    doc = json.loads(cp2.stdout)
    assert doc["syscalls"] == analysis["syscalls"]
    assert all(o["cache_hit"] for o in doc["objects"])
    assert (out / "seccomp.json").read_bytes() == first
    assert sorted(os.listdir(out)) == ["analysis.json", "seccomp.json"]


def test_garbage_entry_point_exit_2(tmp_path, home, cli):
    ref = _archive(tmp_path, home, {"/app/prog": b"\x7fELF" + os.urandom(3000)}, {"Entrypoint": ["/app/prog"]})
    out = tmp_path / "out"
    cp = cli("analyze", ref, "-o", str(out), env={"TRIMCAGE_HOME": str(home)})
    assert cp.returncode == 2, cp.stderr
    assert cp.stderr.count("\n") == 1 and "Traceback" not in cp.stderr
    assert "/app/prog" in cp.stderr
    assert not out.exists()
