"""Container runtimes with one API: the embedded one (bubblewrap) here, engines in ``engines.py``.

:func:`start` returns a running :class:`Container`; use it as a context
manager so every process, mount, namespace and temporary directory is gone
when the block ends, whatever happens inside it.

The embedded runtime, as root: an overlayfs (the cached rootfs as the
read-only lower layer, a per-run upper directory) is mounted inside a
private mount namespace (``unshare --mount --propagation private``), so it
disappears with the run and the cached rootfs is never modified; ``bwrap``
then makes new mount/pid/ipc/uts/net/cgroup namespaces (loopback up), binds
the overlay as ``/``, mounts ``/proc``, a minimal ``/dev``, read-only
``/sys``, tmpfs ``/tmp`` (1777) and ``/run``, the generated ``/etc/hosts``,
``/etc/hostname``, ``/etc/resolv.conf``, the tracer bundle read-only at
``/.trimcage`` and, when tracing, ``/.trimcage-out``; ``--read-only`` adds a
final ``--remount-ro /``. Capabilities are Docker's default set (bwrap
``--cap-drop ALL --cap-add ...``), no-new-privileges is always set by bwrap,
and a seccomp profile is compiled to BPF and passed as ``--seccomp FD``.
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, IO, Any

from trimcage.trace import bundle
from trimcage.trace.static_tool import exec_helper_path
from trimcage.trace.config import Process, process_for, read_in_root, secure_path
from trimcage.trace.interface import RunOptions, Target, TraceError


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (all threads), sorted; empty if it is gone."""
    out: set[int] = set()
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    out.update(int(x) for x in f.read().split())
    except OSError:
        return []
    return sorted(out)


def descendants(pid: int) -> list[int]:
    """All descendants of ``pid``, breadth first."""
    todo, seen = [pid], []
    while todo:
        p = todo.pop(0)
        for c in children(p):
            if c not in seen:
                seen.append(c)
                todo.append(c)
    return seen


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


