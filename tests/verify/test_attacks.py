"""verify.attacks: the prober, compiled with gcc and run in a real bwrap sandbox.

The same sandbox runs the battery without and with a seccomp filter built by
``make_seccomp`` (compiled to BPF by libseccomp, installed by ``bwrap
--seccomp``), so the difference is the profile's doing. Both runs keep all
capabilities, so only seccomp can block the kernel-surface attacks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.policy.seccomp_ctypes_helper import compile_profile
from trimcage.policy.seccomp import make_seccomp
from trimcage.verify.attacks import (ATTACK_NAMES, ATTACKS, FORK_FLAGS, AttackError,
                                     parse_results, prober_path, prober_profile)

SYSCALL_ATTACKS = ("raw_socket", "packet_socket", "unshare_user", "setns", "mount_tmpfs",
                   "ptrace", "bpf", "keyctl", "userfaultfd", "io_uring", "personality",
                   "setuid_chmod", "x86_32_abi")



@pytest.fixture(scope="module")
def prober():
    """The prober, built once into the session's store (TRIMCAGE_HOME) and reused."""
    return prober_path()


def test_attack_table_matches_the_prober_source():
    src = (Path(__file__).resolve().parents[2] / "src/trimcage/verify/attack_prober.c").read_text()
    assert len(ATTACK_NAMES) == len(set(ATTACK_NAMES)) == 26
    for a in ATTACKS:
        assert f'"{a.name}"' in src, a.name
        assert a.description and a.blocked_by


def test_parse_results():
    text = ('{"attack":"raw_socket","blocked":true,"errno":"EPERM","detail":"socket failed"}\n\n'
            '{"attack":"exec_sh","blocked":false,"errno":"","detail":"execve succeeded"}\n')
    r = parse_results(text)
    assert [(x.attack, x.blocked, x.errno) for x in r] == [("raw_socket", True, "EPERM"),
                                                          ("exec_sh", False, "")]
    assert r[0].description.startswith("socket(AF_INET")
    assert parse_results("") == []


@pytest.mark.parametrize("text", ["nope", "[1]", '{"attack": 1, "blocked": true}',
                                  '{"attack": "x", "blocked": "yes", "errno": "", "detail": ""}',
                                  '{"attack":"bogus","blocked":false,"errno":"","detail":"unknown '
                                  'attack","unknown":true}'])
def test_parse_results_malformed(text):
    with pytest.raises(AttackError):
        parse_results(text)


def test_prober_is_cached_static(prober):
    assert prober == prober_path()
    from elftools.elf.elffile import ELFFile

    with open(prober, "rb") as f:
        elf = ELFFile(f)
        assert elf["e_machine"] == "EM_X86_64"
        assert not any(seg["p_type"] == "PT_INTERP" for seg in elf.iter_segments())  # static
        assert elf.get_section_by_name(".dynamic") is None
    assert prober.name.startswith("attack-prober-")


def _bwrap(prober: Path, root: Path, names, *, profile=None, rootfs_ro=False, host_usr=False):
    argv = ["bwrap", "--die-with-parent", "--cap-add", "ALL",
            "--ro-bind" if rootfs_ro else "--bind", str(root), "/",
            "--ro-bind", str(prober), "/probe", "--proc", "/proc", "--dev", "/dev",
            "--tmpfs", "/tmp"]
    if host_usr:
        argv += ["--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin",
                 "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
                 "--ro-bind", "/etc", "/etc"]
    pass_fds = ()
    r = w = None
    if profile is not None:
        bpf = compile_profile(profile)
        r, w = os.pipe()
        os.write(w, bpf)  # a filter is a few KB: fits the pipe buffer
        os.close(w)
        argv += ["--seccomp", str(r)]
        pass_fds = (r,)
    try:
        cp = subprocess.run([*argv, "/probe", *names], capture_output=True, text=True, timeout=120,
                            pass_fds=pass_fds)
    finally:
        if r is not None:
            os.close(r)
    assert cp.returncode == 0, cp.stderr
    results = {x.attack: x for x in parse_results(cp.stdout)}
    assert list(results) == list(names)
    return results


def _restrictive():
    """An application profile that uses sockets, unshare and personality narrowly,
    widened by the prober's own needs (which must not re-open any attack)."""
    app = make_seccomp({"read", "write", "clone", "unshare", "socket", "personality"},
                       {"clone": {"0": (FORK_FLAGS,)},
                        "unshare": {"0": (0x00020000,)},      # CLONE_NEWNS seen
                        "socket": {"0": (2,), "1": (1 | 0o2000000,)},  # AF_INET, STREAM|CLOEXEC
                        "personality": {"0": (0xFFFFFFFF,)}})  # query only
    return prober_profile(app)


@pytest.mark.root
def test_seccomp_profile_blocks_what_the_host_allows(prober, tmp_path):
    assert shutil.which("bwrap")
    host = {x.attack: x for x in parse_results(subprocess.run(
        [str(prober), *SYSCALL_ATTACKS], capture_output=True, text=True, timeout=120).stdout)}
    # The host (root, no filter) must allow the core of the battery, or the test proves nothing.
    for name in ("raw_socket", "packet_socket", "unshare_user", "setns", "mount_tmpfs", "keyctl",
                 "personality", "setuid_chmod", "ptrace"):
        assert not host[name].blocked, (name, host[name].detail)
    root = tmp_path / "root"
    root.mkdir()
    names = (*SYSCALL_ATTACKS, "unshare_mount")
    open_run = _bwrap(prober, root, names)
    locked = _bwrap(prober, root, names, profile=_restrictive())
    for name in SYSCALL_ATTACKS:
        if not host[name].blocked:  # allowed on this host: allowed in the bare sandbox too
            assert not open_run[name].blocked, (name, open_run[name].detail)
        assert locked[name].blocked, (name, locked[name].detail)
        if name != "x86_32_abi":
            assert locked[name].errno == "EPERM", (name, locked[name].detail)
    # The masked unshare rule lets the seen flag through (bwrap kept the capabilities) ...
    assert not locked["unshare_mount"].blocked, locked["unshare_mount"].detail
    # ... and chmod is denied by the profile, so the setuid bit never appears.
    assert "not set" in locked["setuid_chmod"].detail
    # x86 ABI off: int 0x80 does not return the pid.
    assert "returned the pid" not in locked["x86_32_abi"].detail


