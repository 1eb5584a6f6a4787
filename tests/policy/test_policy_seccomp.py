"""policy.seccomp: the syscall table, Docker's default, generated and user profiles."""

from __future__ import annotations

import ctypes
import json

import pytest

from tests.policy.seccomp_ctypes_helper import _private_compile, compile_profile
from trimcage.policy.interface import PolicyError
from trimcage.policy.seccomp import (DEFAULT_CAPS, RUNTIME_SYSCALLS, all_syscalls, docker_default_allowed,
                                     docker_default_profile, docker_default_restricted,
                                     load_profile, make_seccomp,
                                     profile_allowed, syscall_table)

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
FORK_FLAGS = 0x01200011  # CLONE_CHILD_SETTID|CLONE_CHILD_CLEARTID|SIGCHLD (glibc fork)
THREAD_FLAGS = 0x003D0F00  # pthread_create
SOCK_STREAM, SOCK_DGRAM, SOCK_RAW = 1, 2, 3
SOCK_NONBLOCK, SOCK_CLOEXEC = 0o4000, 0o2000000


def test_syscall_table_is_x86_64_as_libseccomp_knows_it():
    table = syscall_table()
    assert len(table) == 362 == len(all_syscalls())
    lib = ctypes.CDLL("libseccomp.so.2")
    lib.seccomp_syscall_resolve_name_arch.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
    for name, nr in table.items():
        assert lib.seccomp_syscall_resolve_name_arch(0xC000003E, name.encode()) == nr, name
    assert table["read"] == 0 and table["execve"] == 59 and "mmap2" not in table


def _docker_by_hand() -> set[str]:
    """Docker's default on amd64 with its 14 default caps, rule by rule from the JSON."""
    rules = docker_default_profile()["syscalls"]
    table = all_syscalls()
    allowed = set(rules[0]["names"])  # the unconditional list
    for r in rules[1:]:
        if r["action"] != "SCMP_ACT_ALLOW":
            continue
        inc, exc = r.get("includes") or {}, r.get("excludes") or {}
        caps = inc.get("caps") or []
        if caps and not set(caps) <= {"CAP_SYS_CHROOT"}:  # the only default cap with rules
            continue
        if inc.get("arches") and "amd64" not in inc["arches"]:
            continue
        if "amd64" in (exc.get("arches") or []):
            continue
        allowed |= set(r["names"])
    return allowed & table


def test_docker_default_counts():
    allowed = docker_default_allowed()
    assert allowed == _docker_by_hand()
    # The data README's "294 of 362" is the profile without any capability-gated
    # rule; with Docker's 14 default capabilities CAP_SYS_CHROOT adds chroot: 295.
    assert len(all_syscalls()) == 362
    assert len(docker_default_allowed(())) == 294
    assert len(all_syscalls() - docker_default_allowed(())) == 68
    assert allowed - docker_default_allowed(()) == {"chroot"}
    assert len(allowed) == 295
    for name in ("mount", "unshare", "setns", "bpf", "keyctl", "add_key", "clone3",
                 "io_uring_setup", "userfaultfd", "kexec_load", "reboot", "iopl"):
        assert name not in allowed, name
    for name in ("clone", "socket", "personality", "chroot", "ptrace", "arch_prctl", "read"):
        assert name in allowed, name
    assert docker_default_restricted() == {"clone", "socket", "personality"}
    # CAP_SYS_ADMIN opens the namespace and mount syscalls and lifts clone's rule.
    admin = docker_default_allowed(DEFAULT_CAPS | {"CAP_SYS_ADMIN"})
    assert {"mount", "unshare", "setns", "clone3"} <= admin
    assert "clone" not in docker_default_restricted({"CAP_SYS_ADMIN"})


def test_make_seccomp_shape_and_runtime_needs():
    p = make_seccomp({"read", "write", "openat"})
    assert p["defaultAction"] == "SCMP_ACT_ERRNO" and p["defaultErrnoRet"] == 1
    assert p["architectures"] == ["SCMP_ARCH_X86_64"]
    assert len(p["syscalls"]) == 1
    names = p["syscalls"][0]["names"]
    assert names == sorted(names)
    assert {"read", "write", "openat", "execve"} <= set(names)
    assert set(RUNTIME_SYSCALLS) <= set(names)
    assert len(RUNTIME_SYSCALLS) <= 25
    assert make_seccomp({"read"}, needs_32bit=True)["architectures"] == ["SCMP_ARCH_X86_64",
                                                                        "SCMP_ARCH_X86"]


