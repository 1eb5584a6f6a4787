"""Docker and Podman backends with the :class:`~trimcage.trace.runtime.Container` API.

The image reaches the engine through the image stage (``write_image`` to
``docker-daemon:`` / ``containers-storage:``), is used as is when the
reference already names the engine's storage, or, for a bare ``--rootfs``,
is imported from a tar of the directory (``docker|podman import``), tagged by
a digest of the path so it is imported once.

Network: ``--network none``. The container gets its own network namespace
with only loopback up, and probes enter it through ``/proc/PID/ns/net`` of
the container's process (host root), exactly as with the embedded runtime:
nothing is published on the host, parallel runs never collide on ports, and
no netns or helper container has to be cleaned up.

Tracing: the tracer bundle is bind-mounted read-only at ``/.trimcage`` and a
run directory at ``/.trimcage-out``; the entrypoint becomes the bundle's
loader running strace, with ``--cap-add SYS_PTRACE --security-opt
seccomp=unconfined`` (trace runs only). The engine switches the user itself
(``--user``), so strace runs as the image's user and needs no setpriv.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import IO

from trimcage.trace import bundle
from trimcage.trace.config import process_for
from trimcage.trace.interface import RunOptions, Target, TraceError
from trimcage.trace.runtime import Container, _check_exists, children, comm

SIGNAMES = {s.value: s.name for s in signal.Signals}


def engine_cmd(runtime: str) -> list[str]:
    """The engine command line prefix (Podman pinned to runc, as in CI)."""
    if runtime == "podman":
        return ["podman", "--runtime", "runc"]
    return ["docker"]


def _cli(runtime: str, *args: str, check: bool = True, timeout: float = 600,
         input_file: IO[bytes] | None = None) -> subprocess.CompletedProcess:
    try:
        cp = subprocess.run([*engine_cmd(runtime), *args], capture_output=True, timeout=timeout,
                            stdin=input_file)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise TraceError(f"{runtime} {args[0]}: {e}") from e
    if check and cp.returncode != 0:
        msg = cp.stderr.decode(errors="replace").strip().splitlines()
        raise TraceError(f"{runtime} {args[0]} failed: {msg[-1] if msg else cp.returncode}")
    return cp


def engine_image(target: Target, runtime: str) -> str:
    """Make ``target`` available to the engine; return the image name to run."""
    prefix = "docker-daemon:" if runtime == "docker" else "containers-storage:"
    if target.ref.startswith(prefix):
        return target.ref[len(prefix):]
    if target.image is not None:
        from trimcage.image.api import write_image
        from trimcage.image.store import open_store
        name = f"trimcage-run/{target.image.image_id.split(':')[-1][:12]}:latest"
        if _cli(runtime, "image", "inspect", name, check=False).returncode != 0:
            write_image(f"{prefix}{name}", target.image, open_store())
        return name if runtime == "docker" else f"localhost/{name}"
    st = os.stat(target.rootfs)
    tag = hashlib.sha256(f"{target.rootfs}\0{st.st_ino}\0{st.st_mtime_ns}".encode()).hexdigest()[:12]
    name = f"trimcage-rootfs/{tag}:latest"
    if _cli(runtime, "image", "inspect", name, check=False).returncode != 0:
        tar = subprocess.Popen(["tar", "-C", target.rootfs, "--numeric-owner", "-cf", "-", "."],
                               stdout=subprocess.PIPE)
        try:
            _cli(runtime, "import", "-", name, input_file=tar.stdout)
        finally:
            tar.wait()
    return name if runtime == "docker" else f"localhost/{name}"


class Engine(Container):
    """A container run by ``docker`` or ``podman`` (see the module docstring)."""

    def __init__(self, target: Target, opts: RunOptions, *, capture: bool = False):
        self.runtime = opts.runtime
        if shutil.which(engine_cmd(self.runtime)[0]) is None:
            raise TraceError(f"{self.runtime} not found")
        self.target, self.opts = target, opts
        self.process = process_for(target, opts)
        _check_exists(target, self.process, opts.binds)
        self.name = f"trimcage-{uuid.uuid4().hex[:12]}"
        self.run_dir = Path(tempfile.mkdtemp(prefix="trimcage-run-"))
        self._closed = False
        self._exit: int | None = None
        self._main: int | None = None
        try:
            self._start(capture)
        except BaseException:
            self.close()
            raise

    def _start(self, capture: bool) -> None:
        proc, opts = self.process, self.opts
        image = engine_image(self.target, self.runtime)
        args = ["run", "--name", self.name, "--label", f"trimcage.rundir={self.run_dir}", "--network", "none", "--hostname", opts.hostname,
                "--tmpfs", "/tmp:mode=1777", "--tmpfs", "/run:mode=755", "-w", proc.cwd,
                "--user", f"{proc.uid}:{proc.gid}", "--stop-signal", SIGNAMES.get(proc.stop_signal, "SIGTERM")]
        if self.runtime == "podman":
            args += ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
        for g in proc.groups:
            if g != proc.gid:
                args += ["--group-add", str(g)]
        for e in proc.env:
            args += ["-e", e]
        for src, dst in opts.binds:
            args += ["-v", f"{src}:{dst}:ro"]
        if opts.trace:
            out = self.run_dir / "out"
            out.mkdir()
            os.chmod(out, 0o777)
            args += ["-v", f"{bundle.bundle_dir()}:{bundle.MOUNT}:ro", "-v", f"{out}:{bundle.OUT_MOUNT}",
                     "--cap-add", "SYS_PTRACE", "--security-opt", "seccomp=unconfined"]
            self.trace_log = out / "trace.log"
        else:
            if opts.seccomp:
                args += ["--security-opt", f"seccomp={opts.seccomp}"]
        for c in opts.cap_drop:
            args += ["--cap-drop", c]
        for c in opts.cap_add:
            args += ["--cap-add", c]
        if opts.no_new_privileges:
            args += ["--security-opt", "no-new-privileges"]
        if opts.read_only:
            args += ["--read-only"]
        inner = list(proc.argv)
        if opts.trace:
            inner = bundle.strace_argv() + inner
        args += ["--entrypoint", inner[0], image, *inner[1:]]
        out_f: IO[bytes] | None = None
        if capture:
            self.stdout_path = self.run_dir / "output.log"
            out_f = open(self.stdout_path, "wb")
        try:
            self.popen = subprocess.Popen([*engine_cmd(self.runtime), *args], stdin=subprocess.DEVNULL,
                                          stdout=out_f, stderr=subprocess.STDOUT if capture else None)
        finally:
            if out_f is not None:
                out_f.close()
        deadline = time.monotonic() + 60
        while True:
            cp = _cli(self.runtime, "inspect", "-f", "{{.State.Pid}}", self.name, check=False)
            pid = int(cp.stdout.strip() or 0) if cp.returncode == 0 and cp.stdout.strip().isdigit() else 0
            if pid > 0:
                self.ns_pid = pid
                return
            if self.popen.poll() is not None:
                err = _cli(self.runtime, "inspect", "-f", "{{.State.Error}}", self.name, check=False)
                if err.returncode == 0 and not err.stdout.strip():
                    self.ns_pid = 0  # it started and already finished (a quick job)
                    return
            if self.popen.poll() is not None or time.monotonic() > deadline:
                rc = self.popen.wait()
                lines = self.output().decode(errors="replace").strip().splitlines()
                raise TraceError(f"{self.target.ref}: the {self.runtime} container did not start (exit {rc})"
                                 + (f": {lines[-1]}" if lines else ""))
            time.sleep(0.05)

    def main_pid(self) -> int | None:
        if self.poll() is not None:
            return None
        if self._main is not None and os.path.exists(f"/proc/{self._main}"):
            return self._main
        pid = self.ns_pid
        if self.opts.trace:
            deadline = time.monotonic() + 2
            while not children(pid) and time.monotonic() < deadline and comm(pid) in ("ld.so", "strace"):
                time.sleep(0.01)
            kids = children(pid)
            if kids:
                pid = kids[0]
        self._main = pid
        return pid

    def stop(self, timeout: float = 10.0) -> int:
        if self.poll() is None:
            self.signal(self.process.stop_signal)
            if self.wait(timeout) is None:
                _cli(self.runtime, "kill", self.name, check=False)
                if self.wait(20) is None:
                    self.popen.kill()
                    self.popen.wait()
        return self.poll() or 0

    def exec(self, cmd: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
        try:
            return subprocess.run([*engine_cmd(self.runtime), "exec", self.name, "/bin/sh", "-c", cmd],
                                  capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise TraceError(f"exec {cmd!r} timed out after {timeout:g}s") from e

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if hasattr(self, "popen"):
            with contextlib.suppress(Exception):
                self.stop(5)
        _cli(self.runtime, "rm", "-f", self.name, check=False)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def keep_trace(self, dest: Path) -> None:
        if self.trace_log and self.trace_log.exists():
            shutil.move(str(self.trace_log), dest)
            self.trace_log = dest
