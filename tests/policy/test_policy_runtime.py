"""Generated profiles under real engines: Podman (runc) and the Docker daemon.

A static C program in a one-file image calls getuid (allowed) and mkdir
(denied by the profile). With the profile mkdir fails with EPERM; without it
mkdir succeeds, so the test would notice a profile that denies nothing — and
the container starting at all shows the runtime's own needs
(``RUNTIME_SYSCALLS``) are covered.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
import uuid

import pytest

from trimcage.policy.builder import build_policy
from trimcage.policy.interface import PolicyInputs
from trimcage.policy.render import run_command

PROBE_C = r"""
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
int main(void) {
    printf("uid=%d\n", (int)getuid());
    int r = mkdir("/tmp/trimcage-denied", 0700);
    printf("mkdir=%d errno=%d\n", r, r < 0 ? errno : 0);
    return 0;
}
"""
# What the static program needs (strace of it), nothing more: no mkdir.
PROBE_SYSCALLS = frozenset({"arch_prctl", "brk", "getrandom", "getuid", "mprotect", "newfstatat",
                            "prlimit64", "readlink", "rseq", "set_robust_list", "set_tid_address",
                            "fstat"})
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]


@pytest.fixture(scope="module")
def image_tar(tmp_path_factory):
    d = tmp_path_factory.mktemp("img")
    (d / "probe.c").write_text(PROBE_C)
    subprocess.run(["gcc", "-static", "-O2", "-o", str(d / "probe"), str(d / "probe.c")], check=True)
    tar = d / "rootfs.tar"
    with tarfile.open(tar, "w") as t:
        t.add(d / "probe", arcname="probe")
        info = tarfile.TarInfo("tmp")
        info.type, info.mode = tarfile.DIRTYPE, 0o1777
        t.addfile(info)
    return tar


@pytest.fixture
def profile(tmp_path):
    policy = build_policy(PolicyInputs(syscalls=PROBE_SYSCALLS, user="0:0"))
    f = tmp_path / "seccomp.json"
    f.write_text(json.dumps(policy.seccomp))
    return policy, f


def _run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _engine_test(engine, image_tar, profile, extra):
    policy, f = profile
    name = f"localhost/trimcage-test-{uuid.uuid4().hex[:10]}:probe"
    cp = _run([engine, "import", str(image_tar), name])
    assert cp.returncode == 0, cp.stderr
    try:
        argv = run_command(policy, name, engine=engine, profile=str(f))
        argv = [argv[0], *extra, *argv[1:], "/probe"]
        i = argv.index("run") + 1
        argv[i:i] = ["--network=none", *ULIMITS]
        locked = _run(argv)
        assert locked.returncode == 0, locked.stderr
        assert "uid=0" in locked.stdout
        assert "mkdir=-1 errno=1" in locked.stdout, locked.stdout  # EPERM from the profile
        bare = _run([engine, *extra, "run", "--rm", "--network=none", *ULIMITS, name, "/probe"])
        assert bare.returncode == 0, bare.stderr
        assert "mkdir=0 errno=0" in bare.stdout, bare.stdout
    finally:
        _run([engine, "rmi", "-f", name])


@pytest.mark.podman
@pytest.mark.root
def test_profile_under_podman_runc(image_tar, profile):
    _engine_test("podman", image_tar, profile, ["--runtime", "runc"])


@pytest.mark.docker
@pytest.mark.root
def test_profile_under_docker(image_tar, profile):
    _engine_test("docker", image_tar, profile, [])