def test_make_seccomp_is_deterministic():
    a = make_seccomp(["socket", "read", "bind", "clone"],
                     {"socket": {"1": (SOCK_STREAM | SOCK_CLOEXEC, SOCK_DGRAM), "0": (10, 2)},
                      "clone": {"0": (THREAD_FLAGS, FORK_FLAGS)}})
    b = make_seccomp(["clone", "bind", "read", "socket"],
                     {"clone": {"0": [FORK_FLAGS, THREAD_FLAGS]},
                      "socket": {"0": [2, 10], "1": [SOCK_DGRAM, SOCK_STREAM | SOCK_CLOEXEC]}})
    assert json.dumps(a, sort_keys=False) == json.dumps(b, sort_keys=False)


def _allows(rule_args, args: dict[int, int]) -> bool:
    """libseccomp semantics of one rule: every comparison holds."""
    for c in rule_args:
        v = args.get(c["index"], 0)
        if c["op"] == "SCMP_CMP_EQ" and v != c["value"]:
            return False
        if c["op"] == "SCMP_CMP_MASKED_EQ" and (v & c["value"]) != c.get("valueTwo", 0):
            return False
    return True


def _profile_allows(profile, name, args) -> bool:
    for r in profile["syscalls"]:
        if name in r["names"] and _allows(r.get("args") or [], args):
            return True
    return False


def test_masked_flag_rules_deny_unseen_bits():
    p = make_seccomp({"clone", "unshare", "socket"},
                     {"clone": {"0": (FORK_FLAGS, THREAD_FLAGS)}, "unshare": {"0": (CLONE_NEWNS,)},
                      "socket": {"0": (2,), "1": (SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                                                 SOCK_DGRAM | SOCK_CLOEXEC)}})
    clone = [r for r in p["syscalls"] if r["names"] == ["clone"]]
    assert len(clone) == 1 and clone[0]["args"][0]["op"] == "SCMP_CMP_MASKED_EQ"
    assert clone[0]["args"][0]["valueTwo"] == 0
    assert clone[0]["args"][0]["value"] == 0xFFFFFFFF & ~(FORK_FLAGS | THREAD_FLAGS | 0xFF)
    for flags in (FORK_FLAGS, THREAD_FLAGS, 0x11, (FORK_FLAGS & ~0xFF) | 9):
        assert _profile_allows(p, "clone", {0: flags}), hex(flags)
    for flags in (FORK_FLAGS | CLONE_NEWUSER, CLONE_NEWNET | 0x11, CLONE_NEWNS):
        assert not _profile_allows(p, "clone", {0: flags}), hex(flags)
    assert _profile_allows(p, "unshare", {0: CLONE_NEWNS})
    assert not _profile_allows(p, "unshare", {0: CLONE_NEWNS | CLONE_NEWUSER})
    assert _profile_allows(p, "socket", {0: 2, 1: SOCK_STREAM})
    assert _profile_allows(p, "socket", {0: 2, 1: SOCK_DGRAM | SOCK_NONBLOCK})  # seen flag bits
    assert not _profile_allows(p, "socket", {0: 2, 1: SOCK_RAW})
    assert not _profile_allows(p, "socket", {0: 2, 1: SOCK_RAW | SOCK_CLOEXEC})
    assert not _profile_allows(p, "socket", {0: 17, 1: SOCK_STREAM})  # AF_PACKET
    assert "socket" not in p["syscalls"][0]["names"]


def test_value_rules_and_runtime_syscalls_stay_free():
    p = make_seccomp({"personality", "write", "ioctl"},
                     {"personality": {"0": (0xFFFFFFFF, 0)}, "write": {"0": (1,)},
                      "ioctl": {"1": (0x5401,), "0": (0, 1)}})
    assert "write" in p["syscalls"][0]["names"]  # a runtime need is never restricted
    pers = [r["args"] for r in p["syscalls"] if r["names"] == ["personality"]]
    assert pers == [[{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}],
                    [{"index": 0, "value": 0xFFFFFFFF, "op": "SCMP_CMP_EQ"}]]
    ioctl = [r["args"] for r in p["syscalls"] if r["names"] == ["ioctl"]]
    assert len(ioctl) == 2 and all([a["index"] for a in args] == [0, 1] for args in ioctl)
    allowed, restricted = profile_allowed(p)
    assert restricted == {"personality", "ioctl"} and {"write", "ioctl"} <= allowed


