"""Turn strace events into the trace.json document (pure: events in, dict out).

Paths are resolved through each call's ``-y`` decorations (the kernel's view
of the dirfd / cwd at the time of the call, which is exact across fork,
``CLONE_FILES``, ``dup`` and fd passing), falling back to a per-process cwd
table (copied on fork, shared with ``CLONE_FS``) for calls without a dirfd.
Events of the runtime's own setup (everything in the first process before
the first successful ``execve`` of a path outside ``/.trimcage``) are dropped.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any, Iterable

from trimcage.trace.interface import Exit, Signal, Syscall
from trimcage.trace.parse_strace import (fd_path, parse_int, parse_string, parse_string_list,
                                         parse_struct)

RUNTIME_PREFIXES = ("/.trimcage",)
TMPFS_PREFIXES = ("/tmp", "/run", "/dev", "/proc", "/sys")
AT_FDCWD = -100

# syscall -> (dirfd arg index or None, path arg index, operation or None = decided by flags)
PATH_CALLS: dict[str, tuple[int | None, int, str | None]] = {
    "open": (None, 0, None), "openat": (0, 1, None), "openat2": (0, 1, None),
    "creat": (None, 0, "create"), "open_by_handle_at": (0, 1, None),
    "stat": (None, 0, "stat"), "lstat": (None, 0, "stat"), "newfstatat": (0, 1, "stat"),
    "statx": (0, 1, "stat"), "statfs": (None, 0, "stat"), "fstatat64": (0, 1, "stat"),
    "access": (None, 0, "access"), "faccessat": (0, 1, "access"), "faccessat2": (0, 1, "access"),
    "readlink": (None, 0, "readlink"), "readlinkat": (0, 1, "readlink"),
    "execve": (None, 0, "exec"), "execveat": (0, 1, "exec"),
    "chdir": (None, 0, "chdir"), "chroot": (None, 0, "chroot"),
    "mkdir": (None, 0, "mkdir"), "mkdirat": (0, 1, "mkdir"),
    "rmdir": (None, 0, "rmdir"), "unlink": (None, 0, "unlink"), "unlinkat": (0, 1, "unlink"),
    "rename": (None, 0, "rename"), "renameat": (0, 1, "rename"), "renameat2": (0, 1, "rename"),
    "link": (None, 1, "link"), "linkat": (2, 3, "link"),
    "symlink": (None, 1, "symlink"), "symlinkat": (1, 2, "symlink"),
    "chmod": (None, 0, "chmod"), "fchmodat": (0, 1, "chmod"), "fchmodat2": (0, 1, "chmod"),
    "chown": (None, 0, "chown"), "lchown": (None, 0, "chown"), "fchownat": (0, 1, "chown"),
    "truncate": (None, 0, "truncate"), "utimensat": (0, 1, "utime"), "utimes": (None, 0, "utime"),
    "utime": (None, 0, "utime"), "futimesat": (0, 1, "utime"),
    "mknod": (None, 0, "mknod"), "mknodat": (0, 1, "mknod"),
    "getxattr": (None, 0, "xattr"), "lgetxattr": (None, 0, "xattr"), "listxattr": (None, 0, "xattr"),
    "llistxattr": (None, 0, "xattr"), "setxattr": (None, 0, "setxattr"),
    "inotify_add_watch": (None, 1, "watch"), "mount": (None, 1, "mount"), "umount2": (None, 0, "umount"),
    "pivot_root": (None, 0, "chroot"), "swapon": (None, 0, "swapon"), "uselib": (None, 0, "open_read"),
}
# second path of two-path calls: syscall -> (dirfd index or None, path index)
SECOND_PATH = {"rename": (None, 1), "renameat": (2, 3), "renameat2": (2, 3),
               "link": (None, 0), "linkat": (0, 1)}
WRITE_OPS = {"open_write", "create", "mkdir", "rmdir", "unlink", "rename", "link", "symlink",
             "chmod", "chown", "truncate", "utime", "mknod", "setxattr", "bind"}

# arguments recorded for the policy stage: syscall -> arg indexes (seccomp numbering)
# (the same keys as trimcage.elf.arch.TRACKED_ARGS; clone3's flags sit in a struct seccomp cannot read)
ARG_KEYS = {"socket": (0, 1), "socketpair": (0,), "clone": (0,), "unshare": (0,), "prctl": (0,),
            "personality": (0,), "mmap": (2,), "mprotect": (2,), "ioctl": (1,), "setsockopt": (1, 2),
            "fcntl": (1,)}

AF = {1: "AF_UNIX", 2: "AF_INET", 10: "AF_INET6", 16: "AF_NETLINK", 17: "AF_PACKET"}
CAP_SETUID = ("setuid", "setreuid", "setresuid", "setfsuid")
CAP_SETGID = ("setgid", "setregid", "setresgid", "setfsgid", "setgroups")


@dataclass
class _Proc:
    pid: int
    ppid: int | None = None
    argv: list[str] = field(default_factory=list)
    exe: str | None = None
    execs: list[dict[str, Any]] = field(default_factory=list)
    cwd: list[str] = field(default_factory=lambda: ["/"])  # shared cell with CLONE_FS
    uid: int = 0
    gid: int = 0
    ids: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int | None = None
    killed_by: str | None = None
    cwd_seen: bool = False  # cwd learnt from the process's own events


def _errtext(ev: Syscall) -> str | None:
    return ev.errno if ev.ret is not None and ev.ret < 0 else None


def _decode_sockaddr(raw: str) -> dict[str, Any] | None:
    s = parse_struct(raw)
    fam = parse_int(s.get("sa_family", ""))
    if fam is None:
        return None
    out: dict[str, Any] = {"family": AF.get(fam, str(fam))}
    if fam in (2, 10):
        port_raw = parse_string(s.get("sin_port") or s.get("sin6_port") or '""') or ""
        pb = port_raw.encode("utf-8", "surrogateescape")
        out["port"] = int.from_bytes(pb[:2], "big") if len(pb) >= 2 else 0
        ab = (parse_string(s.get("sin_addr") or s.get("sin6_addr") or '""') or "").encode(
            "utf-8", "surrogateescape")
        if fam == 2 and len(ab) == 4:
            out["address"] = ".".join(str(b) for b in ab)
        elif fam == 10 and len(ab) == 16:
            import ipaddress
            out["address"] = str(ipaddress.IPv6Address(ab))
        else:
            out["address"] = ""
    elif fam == 1:
        p = parse_string(s.get("sun_path", '""'))
        out["path"] = p or ""
    return out


class TraceBuilder:
    """Feed events with :meth:`add`; :meth:`result` returns the trace document part.

    ``uid``/``gid``: the ids the entrypoint starts with; ``workdir``: its cwd.
    """

    def __init__(self, *, workdir: str = "/", uid: int = 0, gid: int = 0):
        self.workdir = workdir or "/"
        self.uid, self.gid = uid, gid
        self.procs: dict[int, _Proc] = {}
        self.files: dict[str, set[tuple[str, bool, str | None]]] = {}
        self.resolved: dict[str, str] = {}
        self.syscalls: dict[str, int] = {}
        self.by_exe: dict[str, dict[str, int]] = {}
        self.args: dict[str, dict[str, set[int]]] = {}
        self.sockets: dict[str, tuple[int, int]] = {}  # "socket:[ino]" -> (family, type)
        self.bound: dict[str, dict[str, Any]] = {}
        self.listening: set[tuple[str, str, int]] = set()
        self.connections: set[tuple[str, str, int | str]] = set()
        self.priv: set[tuple] = set()
        self.started = False
        self.first_pid: int | None = None
        self.events = 0

    # -- process table -----------------------------------------------------
    def _proc(self, pid: int) -> _Proc:
        p = self.procs.get(pid)
        if p is None:
            p = _Proc(pid, cwd=[self.workdir], uid=self.uid, gid=self.gid)
            self.procs[pid] = p
        return p

    def add(self, ev: Syscall | Signal | Exit) -> None:
        if self.first_pid is None:
            self.first_pid = ev.pid
        if not self.started:
            if isinstance(ev, Syscall) and ev.name in ("execve", "execveat") and ev.ret == 0:
                path = parse_string(ev.args[0] if ev.name == "execve" else ev.args[1]) or ""
                if not path.startswith(RUNTIME_PREFIXES):
                    self.started = True
            if not self.started:
                return
        self.events += 1
        if isinstance(ev, Exit):
            p = self._proc(ev.pid)
            p.exit_code, p.killed_by = ev.code, ev.signal
            return
        if isinstance(ev, Signal):
            return
        self._syscall(ev)

    def _syscall(self, ev: Syscall) -> None:
        p = self._proc(ev.pid)
        name = ev.name
        self.syscalls[name] = self.syscalls.get(name, 0) + 1
        ok = ev.ret is not None and ev.ret >= 0 or (ev.ret is None and name in ("execve", "exit", "exit_group"))
        # cwd refresh from any AT_FDCWD decoration
        if ev.args and ev.args[0].startswith("-100<"):
            cw = fd_path(ev.args[0])
            if cw and cw.startswith("/"):
                p.cwd[0] = cw
                p.cwd_seen = True
        if name in ("clone", "clone3", "fork", "vfork") and ev.ret is not None and ev.ret > 0:
            flags = 0
            if name == "clone":
                flags = parse_int(next((a for a in ev.args if a.startswith("flags=")), "flags=0")) or 0
            elif name == "clone3" and ev.args:
                flags = parse_int(parse_struct(ev.args[0]).get("flags", "0")) or 0
            self._fork(p, ev.ret, flags)
        if name in ("execve", "execveat"):
            self._exec(p, ev, ok)
        if name in ARG_KEYS:
            self._record_args(ev)
        if name in PATH_CALLS:
            self._path_call(p, ev, ok)
        elif name == "fchdir" and ok:
            d = fd_path(ev.args[0]) if ev.args else None
            if d and d.startswith("/"):
                p.cwd[0] = d
                self._add_file(d, "chdir", True, None)
        elif name in ("socket", "socketpair"):
            fam, typ = parse_int(ev.args[0]) or 0, parse_int(ev.args[1]) or 0
            if ok and ev.ret_path:
                self.sockets[ev.ret_path] = (fam, typ)
            if fam == 17 or (typ & 0xF) == 3:
                self.priv.add(("socket", AF.get(fam, str(fam)), "CAP_NET_RAW", ok))
        elif name in ("bind", "connect", "listen", "sendto"):
            self._net(p, ev, ok)
        elif name in CAP_SETUID or name in CAP_SETGID:
            vals = [parse_int(a) for a in ev.args[:3]]
            change = {"call": name, "args": [v for v in vals if v is not None], "ok": ok}
            p.ids.append(change)
            if ok and name in ("setuid", "setresuid", "setreuid") and vals:
                v = vals[1] if name in ("setresuid", "setreuid") and len(vals) > 1 and vals[1] not in (None, 0xFFFFFFFF) else vals[0]
                if v is not None and v != 0xFFFFFFFF and v != -1:
                    p.uid = v
            if ok and name in ("setgid", "setresgid", "setregid") and vals and vals[0] is not None:
                p.gid = vals[0]
            cap = "CAP_SETUID" if name in CAP_SETUID else "CAP_SETGID"
            self.priv.add((name, None, cap, ok))
        elif name in ("fchown",):
            self.priv.add(("chown", None, "CAP_CHOWN", ok))
        elif name == "kill" and len(ev.args) >= 2:
            target = parse_int(ev.args[0])
            tp = self.procs.get(target or -1)
            if tp is not None and tp.uid != p.uid and p.uid == 0 and target not in (0, -1):
                self.priv.add(("kill", None, "CAP_KILL", ok))
        elif name in ("unshare", "setns", "sethostname", "setdomainname", "pivot_root", "umount2"):
            self.priv.add((name, None, "CAP_SYS_ADMIN", ok))
        elif name in ("init_module", "finit_module", "delete_module"):
            self.priv.add((name, None, "CAP_SYS_MODULE", ok))
        elif name in ("iopl", "ioperm"):
            self.priv.add((name, None, "CAP_SYS_RAWIO", ok))
        elif name in ("settimeofday", "clock_settime", "adjtimex", "clock_adjtime") and name != "adjtimex":
            self.priv.add((name, None, "CAP_SYS_TIME", ok))
        elif name == "ptrace":
            self.priv.add((name, None, "CAP_SYS_PTRACE", ok))
        exe = p.exe or "?"
        d = self.by_exe.setdefault(exe, {})
        d[name] = d.get(name, 0) + 1

    def _fork(self, parent: _Proc, child_pid: int, flags: int) -> None:
        c = self.procs.get(child_pid)
        if c is None:
            c = _Proc(child_pid)
            self.procs[child_pid] = c
            c.cwd = parent.cwd if flags & 0x200 else [parent.cwd[0]]  # CLONE_FS
        elif flags & 0x200:
            c.cwd = parent.cwd
        elif not c.cwd_seen:
            c.cwd = [parent.cwd[0]]
        c.ppid = parent.pid
        if not c.execs:
            c.argv, c.exe = list(parent.argv), parent.exe
        c.uid, c.gid = parent.uid, parent.gid

    def _exec(self, p: _Proc, ev: Syscall, ok: bool) -> None:
        if not ok:
            return
        if ev.name == "execve":
            path = parse_string(ev.args[0]) or ""
            argv = parse_string_list(ev.args[1]) if len(ev.args) > 1 else []
        else:
            path = self._resolve(p, ev.args[0], ev.args[1]) or ""
            argv = parse_string_list(ev.args[2]) if len(ev.args) > 2 else []
        path = self._abs(p, path) if path else path
        p.exe, p.argv = path, argv
        p.execs.append({"exe": path, "argv": argv})

    def _record_args(self, ev: Syscall) -> None:
        for idx in ARG_KEYS[ev.name]:
            if ev.name == "clone":
                raw = next((a for a in ev.args if a.startswith("flags=")), None)
                v = parse_int(raw) if raw else None
            elif idx < len(ev.args):
                v = parse_int(ev.args[idx])
            else:
                v = None
            if v is not None:
                self.args.setdefault(ev.name, {}).setdefault(str(idx), set()).add(v)

    # -- paths -------------------------------------------------------------
    def _abs(self, p: _Proc, path: str, base: str | None = None) -> str:
        if not path.startswith("/"):
            path = posixpath.join(base if base is not None else p.cwd[0], path)
        return posixpath.normpath(path).replace("//", "/") if path else path

    def _resolve(self, p: _Proc, dirfd_arg: str | None, path_arg: str) -> str | None:
        path = parse_string(path_arg)
        if path is None:
            return None
        if path.startswith("/"):
            return self._abs(p, path)
        base = None
        if dirfd_arg is not None:
            d = fd_path(dirfd_arg)
            fd = parse_int(dirfd_arg)
            if d is not None and d.startswith("/"):
                if path == "":
                    return d
                base = d
            elif fd is not None and fd != AT_FDCWD:
                return None  # an fd without a path (anon inode, socket): not a file
        if path == "":
            return None
        return self._abs(p, path, base)

    def _op_for_open(self, ev: Syscall) -> str:
        if ev.name in ("open", "creat"):
            flags_arg = ev.args[1] if len(ev.args) > 1 else "0"
        elif ev.name == "openat2":
            flags_arg = parse_struct(ev.args[2]).get("flags", "0") if len(ev.args) > 2 else "0"
        else:
            flags_arg = ev.args[2] if len(ev.args) > 2 else "0"
        flags = parse_int(flags_arg) or 0
        if flags & 0x200000:
            return "open_path"
        if flags & 3:
            return "open_write"
        return "open_read"

    def _path_call(self, p: _Proc, ev: Syscall, ok: bool) -> None:
        dfd_i, path_i, op = PATH_CALLS[ev.name]
        if path_i >= len(ev.args):
            return
        # AT_EMPTY_PATH on an fd: an fstat, not a path lookup
        path = self._resolve(p, ev.args[dfd_i] if dfd_i is not None else None, ev.args[path_i])
        if path is None:
            return
        err = _errtext(ev)
        if op is None:
            op = self._op_for_open(ev)
            if op == "open_write" or ev.name == "creat":
                flags = parse_int(ev.args[path_i + 1]) if path_i + 1 < len(ev.args) else 0
                if ev.name == "creat" or (flags or 0) & 0x40:
                    self._add_file(path, "create", ok, err)
        if ev.name == "unlinkat" and len(ev.args) > 2 and (parse_int(ev.args[2]) or 0) & 0x200:
            op = "rmdir"
        self._add_file(path, op, ok, err)
        if ok and ev.ret_path and ev.ret_path.startswith("/") and ev.ret_path != path:
            self.resolved[path] = ev.ret_path
            self._add_file(ev.ret_path, op, ok, err)
        if ev.name in SECOND_PATH:
            d2, p2 = SECOND_PATH[ev.name]
            if p2 < len(ev.args):
                other = self._resolve(p, ev.args[d2] if d2 is not None else None, ev.args[p2])
                if other:
                    self._add_file(other, op if ev.name.startswith("rename") else "stat", ok, err)
        if op == "chdir" and ok:
            p.cwd[0] = path
            p.cwd_seen = True
        if op == "chown":
            self.priv.add(("chown", None, "CAP_CHOWN", ok))
        elif op == "chroot":
            self.priv.add(("chroot", None, "CAP_SYS_CHROOT", ok))
        elif op == "mknod":
            mode = parse_int(ev.args[path_i + 1]) if path_i + 1 < len(ev.args) else 0
            if (mode or 0) & 0o170000 in (0o020000, 0o060000):
                self.priv.add(("mknod", None, "CAP_MKNOD", ok))
        elif op == "mount":
            self.priv.add(("mount", None, "CAP_SYS_ADMIN", ok))

    def _add_file(self, path: str, op: str, ok: bool, err: str | None) -> None:
        if path.startswith(RUNTIME_PREFIXES) and (len(path) == 10 or path[10] in "/-"):
            return
        self.files.setdefault(path, set()).add((op, ok, err))

    def _net(self, p: _Proc, ev: Syscall, ok: bool) -> None:
        sock = fd_path(ev.args[0]) if ev.args else None
        fam_type = self.sockets.get(sock or "", (0, 0))
        if ev.name == "listen":
            b = self.bound.get(sock or "")
            if b and ok:
                self.listening.add((b["family"], b.get("address", b.get("path", "")), b.get("port", 0)))
            return
        if len(ev.args) < 2:
            return
        addr = _decode_sockaddr(ev.args[1]) if ev.args[1].startswith("{") else None
        if addr is None:
            return
        if ev.name == "bind":
            if ok and sock:
                self.bound[sock] = addr
            if addr["family"] == "AF_UNIX" and addr.get("path", "").startswith("/"):
                self._add_file(self._abs(p, addr["path"]), "bind", ok, _errtext(ev))
            port = addr.get("port")
            if port and 0 < port < 1024:
                self.priv.add(("bind", port, "CAP_NET_BIND_SERVICE", ok))
            if ok and (fam_type[1] & 0xF) == 2 and addr["family"] in ("AF_INET", "AF_INET6"):
                self.listening.add((addr["family"] + "/udp", addr.get("address", ""), port or 0))
        elif ev.name in ("connect", "sendto"):
            if addr["family"] == "AF_UNIX":
                if addr.get("path", "").startswith("/"):
                    self._add_file(self._abs(p, addr["path"]), "connect", ok, _errtext(ev))
                self.connections.add((addr["family"], addr.get("path", ""), ""))
            elif addr["family"] in ("AF_INET", "AF_INET6"):
                self.connections.add((addr["family"], addr.get("address", ""), addr.get("port", 0)))

    # -- output ------------------------------------------------------------
    def result(self) -> dict[str, Any]:
        files = {}
        for path in sorted(self.files):
            ops = sorted(self.files[path], key=lambda t: (t[0], not t[1], t[2] or ""))
            files[path] = {"ops": [{"op": o, "ok": k, **({"errno": e} if e else {})} for o, k, e in ops]}
            if path in self.resolved:
                files[path]["resolved"] = self.resolved[path]
        writes = sorted(path for path, ops in self.files.items()
                        if any(o in WRITE_OPS and k for o, k, _ in ops)
                        and not any(path == t or path.startswith(t + "/") for t in TMPFS_PREFIXES))
        procs = []
        for pid in sorted(self.procs):
            p = self.procs[pid]
            procs.append({"pid": pid, "ppid": p.ppid, "argv": p.argv, "exe": p.exe, "execs": p.execs,
                          "id_changes": p.ids, "uid": p.uid, "gid": p.gid, "exit_code": p.exit_code,
                          "killed_by": p.killed_by})
        priv = []
        for op, detail, cap, ok in sorted(self.priv, key=lambda t: tuple(str(x) for x in t)):
            d: dict[str, Any] = {"op": op, "capability": cap, "ok": ok}
            if op == "bind":
                d["port"] = detail
            elif detail is not None:
                d["detail"] = detail
            priv.append(d)
        return {
            "processes": procs,
            "files": files,
            "syscalls": dict(sorted(self.syscalls.items())),
            "syscalls_by_exe": {k: dict(sorted(v.items())) for k, v in sorted(self.by_exe.items())},
            "arguments": {k: {i: sorted(v) for i, v in sorted(d.items())} for k, d in sorted(self.args.items())},
            "listening": [{"family": f, "address": a, "port": po} for f, a, po in sorted(self.listening)],
            "connections": [{"family": f, "address": a, "port": po} for f, a, po in
                            sorted(self.connections, key=lambda t: tuple(str(x) for x in t))],
            "privileged_ops": priv,
            "writes": writes,
            "events": self.events,
        }


def build(events: Iterable[Syscall | Signal | Exit], *, workdir: str = "/", uid: int = 0,
          gid: int = 0) -> dict[str, Any]:
    """Build the trace document part from parsed events (see :class:`TraceBuilder`)."""
    b = TraceBuilder(workdir=workdir, uid=uid, gid=gid)
    for ev in events:
        b.add(ev)
    return b.result()