@pytest.mark.root
def test_slim_sandbox_blocks_exec_and_root_writes(prober, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    execs = ("exec_sh", "exec_bash", "exec_perl", "exec_dpkg", "write_root")
    fat = _bwrap(prober, root, execs, host_usr=True)
    slim = _bwrap(prober, root, execs, rootfs_ro=True)
    for name in ("exec_sh", "exec_bash", "exec_perl", "exec_dpkg"):
        if Path("/usr/bin", name.split("_", 1)[1]).exists() or name == "exec_sh":
            assert not fat[name].blocked, (name, fat[name].detail)
        assert slim[name].blocked and slim[name].errno == "ENOENT", (name, slim[name].detail)
    assert not fat["write_root"].blocked
    assert slim["write_root"].blocked and slim["write_root"].errno in ("EROFS", "EACCES", "EPERM")
    assert json.loads(json.dumps(slim["write_root"].to_json()))["blocked"] is True


def test_prober_profile_reopens_no_attack():
    from trimcage.verify.attacks import PROBER_SYSCALLS
    attacked = {"socket", "unshare", "setns", "mount", "ptrace", "bpf", "add_key", "keyctl",
                "userfaultfd", "io_uring_setup", "personality", "chmod", "fchmod", "fchmodat",
                "execve", "execveat", "clone3"}
    assert not attacked & set(PROBER_SYSCALLS)
    base = make_seccomp({"read"})
    widened = prober_profile(base)
    assert widened["syscalls"][: len(base["syscalls"])] == base["syscalls"]
    assert base["syscalls"] == make_seccomp({"read"})["syscalls"]  # input untouched
    clone = [r for r in widened["syscalls"] if r["names"] == ["clone"]]
    assert clone[0]["args"] == [{"index": 0, "value": FORK_FLAGS, "op": "SCMP_CMP_EQ"}]


@pytest.mark.podman
@pytest.mark.root
def test_battery_in_podman_under_a_generated_policy(prober, tmp_path):
    """The battery in a real container: locked down by trimcage's policy vs Podman's defaults."""
    import tarfile
    import uuid

    from trimcage.policy.builder import build_policy
    from trimcage.policy.interface import PolicyInputs
    from trimcage.policy.render import run_command

    tar = tmp_path / "rootfs.tar"
    with tarfile.open(tar, "w") as t:
        t.add(prober, arcname="probe")
        info = tarfile.TarInfo("tmp")
        info.type, info.mode = tarfile.DIRTYPE, 0o1777
        t.addfile(info)
    policy = build_policy(PolicyInputs(syscalls=frozenset({"read", "write"}), user="0:0"))
    assert policy.read_only_rootfs and policy.capabilities == ()
    prof = tmp_path / "seccomp.json"
    prof.write_text(json.dumps(prober_profile(policy.seccomp)))
    name = f"localhost/trimcage-test-{uuid.uuid4().hex[:10]}:prober"
    ulimits = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096", "--network=none"]
    assert subprocess.run(["podman", "import", str(tar), name], capture_output=True).returncode == 0
    try:
        argv = run_command(policy, name, engine="podman", profile=str(prof))
        argv = ["podman", "--runtime", "runc", "run", *ulimits, *argv[2:], "/probe", *ATTACK_NAMES]
        locked = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert locked.returncode == 0, locked.stderr
        res = {r.attack: r for r in parse_results(locked.stdout)}
        assert set(res) == set(ATTACK_NAMES)
        assert [n for n, r in res.items() if not r.blocked] == []
        assert res["exec_sh"].errno == "ENOENT" and res["write_root"].errno == "EROFS"
        assert res["raw_socket"].errno == "EPERM"
        bare = subprocess.run(["podman", "--runtime", "runc", "run", "--rm", *ulimits, name, "/probe",
                               "write_root", "setuid_chmod", "x86_32_abi"],
                              capture_output=True, text=True, timeout=120)
        assert bare.returncode == 0, bare.stderr
        open_ = {r.attack: r for r in parse_results(bare.stdout)}
        assert not any(r.blocked for r in open_.values()), open_
    finally:
        subprocess.run(["podman", "rmi", "-f", name], capture_output=True)


@pytest.mark.root
def test_chmod_allowed_but_setuid_bits_denied(prober, tmp_path):
    """An app that needs chmod keeps it, yet cannot make a setuid file."""
    root = tmp_path / "root"
    root.mkdir()
    bare = _bwrap(prober, root, ("setuid_chmod",))
    assert not bare["setuid_chmod"].blocked, bare["setuid_chmod"].detail
    locked = _bwrap(prober, root, ("setuid_chmod",),
                    profile=prober_profile(make_seccomp({"chmod", "fchmod", "fchmodat", "openat", "close"})))
    assert locked["setuid_chmod"].blocked and locked["setuid_chmod"].errno == "EPERM"
    assert "not set" in locked["setuid_chmod"].detail
