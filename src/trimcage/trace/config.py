"""From image config + run options to the concrete process: argv, env, user, caps.

Follows ``docker run``: ``--entrypoint`` replaces the image's entrypoint and
drops its Cmd; ``-- CMD`` replaces Cmd; env is the image's then the options';
PATH defaults to Docker's; HOME comes from the image's passwd; the user is a
name or uid[:gid] looked up in the image's ``/etc/passwd`` and ``/etc/group``
(read without following any link out of the root file system).
"""

from __future__ import annotations

import os
import posixpath
import stat
from dataclasses import dataclass
from typing import Any, Mapping

from trimcage.trace.interface import RunOptions, Target, TraceError
from trimcage.trace.resolve import walk_in_root

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DOCKER_CAPS = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
               "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
               "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE")
ALL_CAPS = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
            "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
            "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
            "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
            "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
            "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
            "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
            "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
            "CAP_CHECKPOINT_RESTORE")
SIGNALS = {"SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3, "SIGKILL": 9, "SIGUSR1": 10, "SIGUSR2": 12,
           "SIGTERM": 15, "SIGWINCH": 28, "SIGPWR": 30}


@dataclass(frozen=True)
class Process:
    """The concrete process a runtime starts (inside the container)."""

    argv: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    caps: tuple[str, ...]
    stop_signal: int
    ports: tuple[tuple[int, str], ...]


def norm_cap(name: str) -> str:
    n = name.strip().upper()
    if n == "ALL":
        return n
    n = n if n.startswith("CAP_") else "CAP_" + n
    if n not in ALL_CAPS:
        raise TraceError(f"unknown capability {name!r}")
    return n


def capabilities(opts: RunOptions) -> tuple[str, ...]:
    """Docker's default set, minus ``cap_drop``, plus ``cap_add`` (``ALL`` allowed in both)."""
    drop = {norm_cap(c) for c in opts.cap_drop}
    add = {norm_cap(c) for c in opts.cap_add}
    caps = set() if "ALL" in drop else set(DOCKER_CAPS) - drop
    caps |= set(ALL_CAPS) if "ALL" in add else add
    return tuple(sorted(caps))


def read_in_root(root: str, path: str, limit: int = 1 << 20) -> bytes | None:
    """Read ``path`` of the root file system with symlinks resolved inside ``root``.

    Return None if it does not exist or is not a regular file; never leaves ``root``.
    """
    real = walk_in_root(root, path)
    if real is None:
        return None
    try:
        fd = os.open(os.path.join(root, real.lstrip("/")), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, limit)
    finally:
        os.close(fd)


def secure_path(root: str, path: str) -> str:
    """``path`` with every symlink of the root file system resolved inside ``root``.

    Like runc's securejoin: links are followed with ``root`` as ``/`` and
    ``..`` clamped there; missing components are kept as they are. A mount
    destination given to bwrap this way contains no link it could follow out
    of the container.
    """
    real = walk_in_root(root, path, keep_missing=True)
    if real is None:
        raise TraceError(f"{path}: too many levels of symbolic links in the image")
    return real


def _table(root: str, path: str) -> list[list[str]]:
    data = read_in_root(root, path) or b""
    return [line.split(":") for line in data.decode("utf-8", "replace").splitlines()
            if line and not line.startswith("#")]


def resolve_user(root: str, user: str | None) -> tuple[int, int, tuple[int, ...], str]:
    """``user`` (``name``, ``uid``, ``name:group``, ``uid:gid``) -> (uid, gid, groups, home)."""
    if not user:
        user = "0"
    name, _, group = user.partition(":")
    passwd = _table(root, "/etc/passwd")
    groups = _table(root, "/etc/group")
    home = "/"
    uid = gid = None
    pw = None
    if name.isdigit():
        uid = int(name)
        pw = next((r for r in passwd if len(r) > 3 and r[2] == name), None)
    else:
        pw = next((r for r in passwd if r and r[0] == name), None)
        if pw is None:
            raise TraceError(f"user {name!r} not found in the image's /etc/passwd")
        uid = int(pw[2])
    if pw is not None and len(pw) > 5:
        gid = int(pw[3]) if pw[3].isdigit() else 0
        home = pw[5] or "/"
        uname = pw[0]
    else:
        uname = None
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            g = next((r for r in groups if r and r[0] == group), None)
            if g is None:
                raise TraceError(f"group {group!r} not found in the image's /etc/group")
            gid = int(g[2])
    if gid is None:
        gid = 0 if uid == 0 else uid
    extra = sorted({int(r[2]) for r in groups if len(r) > 3 and r[2].isdigit() and uname
                    and uname in r[3].split(",")} | {gid})
    return uid, gid, tuple(extra), home


def process_for(target: Target, opts: RunOptions) -> Process:
    """Combine the image config and options into the :class:`Process` to start."""
    cfg: Mapping[str, Any] = target.config or {}
    for key in ("Entrypoint", "Cmd", "Env"):
        v = cfg.get(key)
        if v is not None and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            raise TraceError(f"{target.ref}: image config {key} must be a list of strings, got {v!r:.80}")
    for key in ("User", "WorkingDir", "StopSignal"):
        if cfg.get(key) is not None and not isinstance(cfg.get(key), str):
            raise TraceError(f"{target.ref}: image config {key} must be a string")
    if cfg.get("ExposedPorts") is not None and not isinstance(cfg.get("ExposedPorts"), dict):
        raise TraceError(f"{target.ref}: image config ExposedPorts must be an object")
    if opts.entrypoint is not None:
        entry = list(opts.entrypoint)
        cmd = list(opts.cmd or ())
    else:
        entry = list(cfg.get("Entrypoint") or [])
        cmd = list(opts.cmd) if opts.cmd else list(cfg.get("Cmd") or [])
    argv = tuple(entry + cmd)
    if not argv:
        raise TraceError(f"{target.ref}: no entrypoint or command to run")
    if any("\0" in a for a in argv):
        raise TraceError(f"{target.ref}: NUL byte in the command")
    uid, gid, groups, home = resolve_user(target.rootfs, opts.user or cfg.get("User") or None)
    env: dict[str, str] = {}
    for item in list(cfg.get("Env") or []) + list(opts.env):
        k, sep, v = item.partition("=")
        if not k:
            raise TraceError(f"bad environment entry {item!r} (want K=V)")
        env[k] = v if sep else os.environ.get(k, "")
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("HOME", home)
    env.setdefault("HOSTNAME", opts.hostname)
    cwd = posixpath.normpath(opts.workdir or cfg.get("WorkingDir") or "/")
    if not cwd.startswith("/"):
        cwd = "/" + cwd
    sig_name = str(cfg.get("StopSignal") or "SIGTERM").upper()
    if sig_name.isdigit():
        sig = int(sig_name)
    else:
        sig = SIGNALS.get(sig_name if sig_name.startswith("SIG") else "SIG" + sig_name, 15)
    ports = []
    for p in sorted(cfg.get("ExposedPorts") or {}):
        num, _, proto = str(p).partition("/")
        if num.isdigit():
            ports.append((int(num), proto or "tcp"))
    return Process(argv, tuple(f"{k}={v}" for k, v in env.items()), cwd, uid, gid, groups,
                   capabilities(opts), sig, tuple(ports))
