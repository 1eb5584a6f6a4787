"""Assemble a :class:`Policy` from :class:`PolicyInputs`."""

from __future__ import annotations

from trimcage.policy.capabilities import capability_rationale, parse_user
from trimcage.policy.interface import MODES, Policy, PolicyError, PolicyInputs
from trimcage.policy.seccomp import make_seccomp

TMPFS = ("/tmp", "/run")
#: Address families a socket may still get when its family is computed at run time
#: (read from a sockaddr or getaddrinfo result): what name resolution and
#: addresses produce. Exotic families (AF_PACKET, AF_NETLINK, AF_ALG, AF_VSOCK,
#: AF_RDS, AF_TIPC, ...) — the door of many kernel CVEs — stay closed unless a
#: constant at a call site or the trace names them.
ADDRESS_FAMILIES = (1, 2, 10)  # AF_UNIX, AF_INET, AF_INET6


#: Kernel interfaces that services almost never need and attackers reach for
#: (the attack battery's targets and the entry points of many kernel CVEs). In
#: combined mode they are allowed only when the trace saw them: static analysis
#: finds them deep in libraries (libkeyutils' add_key behind Kerberos, glibc's
#: personality) on paths the application does not take.
HIGH_RISK_SYSCALLS = frozenset({
    "ptrace", "process_vm_readv", "process_vm_writev", "bpf", "perf_event_open", "userfaultfd",
    "keyctl", "add_key", "request_key", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "unshare", "setns", "mount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsmount",
    "fsconfig", "fspick", "mount_setattr", "personality", "kexec_load", "kexec_file_load", "init_module",
    "finit_module", "delete_module", "open_by_handle_at", "name_to_handle_at", "acct", "swapon", "swapoff",
    "reboot", "syslog", "quotactl", "lookup_dcookie", "chroot", "iopl", "ioperm", "modify_ldt",
    "vhangup", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "uselib", "sysfs", "_sysctl",
})


def combined_syscalls(static: set[str] | frozenset[str], observed: set[str] | frozenset[str]) -> set[str]:
    """``combined`` mode's allow-list: static ∪ observed, except that a
    :data:`HIGH_RISK_SYSCALLS` member needs to have been observed."""
    return (set(static) - (HIGH_RISK_SYSCALLS - set(observed))) | set(observed)


def socket_family_rule(known: tuple[int, ...] | None, observed: tuple[int, ...] = ()) -> tuple[int, ...]:
    """Allowed ``socket``/``socketpair`` families: the constants found (``known``,
    None when some site computes the family) ∪ observed ∪, for computed
    families, :data:`ADDRESS_FAMILIES`."""
    base = set(known) if known is not None else set(ADDRESS_FAMILIES)
    return tuple(sorted(base | set(observed)))


def writes_outside(writes: tuple[str, ...], volumes: tuple[str, ...]) -> list[str]:
    """The written paths not under a tmpfs mount (``/tmp``, ``/run``) or a volume, sorted."""
    roots = tuple(v.rstrip("/") or "/" for v in (*TMPFS, *volumes))

    def covered(p: str) -> bool:
        return any(p == r or p.startswith(r + "/") or r == "/" for r in roots)

    return sorted({w for w in writes if not covered(w)})


def build_policy(inputs: PolicyInputs) -> Policy:
    """Return the policy for ``inputs``; deterministic.

    The root file system is read-only when a trace showed nothing written
    outside the tmpfs mounts and volumes (never in static mode, which has no trace). Raise PolicyError for an unknown mode, a
    non-numeric user or syscall names that are not x86-64 (without 32-bit).
    """
    if inputs.mode not in MODES:
        raise PolicyError(f"mode {inputs.mode!r}: expected one of {', '.join(MODES)}")
    uid, gid = parse_user(inputs.user)
    rationale = capability_rationale(inputs.privileged_ops, inputs.user)
    return Policy(
        seccomp=make_seccomp(inputs.syscalls, inputs.arguments, needs_32bit=inputs.needs_32bit),
        capabilities=tuple(sorted(rationale)),
        # static mode has no trace, so it cannot know what the app writes: root stays writable
        read_only_rootfs=inputs.mode != "static" and not writes_outside(tuple(inputs.writes),
                                                                        tuple(inputs.volumes)),
        run_as=f"{uid}:{gid}",
        no_new_privileges=True,
        rationale=rationale,
        mode=inputs.mode,
    )