class Container(abc.ABC):
    """A running container; the same API for every runtime.

    ``ns_pid`` is a host pid inside the container's namespaces (for
    ``/proc/PID/ns/net``); ``main_pid`` the entrypoint's host pid (None
    once it exited); ``trace_log`` the strace log path when tracing.
    """

    runtime: str = "?"
    process: Process
    popen: subprocess.Popen
    _exit: int | None = None
    ns_pid: int
    trace_log: Path | None = None
    stdout_path: Path | None = None

    @property
    def net_ns(self) -> str:
        return f"/proc/{self.ns_pid}/ns/net"

    @abc.abstractmethod
    def main_pid(self) -> int | None: ...

    def poll(self) -> int | None:
        """The exit code if the container has exited, else None (128+N when killed by signal N)."""
        if self._exit is None:
            rc = self.popen.poll()
            if rc is not None:
                self._exit = rc if rc >= 0 else 128 - rc
        return self._exit

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the exit; return the exit code, None on timeout."""
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.poll()

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the entrypoint (no-op if it is gone)."""
        pid = self.main_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    @abc.abstractmethod
    def stop(self, timeout: float = 10.0) -> int:
        """Stop signal, then SIGKILL after ``timeout``; return the exit code."""

    @abc.abstractmethod
    def exec(self, cmd: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
        """Run ``sh -c CMD`` inside the container (all its namespaces)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop if needed and remove every trace of the run (idempotent)."""

    def output(self) -> bytes:
        """Captured stdout+stderr of the entrypoint (empty when inherited)."""
        if self.stdout_path and self.stdout_path.exists():
            return self.stdout_path.read_bytes()
        return b""

    def __enter__(self) -> "Container":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _etc_files(run: Path, hostname: str) -> dict[str, Path]:
    files = {
        "/etc/hosts": f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                      f"127.0.1.1\t{hostname}\n",
        "/etc/hostname": hostname + "\n",
        "/etc/resolv.conf": "nameserver 127.0.0.1\noptions ndots:0\n",
    }
    out = {}
    for dest, text in files.items():
        p = run / "etc" / os.path.basename(dest)
        p.parent.mkdir(exist_ok=True)
        p.write_text(text)
        out[dest] = p
    return out


EXEC_HELPER = "/.trimcage-exec"


def _check_exists(target: Target, proc: Process, binds: tuple[tuple[str, str], ...] = ()) -> None:
    """Fail early and clearly when the entrypoint binary is not in the image (or bound in)."""
    exe = proc.argv[0]
    if any(exe == dst for _, dst in binds):
        return
    env = dict(e.split("=", 1) for e in proc.env)
    cands = [exe] if "/" in exe else [os.path.join(d or ".", exe) for d in env["PATH"].split(":")]
    for c in cands:
        if not c.startswith("/"):
            c = os.path.join(proc.cwd, c)
        if read_in_root(target.rootfs, c, limit=4) is not None:
            return
    raise TraceError(f"{target.ref}: executable {exe!r} not found in the image")


def _drain(pipe: IO[bytes], dest: Path) -> None:
    with pipe, open(dest, "wb") as out:
        for chunk in iter(lambda: pipe.read1(65536), b""):  # type: ignore[attr-defined]
            out.write(chunk)
            out.flush()


class Embedded(Container):
    """The bubblewrap runtime (see the module docstring)."""

    runtime = "embedded"

    def __init__(self, target: Target, opts: RunOptions, *, capture: bool = False,
                 seccomp_bpf: bytes | None = None):
        if os.geteuid() != 0:
            raise TraceError("the embedded runtime needs root (overlayfs and namespaces)")
        if shutil.which("bwrap") is None:
            raise TraceError("bwrap not found (apt-get install bubblewrap)")
        self.target, self.opts = target, opts
        self.process = process_for(target, opts)
        _check_exists(target, self.process, opts.binds)
        for bad in (",", ":", "\n"):
            if bad in target.rootfs:
                raise TraceError(f"{target.rootfs}: root file system path must not contain {bad!r}")
        self.run_dir = Path(tempfile.mkdtemp(prefix="trimcage-run-"))
        self._closed = False
        self._exit: int | None = None
        self._main: int | None = None
        self._drain: threading.Thread | None = None
        try:
            self._start(capture, seccomp_bpf)
        except BaseException:
            self.close()
            raise

    def _volumes(self, dest: Callable[[str], str]) -> list[str]:
        """Writable copies of the image's VOLUME directories, as Docker's anonymous volumes
        stay writable under ``--read-only``; the copies live and die with the run."""
        args: list[str] = []
        for i, vol in enumerate(sorted(self.target.config.get("Volumes") or {})):
            inside = dest(vol)
            src = os.path.join(self.target.rootfs, inside.lstrip("/"))
            copy = self.run_dir / "volumes" / str(i)
            copy.parent.mkdir(exist_ok=True)
            if os.path.isdir(src) and not os.path.islink(src):
                cp = subprocess.run(["cp", "-a", "--", src, str(copy)], capture_output=True, text=True)
                if cp.returncode != 0:
                    raise TraceError(f"{self.target.ref}: cannot copy volume {vol}: {cp.stderr.strip()}")
            else:
                copy.mkdir(mode=0o755)
            args += ["--bind", str(copy), inside]
        return args

    def _start(self, capture: bool, seccomp_bpf: bytes | None) -> None:
        run, proc, opts = self.run_dir, self.process, self.opts
        for d in ("rw", "merged", "out"):
            (run / d).mkdir()
        os.chmod(run / "out", 0o777)
        switch_user = proc.uid != 0 or proc.gid != 0
        # Untraced runs end with trimcage's exec helper, in runc's order: switch user,
        # chdir, no_new_privs, seccomp, exec. The filter then covers only the entrypoint.
        helper = exec_helper_path() if not opts.trace and (switch_user or seccomp_bpf is not None) else None
        need_bundle = opts.trace or (switch_user and helper is None)
        bdir = bundle.bundle_dir() if need_bundle else None
        root = self.target.rootfs

        def dest(path: str) -> str:  # mount destinations never follow an image symlink out
            return secure_path(root, path)

        args = ["bwrap", "--die-with-parent", "--new-session", "--unshare-ipc", "--unshare-pid",
                "--unshare-net", "--unshare-uts", "--unshare-cgroup-try", "--hostname", opts.hostname,
                "--bind", str(run / "merged"), "/", "--proc", dest("/proc"), "--dev", dest("/dev"),
                "--perms", "1777", "--tmpfs", "/dev/shm",  # as Docker: POSIX shared memory for everyone
                "--ro-bind", "/sys", dest("/sys"), "--perms", "1777", "--tmpfs", dest("/tmp"),
                "--perms", "0755", "--tmpfs", dest("/run")]
        for path, src in _etc_files(run, opts.hostname).items():
            args += ["--bind", str(src), dest(path)]
        if bdir is not None:
            args += ["--ro-bind", str(bdir), dest(bundle.MOUNT)]
        for src, dst in opts.binds:
            args += ["--ro-bind", src, dest(dst)]
        if helper is not None:
            args += ["--ro-bind", str(helper), dest(EXEC_HELPER)]
        if opts.trace:
            args += ["--bind", str(run / "out"), dest(bundle.OUT_MOUNT)]
            self.trace_log = run / "out" / "trace.log"
        cwd = dest(proc.cwd)
        if not os.path.isdir(os.path.join(root, cwd.lstrip("/"))):
            args += ["--dir", cwd]
        if opts.read_only:
            args += self._volumes(dest)
            args += ["--remount-ro", "/"]
        caps = list(proc.caps)
        if opts.trace and "CAP_SYS_PTRACE" not in caps:
            caps.append("CAP_SYS_PTRACE")
        if helper is not None and switch_user:  # for the switch only: setresuid clears them all
            caps += [c for c in ("CAP_SETUID", "CAP_SETGID") if c not in caps]
        args += ["--cap-drop", "ALL"]
        for c in caps:
            args += ["--cap-add", c]
        args += ["--clearenv"]
        for e in proc.env:
            k, _, v = e.partition("=")
            args += ["--setenv", k, v]
        args += ["--chdir", "/" if helper is not None and switch_user else proc.cwd]
        info_r, info_w = os.pipe()
        pass_fds = [info_w]
        args += ["--info-fd", str(info_w)]
        sfd = None
        if seccomp_bpf is not None:
            sfile = run / "seccomp.bpf"
            sfile.write_bytes(seccomp_bpf)
            sfd = os.open(sfile, os.O_RDONLY)
            pass_fds.append(sfd)
            if helper is None:
                args += ["--seccomp", str(sfd)]
        inner: list[str] = []
        if opts.trace:
            inner += bundle.strace_argv()
        if helper is not None:
            inner += [EXEC_HELPER]
            if switch_user:
                inner += ["--uid", str(proc.uid), "--gid", str(proc.gid), "--groups",
                          ",".join(str(g) for g in proc.groups), "--chdir", proc.cwd]
            if sfd is not None:
                inner += ["--seccomp-fd", str(sfd)]
            inner += ["--"]
        elif switch_user:
            inner += bundle.setpriv_argv(proc.uid, proc.gid, list(proc.groups))
        inner += list(proc.argv)
        args += ["--", *inner]
        # upper/work on a tmpfs of the private namespace: works whatever $TMPDIR's file
        # system is (an overlayfs upper cannot be on overlayfs, as in CI containers)
        mount = ('mount -t tmpfs -o mode=0755 trimcage "$2" && mkdir "$2/upper" "$2/work" && '
                 'mount -t overlay trimcage -o "lowerdir=$1,upperdir=$2/upper,workdir=$2/work" "$3" '
                 '|| exit 125; shift 3; exec "$@"')
        full = ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", mount, "sh",
                self.target.rootfs, str(run / "rw"), str(run / "merged"), *args]
        # Output is captured through a pipe (like the engines' log drivers), so a
        # process writing to /dev/stdout sees "pipe:[...]", never a host path.
        try:
            self.popen = subprocess.Popen(full, pass_fds=pass_fds, stdin=subprocess.DEVNULL if capture else None,
                                          stdout=subprocess.PIPE if capture else None,
                                          stderr=subprocess.STDOUT if capture else None)
        except OSError as e:
            raise TraceError(f"cannot start bwrap: {e}") from e
        finally:
            os.close(info_w)
            if sfd is not None:
                os.close(sfd)
        if capture:
            self.stdout_path = run / "output.log"
            self._drain = threading.Thread(target=_drain, args=(self.popen.stdout, self.stdout_path), daemon=True)
            self._drain.start()
        info = b""
        with os.fdopen(info_r, "rb") as f:
            info = f.read()
        try:
            self.ns_pid = int(json.loads(info or b"{}")["child-pid"])
        except (ValueError, KeyError) as e:
            rc = self.popen.wait()
            msg = self.output().decode(errors="replace").strip().splitlines()
            raise TraceError(f"{self.target.ref}: the container did not start (exit {rc})"
                             + (f": {msg[-1]}" if msg else "")) from e

    def main_pid(self) -> int | None:
        if self.poll() is not None:
            return None
        if self._main is not None and os.path.exists(f"/proc/{self._main}"):
            return self._main
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            kids = children(self.ns_pid)
            if kids:
                pid = kids[0]
                if self.opts.trace:
                    if comm(pid) == "strace" or comm(pid) == "ld.so":
                        grand = children(pid)
                        if not grand:
                            time.sleep(0.01)
                            continue
                        pid = grand[0]
                self._main = pid
                return pid
            if self.poll() is not None:
                return None
            time.sleep(0.01)
        return None

    def stop(self, timeout: float = 10.0) -> int:
        if self.poll() is None:
            self.signal(self.process.stop_signal)
            if self.wait(timeout) is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.ns_pid, signal.SIGKILL)
                if self.wait(10) is None:
                    self.popen.kill()
                    self.popen.wait()
        return self.poll() or 0

    def exec(self, cmd: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
        pid = self.main_pid() or self.ns_pid
        argv = ["nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "-C", "-r", "-w", "--",
                "/bin/sh", "-c", cmd]
        env = dict(e.split("=", 1) for e in self.process.env)
        try:
            return subprocess.run(argv, capture_output=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired as e:
            raise TraceError(f"exec {cmd!r} timed out after {timeout:g}s") from e

    def output(self) -> bytes:
        if self._drain is not None and self.poll() is not None:
            self._drain.join(10)
        return super().output()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if hasattr(self, "popen"):
            with contextlib.suppress(Exception):
                self.stop(5)
        if self._drain is not None:
            self._drain.join(10)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def keep_trace(self, dest: Path) -> None:
        """Move the strace log to ``dest`` before :meth:`close` removes the run dir."""
        if self.trace_log and self.trace_log.exists():
            shutil.move(str(self.trace_log), dest)
            self.trace_log = dest


def start(target: Target, opts: RunOptions, *, capture: bool = False) -> Container:
    """Start ``target`` with ``opts`` on ``opts.runtime``; the caller must close it.

    A seccomp profile (``opts.seccomp``) is compiled here for the embedded
    runtime; engines receive the file itself.
    """
    if opts.runtime == "embedded":
        bpf = None
        if opts.seccomp and opts.seccomp != "unconfined":
            from trimcage.trace.seccomp_bpf import compile_bpf, load_profile
            from trimcage.trace.config import capabilities
            bpf = compile_bpf(load_profile(opts.seccomp), capabilities(opts), opts.seccomp)
        return Embedded(target, opts, capture=capture, seccomp_bpf=bpf)
    if opts.runtime in ("docker", "podman"):
        from trimcage.trace.engines import Engine
        return Engine(target, opts, capture=capture)
    raise TraceError(f"unknown runtime {opts.runtime!r} (embedded, docker, podman)")
