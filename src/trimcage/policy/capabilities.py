"""Capabilities: Docker's default set and the minimal set an application needs.

The policy drops ALL capabilities and adds back only those a privileged
operation seen in the trace needs. Capabilities only take effect for a
process running as uid 0: Docker and Podman give a non-root ``--user`` no
effective or ambient capabilities, and no-new-privileges stops setuid and
file capabilities from granting any, so a non-root application gets none.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from trimcage.policy.interface import PolicyError
from trimcage.policy.seccomp import DOCKER_DEFAULT_CAPS

# Every capability of Linux 6.1 (include/uapi/linux/capability.h).
ALL_CAPS = frozenset({
    "CAP_AUDIT_CONTROL", "CAP_AUDIT_READ", "CAP_AUDIT_WRITE", "CAP_BLOCK_SUSPEND", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER", "CAP_FSETID", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_KILL", "CAP_LEASE",
    "CAP_LINUX_IMMUTABLE", "CAP_MAC_ADMIN", "CAP_MAC_OVERRIDE", "CAP_MKNOD", "CAP_NET_ADMIN",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_RAW", "CAP_PERFMON", "CAP_SETFCAP",
    "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
    "CAP_SYS_CHROOT", "CAP_SYS_MODULE", "CAP_SYS_NICE", "CAP_SYS_PACCT", "CAP_SYS_PTRACE",
    "CAP_SYS_RAWIO", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
})

DEFAULT_CAPS = DOCKER_DEFAULT_CAPS

# op name (as the trace reports it) -> capability, used when the op carries none.
OP_CAPABILITY: Mapping[str, str] = {
    "bind": "CAP_NET_BIND_SERVICE",
    "setuid": "CAP_SETUID", "setreuid": "CAP_SETUID", "setresuid": "CAP_SETUID",
    "setfsuid": "CAP_SETUID",
    "setgid": "CAP_SETGID", "setregid": "CAP_SETGID", "setresgid": "CAP_SETGID",
    "setgroups": "CAP_SETGID", "setfsgid": "CAP_SETGID",
    "chown": "CAP_CHOWN", "fchown": "CAP_CHOWN", "lchown": "CAP_CHOWN", "fchownat": "CAP_CHOWN",
    "dac": "CAP_DAC_OVERRIDE", "dac_override": "CAP_DAC_OVERRIDE",
    "dac_read_search": "CAP_DAC_READ_SEARCH",
    "fowner": "CAP_FOWNER", "fsetid": "CAP_FSETID",
    "raw_socket": "CAP_NET_RAW", "packet_socket": "CAP_NET_RAW",
    "kill": "CAP_KILL", "mknod": "CAP_MKNOD", "chroot": "CAP_SYS_CHROOT",
    "setfcap": "CAP_SETFCAP", "setpcap": "CAP_SETPCAP", "audit_write": "CAP_AUDIT_WRITE",
    "net_admin": "CAP_NET_ADMIN", "ipc_lock": "CAP_IPC_LOCK", "sys_resource": "CAP_SYS_RESOURCE",
    "sys_nice": "CAP_SYS_NICE",
}

WHY: Mapping[str, str] = {
    "CAP_NET_BIND_SERVICE": "binds a port below 1024",
    "CAP_SETUID": "changes its user id (drops privileges to a worker user)",
    "CAP_SETGID": "changes its group id or supplementary groups",
    "CAP_CHOWN": "changes the owner of files",
    "CAP_DAC_OVERRIDE": "reads or writes files of other users",
    "CAP_DAC_READ_SEARCH": "reads files or directories of other users",
    "CAP_FOWNER": "changes modes or times of files it does not own",
    "CAP_FSETID": "keeps setuid/setgid bits while changing files",
    "CAP_NET_RAW": "opens raw or packet sockets",
    "CAP_KILL": "signals processes of other users",
    "CAP_MKNOD": "creates device nodes",
    "CAP_SYS_CHROOT": "calls chroot",
}


def parse_user(user: str) -> tuple[int, int]:
    """Parse ``uid[:gid]`` (numbers); PolicyError if it is not numeric."""
    uid_s, _, gid_s = (user or "0").partition(":")
    try:
        uid = int(uid_s)
        gid = int(gid_s) if gid_s else uid
    except ValueError as e:
        raise PolicyError(f"user {user!r}: expected numeric uid:gid") from e
    if uid < 0 or gid < 0:
        raise PolicyError(f"user {user!r}: negative id")
    return uid, gid


def op_capability(op: Mapping[str, Any]) -> str | None:
    """The capability a privileged operation needs, or None if it needs none.

    An explicit ``capability`` wins; a ``bind`` to a port >= 1024 needs none;
    a ``socket`` op needs CAP_NET_RAW for raw/packet types.
    """
    cap = op.get("capability")
    if cap:
        cap = str(cap).upper()
        if not cap.startswith("CAP_"):
            cap = "CAP_" + cap
        if cap not in ALL_CAPS:
            raise PolicyError(f"privileged op {dict(op)!r}: unknown capability {cap}")
        return cap
    name = str(op.get("op", ""))
    if name == "bind":
        port = op.get("port")
        return "CAP_NET_BIND_SERVICE" if isinstance(port, int) and 0 < port < 1024 else None
    return OP_CAPABILITY.get(name)


def capability_rationale(privileged_ops: Iterable[Mapping[str, Any]], user: str) -> dict[str, str]:
    """Map each needed capability to a one-line reason (sorted by name).

    Empty when ``user``'s uid is not 0 (capabilities cannot be effective).
    """
    uid, _ = parse_user(user)
    if uid != 0:
        return {}
    out: dict[str, list[str]] = {}
    for op in privileged_ops:
        cap = op_capability(op)
        if cap is None:
            continue
        detail = str(op.get("op", "op"))
        if op.get("port") is not None:
            detail += f" port {op['port']}"
        if op.get("path"):
            detail += f" {op['path']}"
        out.setdefault(cap, [])
        if detail not in out[cap]:
            out[cap].append(detail)
    return {cap: f"{WHY.get(cap, 'needed by the application')} ({', '.join(sorted(ds)[:3])})"
            for cap, ds in sorted(out.items())}


def minimal_capabilities(privileged_ops: Iterable[Mapping[str, Any]], user: str) -> list[str]:
    """The sorted capabilities to add after ``--cap-drop ALL``; [] for a non-root user."""
    return sorted(capability_rationale(privileged_ops, user))


#: Syscalls whose success as root may need a capability (static mode has no trace).
SYSCALL_CAPABILITY: Mapping[str, str] = {
    **{k: v for k, v in OP_CAPABILITY.items() if k in (
        "setuid", "setreuid", "setresuid", "setfsuid", "setgid", "setregid", "setresgid", "setgroups",
        "setfsgid", "chown", "fchown", "lchown", "fchownat", "mknod", "chroot", "kill")},
    "bind": "CAP_NET_BIND_SERVICE", "mknodat": "CAP_MKNOD", "tgkill": "CAP_KILL",
    "open": "CAP_DAC_OVERRIDE", "openat": "CAP_DAC_OVERRIDE", "openat2": "CAP_DAC_OVERRIDE",
    "chmod": "CAP_FOWNER", "fchmod": "CAP_FOWNER", "fchmodat": "CAP_FOWNER", "utimensat": "CAP_FOWNER",
}


def static_privileged_ops(syscalls: Iterable[str]) -> tuple[dict[str, Any], ...]:
    """Privileged operations an application *may* perform, from its reachable syscalls.

    Static mode has no trace to show which privileged operations really happen,
    so every reachable syscall that can need one of Docker's default
    capabilities counts (e.g. ``bind`` → NET_BIND_SERVICE, ``chown`` → CHOWN).
    """
    return tuple({"op": name, "capability": cap, "static": True}
                 for name in sorted(set(syscalls)) if (cap := SYSCALL_CAPABILITY.get(name)) in DEFAULT_CAPS)
