"""The attack battery: what an intruder in the container would try first.

``attack_prober.c`` is compiled on the host (``gcc -static -O2``, cached in
the store by source hash) and run inside the locked-down container with the
attack names on its command line. Each attempt runs in a forked child; the
prober prints one JSON line per attack::

    {"attack": "raw_socket", "blocked": true, "errno": "EPERM", "detail": "..."}

``blocked`` means the attempt failed: an ``exec_*`` attack when ``execve``
fails (the binary is gone: ENOENT, or denied: EPERM/EACCES); a syscall attack
when the syscall fails (seccomp's EPERM, a missing capability, a read-only
root); the 32-bit ABI when ``int 0x80`` getpid does not return the pid. A
child killed by a signal (seccomp kill) counts as blocked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from typing import Any, Mapping

from trimcage.verify.interface import VerifyError
from trimcage.trace.static_tool import static_binary, tool_source


class AttackError(VerifyError):
    """The prober cannot be built, or its output is malformed."""


@dataclass(frozen=True)
class Attack:
    """One attack: its prober name, what it tries, and what normally blocks it."""

    name: str
    description: str
    blocked_by: str
    path: str = ""  # exec attacks: the program they try to run


def _exec(name: str, path: str, extra: str = "") -> Attack:
    return Attack(f"exec_{name}", f"execute {path}{extra}",
                  "the slim image no longer holds the binary (ENOENT)", path)


ATTACKS: tuple[Attack, ...] = (
    _exec("sh", "/bin/sh", " -c"),
    _exec("bash", "/bin/bash", " -c"),
    _exec("busybox", "/bin/busybox"),
    _exec("apt", "/usr/bin/apt"),
    _exec("dpkg", "/usr/bin/dpkg"),
    _exec("pip3", "/usr/bin/pip3"),
    _exec("curl", "/usr/bin/curl"),
    _exec("wget", "/usr/bin/wget"),
    _exec("nc", "/usr/bin/nc"),
    _exec("python3", "/usr/bin/python3", " -c"),
    _exec("perl", "/usr/bin/perl", " -e"),
    Attack("raw_socket", "socket(AF_INET, SOCK_RAW): craft packets, sniff",
           "seccomp socket type rule; no CAP_NET_RAW"),
    Attack("packet_socket", "socket(AF_PACKET): sniff and inject link-layer frames",
           "seccomp socket domain rule; no CAP_NET_RAW"),
    Attack("unshare_user", "unshare(CLONE_NEWUSER): gain capabilities in a new user namespace",
           "seccomp (unshare not allowed or flag masked)"),
    Attack("unshare_mount", "unshare(CLONE_NEWNS): private mount namespace",
           "seccomp; no CAP_SYS_ADMIN"),
    Attack("setns", "setns into another namespace", "seccomp; no CAP_SYS_ADMIN"),
    Attack("mount_tmpfs", "mount a tmpfs", "seccomp; no CAP_SYS_ADMIN"),
    Attack("ptrace", "ptrace(PTRACE_TRACEME) and PTRACE_ATTACH to pid 1",
           "seccomp (ptrace not allowed)"),
    Attack("bpf", "bpf(BPF_PROG_LOAD) of a trivial socket filter", "seccomp; no CAP_BPF"),
    Attack("keyctl", "add_key to the process keyring (kernel keyring bugs)", "seccomp"),
    Attack("userfaultfd", "userfaultfd (race-widening in kernel exploits)", "seccomp; sysctl"),
    Attack("io_uring", "io_uring_setup (large kernel attack surface)", "seccomp"),
    Attack("personality", "personality(READ_IMPLIES_EXEC): executable heap and stack",
           "seccomp personality value rule"),
    Attack("setuid_chmod", "chmod 04755 of a file in /tmp (plant a setuid binary)",
           "seccomp (chmod not allowed); the bit is reported"),
    Attack("write_root", "create a file in / (persist, replace binaries)",
           "read-only root file system (EROFS)"),
    Attack("x86_32_abi", "int 0x80 getpid from 64-bit code (32-bit syscall table)",
           "seccomp architectures: x86-64 only"),
)
ATTACK_NAMES: tuple[str, ...] = tuple(a.name for a in ATTACKS)
_BY_NAME = {a.name: a for a in ATTACKS}

# What the static prober needs for its own scaffolding (start-up of a static
# glibc binary, fork, pipes, wait, temp files), measured with strace. None of
# them is an attacked syscall; clone is added only with fork's flags.
PROBER_SYSCALLS: tuple[str, ...] = (
    "access", "alarm", "arch_prctl", "brk", "close", "dup2", "exit", "exit_group", "fstat",
    "getegid", "geteuid", "getgid", "getpid", "getrandom", "getuid", "ioctl", "lseek", "mkdir",
    "mmap", "mprotect", "munmap", "newfstatat", "openat", "pipe2", "pread64", "prlimit64", "read",
    "readlink", "readlinkat", "rmdir", "rseq", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn",
    "set_robust_list", "set_tid_address", "umount2", "uname", "unlink", "wait4", "write",
)
FORK_FLAGS = 0x01200011  # CLONE_CHILD_SETTID|CLONE_CHILD_CLEARTID|SIGCHLD: glibc fork()


def prober_profile(profile: Mapping[str, Any]) -> dict[str, Any]:
    """``profile`` plus what the prober itself needs, for running the battery under it.

    The added rules only widen the profile by the prober's scaffolding
    (:data:`PROBER_SYSCALLS`) and ``clone`` with exactly fork's flags, so an
    attack still meets the application's own rules. Rules are ORed: a syscall
    the profile already allows stays as it was.
    """
    out = dict(profile)
    out["syscalls"] = [*(profile.get("syscalls") or []),
                       {"names": list(PROBER_SYSCALLS), "action": "SCMP_ACT_ALLOW"},
                       {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                        "args": [{"index": 0, "value": FORK_FLAGS, "op": "SCMP_CMP_EQ"}]}]
    return out


@dataclass(frozen=True)
class AttackResult:
    """One prober line. ``errno`` is a name (``EPERM``) or ``""`` when none applies."""

    attack: str
    blocked: bool
    errno: str
    detail: str

    @property
    def description(self) -> str:
        a = _BY_NAME.get(self.attack)
        return a.description if a else ""

    def to_json(self) -> dict[str, object]:
        return {"attack": self.attack, "blocked": self.blocked, "errno": self.errno,
                "detail": self.detail}


def parse_results(text: str) -> list[AttackResult]:
    """Parse the prober's output, one result per non-empty line, in order.

    Raise AttackError on a line that is not a JSON object with ``attack``
    (str), ``blocked`` (bool), ``errno`` (str) and ``detail`` (str), or that
    reports an unknown attack name. Empty text gives [].
    """
    out: list[AttackResult] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise AttackError(f"attack prober output line {lineno}: not JSON: {line[:80]!r}") from e
        if not isinstance(obj, dict):
            raise AttackError(f"attack prober output line {lineno}: not an object")
        if obj.get("unknown"):
            raise AttackError(f"attack prober: unknown attack {obj.get('attack')!r}")
        attack, blocked = obj.get("attack"), obj.get("blocked")
        err, detail = obj.get("errno", ""), obj.get("detail", "")
        if not (isinstance(attack, str) and isinstance(blocked, bool) and isinstance(err, str)
                and isinstance(detail, str)):
            raise AttackError(f"attack prober output line {lineno}: wrong field types")
        out.append(AttackResult(attack, blocked, err, detail))
    return out


def prober_source() -> bytes:
    """The C source of the prober."""
    return tool_source("trimcage.verify", "attack_prober.c")


def prober_path() -> Path:
    """Return the path of the compiled static prober, building it on first use.

    Cached in the store by source hash; raise AttackError when gcc is missing or fails.
    """
    return static_binary(prober_source(), "attack-prober", AttackError)