def test_make_seccomp_rejects_bad_input():
    with pytest.raises(PolicyError, match="mmap2"):
        make_seccomp({"mmap2"})
    with pytest.raises(PolicyError):
        make_seccomp({"socket"}, {"socket": {"9": (1,)}})
    with pytest.raises(PolicyError):
        make_seccomp({"socket"}, {"socket": {"0": ("AF_INET",)}})
    with pytest.raises(PolicyError):
        make_seccomp({"socket"}, {"socket": [1, 2]})
    with pytest.raises(PolicyError):
        make_seccomp({"read", 3})


def test_negative_values_are_register_values():
    p = make_seccomp({"fchownat"}, {"fchownat": {"0": (-100,)}})
    rule = [r for r in p["syscalls"] if r["names"] == ["fchownat"]][0]
    assert rule["args"] == [{"index": 0, "value": 0xFFFFFFFFFFFFFF9C, "op": "SCMP_CMP_EQ"}]


def test_generated_profile_compiles_with_libseccomp():
    p = make_seccomp({"read", "openat", "clone", "socket", "personality"},
                     {"clone": {"0": (FORK_FLAGS,)}, "socket": {"0": (2, 10), "1": (1,)},
                      "personality": {"0": (0xFFFFFFFF,)}})
    bpf = compile_profile(p)
    assert len(bpf) % 8 == 0 and len(bpf) > 8 * 20
    assert bpf == _private_compile(p)  # two compilers, one program
    wider = make_seccomp({"read", "openat", "clone", "socket", "personality", "mount"},
                         {"clone": {"0": (FORK_FLAGS,)}, "socket": {"0": (2, 10), "1": (1,)},
                          "personality": {"0": (0xFFFFFFFF,)}})
    assert compile_profile(wider) != bpf
    both = make_seccomp({"read", "openat", "clone", "socket"},
                        {"clone": {"0": (FORK_FLAGS,)}, "socket": {"0": (2,), "1": (1,)}},
                        needs_32bit=True)
    assert len(compile_profile(both)) > len(compile_profile(make_seccomp(
        {"read", "openat", "clone", "socket"},
        {"clone": {"0": (FORK_FLAGS,)}, "socket": {"0": (2,), "1": (1,)}})))  # two arches


def test_load_profile_roundtrip(tmp_path):
    p = make_seccomp({"read"}, {})
    f = tmp_path / "p.json"
    f.write_text(json.dumps(p))
    assert load_profile(f) == p
    f.write_text(json.dumps(docker_default_profile()))
    assert load_profile(f)["defaultAction"] == "SCMP_ACT_ERRNO"


@pytest.mark.parametrize("content", [
    b"not json", b"\xff\xfe", b"[]", b"{}", b'{"defaultAction": "SCMP_ACT_NOPE"}',
    b'{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": {}}',
    b'{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [1]}',
    b'{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": "read", "action": "SCMP_ACT_ALLOW"}]}',
    b'{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": 3}]}',
    b'{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",'
    b' "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]}',
    b'{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",'
    b' "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}]}',
    b'{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",'
    b' "args": [{"index": 0, "value": true, "op": "SCMP_CMP_EQ"}]}]}',
    b'{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",'
    b' "args": [{"index": 0, "value": 1, "op": "LIKE"}]}]}',
    b'{"defaultAction": "SCMP_ACT_ERRNO", "architectures": "x86"}',
])
def test_load_profile_hostile(tmp_path, content):
    f = tmp_path / "bad.json"
    f.write_bytes(content)
    with pytest.raises(PolicyError) as e:
        load_profile(f)
    assert str(f) in str(e.value) and "\n" not in str(e.value)


def test_load_profile_missing(tmp_path):
    with pytest.raises(PolicyError, match="nope.json"):
        load_profile(tmp_path / "nope.json")
