"""The Docker and Podman backends give the embedded runtime's trace; `run` flags reach the engine."""

import json
import subprocess

import pytest

from tests.trace.conftest import NGINX_CONFIG, RUN_TMP, config_file, leftovers, tc

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.samples]

# Paths that legitimately differ between runtimes (see src/trimcage/trace/README.md).
RUNTIME_SPECIFIC = ("/proc/", "/sys/", "/dev/", "/.dockerenv", "/run/.containerenv")


def engine_leftovers(engine: str) -> list[str]:
    cmd = ["podman", "--runtime", "runc"] if engine == "podman" else ["docker"]
    out = subprocess.run([*cmd, "ps", "-a", "--format", "{{.Names}} {{.Labels}}"], capture_output=True,
                         text=True, check=True).stdout
    return [line for line in out.splitlines() if line.startswith("trimcage-") and RUN_TMP in line]


def files_of(tmp_path, root, runtime):
    out = tmp_path / runtime
    cp = tc("trace", "--rootfs", str(root), "--image-config", config_file(tmp_path, NGINX_CONFIG),
            "-o", str(out), "--runtime", runtime, "--probe", "http://127.0.0.1:80/", timeout=600)
    assert cp.returncode == 0, cp.stderr
    doc = json.loads((out / "trace.json").read_text())
    assert doc["runtime"] == runtime and doc["probes"][0]["status"] == 200
    return {p for p in doc["files"] if not p.startswith(RUNTIME_SPECIFIC)}, doc


@pytest.fixture(scope="module")
def embedded_files(tmp_path_factory, nginx_root):
    return files_of(tmp_path_factory.mktemp("emb"), nginx_root, "embedded")


@pytest.mark.parametrize("engine", [pytest.param("docker", marks=pytest.mark.docker),
                                    pytest.param("podman", marks=pytest.mark.podman)])
def test_nginx_trace_same_files_as_embedded(tmp_path, nginx_root, embedded_files, engine):
    files, doc = files_of(tmp_path, nginx_root, engine)
    assert files == embedded_files[0]
    assert {"family": "AF_INET", "address": "0.0.0.0", "port": 80} in doc["listening"]
    assert engine_leftovers(engine) == [] and leftovers() == []


@pytest.mark.parametrize("engine", [pytest.param("docker", marks=pytest.mark.docker),
                                    pytest.param("podman", marks=pytest.mark.podman)])
def test_run_passes_seccomp_caps_and_exit_code(tmp_path, nginx_root, engine):
    prof = tmp_path / "deny-mkdir.json"
    prof.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}))
    cfg = config_file(tmp_path, {"Entrypoint": ["/bin/sh", "-c"]})
    script = "mkdir /tmp/x 2>&1; grep CapEff /proc/self/status; exit 4"
    cp = tc("run", "--rootfs", str(nginx_root), "--image-config", cfg, "--runtime", engine,
            "--seccomp", str(prof), "--cap-drop", "ALL", "--", script, timeout=600)
    assert cp.returncode == 4, cp.stderr
    assert "Operation not permitted" in cp.stdout
    assert "CapEff:\t0000000000000000" in cp.stdout
    assert engine_leftovers(engine) == [] and leftovers() == []


@pytest.mark.samples
@pytest.mark.parametrize("engine", [pytest.param("docker", marks=pytest.mark.docker),
                                    pytest.param("podman", marks=pytest.mark.podman)])
def test_run_sample_image_through_the_image_api(sample, engine):
    s = sample("nginx")
    cp = tc("run", "--runtime", engine, f"oci-archive:{s.path}", "--entrypoint", "/bin/sh", "--user", "www-data",
            "--", "-c", "id -u; test -f /etc/nginx/nginx.conf; exit 6", timeout=600)
    assert cp.returncode == 6, cp.stderr
    assert cp.stdout == "33\n"
    assert engine_leftovers(engine) == [] and leftovers() == []


@pytest.mark.parametrize("engine", [pytest.param("docker", marks=pytest.mark.docker),
                                    pytest.param("podman", marks=pytest.mark.podman)])
def test_job_image_same_trace_on_all_runtimes(tmp_path, sample, engine):
    s = sample("hello-static")
    docs = {}
    for rt in ("embedded", engine):
        cp = tc("trace", f"oci-archive:{s.path}", "-o", str(tmp_path / rt), "--runtime", rt, timeout=600)
        assert cp.returncode == 0, cp.stderr
        docs[rt] = json.loads((tmp_path / rt / "trace.json").read_text())
    a, b = docs["embedded"], docs[engine]
    assert a["kind"] == b["kind"] == "job" and a["exit_code"] == b["exit_code"] == 0
    assert a["output"] == b["output"] == s.meta["expect_output"] + "\n"
    assert a["syscalls"] == b["syscalls"] and set(a["files"]) == set(b["files"])
    assert engine_leftovers(engine) == [] and leftovers() == []
