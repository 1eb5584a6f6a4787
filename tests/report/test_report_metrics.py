"""report.metrics against independent computations from the data files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from trimcage.policy.seccomp import all_syscalls, make_seccomp
from trimcage.report.interface import CRITICAL_SYSCALLS, ReportError
from trimcage.report.metrics import (cve_table, docker_default_metrics, parse_cve_table,
                                     parse_shellcode_table, profile_metrics, shellcode_table,
                                     surface_metrics)

DATA = Path(__file__).resolve().parents[2] / "src/trimcage/data"
NGINX_LIKE = {"accept4", "arch_prctl", "bind", "brk", "close", "connect", "epoll_create1",
              "epoll_ctl", "epoll_wait", "eventfd2", "exit_group", "fcntl", "fstat", "futex",
              "getdents64", "geteuid", "getpid", "gettid", "ioctl", "listen", "lseek", "mmap",
              "mprotect", "munmap", "newfstatat", "openat", "pread64", "prlimit64", "pwrite64",
              "read", "recvfrom", "rseq", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn",
              "rt_sigsuspend", "sendfile", "set_robust_list", "set_tid_address", "setgid",
              "setgroups", "setsockopt", "setuid", "socket", "socketpair", "uname", "wait4",
              "write", "writev", "clone", "getrandom", "sysinfo", "umask", "mkdir", "pipe2"}


def _read_tsv(name):
    """An independent reader: csv module, '#' lines and the header dropped."""
    with open(DATA / name, newline="") as f:
        rows = [r for r in csv.reader(f, delimiter="\t") if r and not r[0].startswith("#")]
    return [(r[0], set(r[1].split(","))) for r in rows[1:]]


def _expected(allowed, x86):
    known = all_syscalls()
    ok = {n for n in allowed if n in known or x86}
    cves = [c for c, s in _read_tsv("kernel-cve-syscalls.tsv") if not s & ok]
    broken = [p for p, s in _read_tsv("shellcode-syscalls.tsv") if not s <= ok]
    return cves, len(broken)


def test_tables_parse():
    assert len(cve_table()) == 59 and len(shellcode_table()) == 808
    assert {c.cve for c in cve_table()} == {c for c, _ in _read_tsv("kernel-cve-syscalls.tsv")}
    by_id = {c.cve: c.syscalls for c in cve_table()}
    assert by_id["CVE-2016-0728"] == ("add_key", "keyctl", "request_key")


@pytest.mark.parametrize("text", ["# c\nhead\tx\nCVE-1\n", "h\th\n\tread\n", "h\th\nCVE-1\t\n"])
def test_parsers_reject_malformed(text):
    with pytest.raises(ReportError):
        parse_cve_table(text)
    with pytest.raises(ReportError):
        parse_shellcode_table(text)


def test_docker_default_metrics_match_hand_computation():
    d = docker_default_metrics()
    prof = json.loads((DATA / "docker-default-seccomp.json").read_text())
    # Docker with its default caps on amd64: the unconditional list, the amd64-only
    # entries, ptrace & co (minKernel 4.8), chroot (CAP_SYS_CHROOT) and the argument
    # rules of clone/socket/personality. i386 names count: Docker keeps the x86 ABI.
    allowed = set(prof["syscalls"][0]["names"]) | {"process_vm_readv", "process_vm_writev",
                                                   "ptrace", "arch_prctl", "modify_ldt", "chroot",
                                                   "clone", "socket", "personality"}
    cves, broken = _expected(allowed, x86=True)
    assert list(d.cves_mitigated) == cves and d.payloads_broken == broken
    assert d.allowed == 295 and d.x86_abi
    assert d.critical_allowed == CRITICAL_SYSCALLS  # Docker leaves all 18 open
    assert set(d.critical_restricted) == {"socket", "clone"}
    assert "CVE-2016-0728" in d.cves_mitigated  # add_key/keyctl/request_key all blocked
    assert "CVE-2013-1959" not in d.cves_mitigated  # reached through write
    assert 0 < len(d.cves_mitigated) < 59 and 0 < d.payloads_broken < 808


def test_tiny_profile_metrics_match_hand_computation():
    profile = make_seccomp(NGINX_LIKE, {"socket": {"0": (2, 10)}, "clone": {"0": (0x01200011,)}})
    m = profile_metrics(profile)
    allowed = {n for r in profile["syscalls"] for n in r["names"]}
    cves, broken = _expected(allowed, x86=False)
    assert list(m.cves_mitigated) == cves and m.payloads_broken == broken
    assert m.allowed == len(allowed) and not m.x86_abi
    assert set(m.restricted) == {"socket", "clone"}
    assert set(m.critical_allowed) == {"bind", "socket", "connect", "accept4", "listen",
                                       "mprotect", "recvfrom", "setuid", "setgid", "execve",
                                       "clone"}
    assert set(m.critical_restricted) == {"socket", "clone"}
    d = docker_default_metrics()
    assert len(m.cves_mitigated) > len(d.cves_mitigated)
    assert m.payloads_broken > d.payloads_broken


def test_i386_names_count_only_with_the_32bit_abi():
    base = {"socket", "connect", "send"}
    payload = {p.payload: p for p in shellcode_table()}["172"]
    assert set(payload.syscalls) == {"socket", "send", "connect"}
    off = surface_metrics(base)
    on = surface_metrics(base, architectures=("SCMP_ARCH_X86_64", "SCMP_ARCH_X86"))
    assert off.payloads_broken == _expected(base, x86=False)[1]
    assert on.payloads_broken == _expected(base, x86=True)[1]
    assert on.payloads_broken < off.payloads_broken
    assert off.allowed == on.allowed == 2  # send is not an x86-64 syscall


def test_empty_and_full_allow_lists():
    none = surface_metrics(set())
    assert len(none.cves_mitigated) == 59 and none.payloads_broken == 808
    assert none.critical_allowed == ()
    full = surface_metrics(all_syscalls())
    assert full.cves_mitigated == () and full.allowed == 362
