"""The trace stage's contract: how a container is run, probed and traced.

Later stages (``verify``) reuse the runtime and probes through the names in
this module and in ``runtime.py`` / ``probes.py``; they never look at the
strace text. Everything handed on is a frozen dataclass or plain JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from trimcage.errors import TrimcageError

# --- errors -----------------------------------------------------------------


class TraceError(TrimcageError):
    """Base error of the trace stage (exit 2): bad options, a missing binary,
    a runtime that cannot start. The message names the image, file or pid."""


class ProbeError(TraceError):
    """A probe never passed before its deadline (exit 3)."""

    exit_code = 3


class ParseError(TraceError):
    """strace output or a probe file / seccomp profile cannot be parsed."""


# --- running ----------------------------------------------------------------

RUNTIMES = ("embedded", "docker", "podman")


@dataclass(frozen=True)
class Target:
    """What to run: an extracted root file system and the image's runtime config.

    ``rootfs`` is never modified by a run. ``config`` is the OCI ``config``
    member (Entrypoint, Cmd, Env, WorkingDir, User, ExposedPorts, StopSignal).
    ``ref`` is the reference the user gave (for messages and engine backends);
    ``image`` the ``trimcage.image.interface.Image`` when read through the
    image stage, None for a bare ``--rootfs`` directory.
    """

    rootfs: str
    config: Mapping[str, Any]
    ref: str
    image: Any = None


@dataclass(frozen=True)
class RunOptions:
    """How to run a container; defaults follow ``docker run``.

    ``entrypoint``/``cmd`` None mean "the image's". ``env`` entries are
    ``K=V`` and override the image's. ``cap_add``/``cap_drop`` use Docker's
    names with or without ``CAP_`` (``ALL`` allowed). ``seccomp`` is a path
    to a Docker-format JSON profile, ``"unconfined"`` or None (no filter in
    the embedded runtime; the engine's default for docker/podman).
    ``trace`` wraps the entrypoint in the tracer bundle.
    """

    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
    user: str | None = None
    workdir: str | None = None
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    seccomp: str | None = None
    read_only: bool = False
    no_new_privileges: bool = True
    runtime: str = "embedded"
    trace: bool = False
    hostname: str = "trimcage"
    binds: tuple[tuple[str, str], ...] = ()
    """Read-only host file → container path mounts of tools trimcage brings in
    (e.g. verify's attack prober); never image content."""


# --- probes -----------------------------------------------------------------

PROBE_KINDS = ("http", "https", "tcp", "cmd", "exec")


@dataclass(frozen=True)
class Probe:
    """One readiness/behaviour check, in the shared probe-list format.

    ``kind`` is one of :data:`PROBE_KINDS`; ``target`` the URL, ``HOST:PORT``
    or command. ``send``/``expect`` apply to tcp (``expect`` is a substring
    of the first reply); ``expect_status`` to http(s) (None: any 2xx/3xx).
    """

    kind: str
    target: str
    send: str | None = None
    expect: str | None = None
    expect_status: int | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {self.kind: self.target}
        if self.send is not None:
            d["send"] = self.send
        if self.expect is not None:
            d["expect"] = self.expect
        if self.expect_status is not None:
            d["expect_status"] = self.expect_status
        return d


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of one probe: ``ok``, what was observed and how long it took.

    ``status`` is the HTTP status or the command's exit code (None for tcp);
    ``digest`` the ``sha256:`` of the body / reply / command output;
    ``error`` a one-line reason when not ok. ``attempts`` counts tries
    until ready.
    """

    probe: Probe
    ok: bool
    status: int | None = None
    digest: str | None = None
    error: str | None = None
    attempts: int = 1
    elapsed_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"probe": self.probe.to_json(), "ok": self.ok, "status": self.status,
                "digest": self.digest, "error": self.error}


# --- strace events ----------------------------------------------------------


@dataclass(frozen=True)
class Syscall:
    """One completed system call as strace printed it (unfinished/resumed joined).

    ``args`` are the raw argument texts (``-X raw``, ``-y`` decorations kept,
    e.g. ``'3</etc>'`` or ``'-100</>'``). ``ret`` is the integer return value or
    None (``?``); ``errno`` the error name when it failed (``ENOENT``);
    ``ret_path`` the ``-y`` path decorating a returned fd.
    """

    pid: int
    name: str
    args: tuple[str, ...]
    ret: int | None
    errno: str | None = None
    ret_path: str | None = None


@dataclass(frozen=True)
class Signal:
    """``--- SIGxxx {...} ---``: a signal delivered to ``pid``."""

    pid: int
    signal: str


@dataclass(frozen=True)
class Exit:
    """``+++ exited with N +++`` or ``+++ killed by SIGxxx +++``."""

    pid: int
    code: int | None
    signal: str | None = None


@dataclass(frozen=True)
class Trace:
    """The result of tracing one image: the JSON document written to trace.json.

    ``data`` holds the keys documented in ``trace/README.md`` (processes,
    files, syscalls, syscalls_by_exe, arguments, listening, connections,
    privileged_ops, writes, probes, duration_s, runtime, exit_code).
    """

    data: Mapping[str, Any] = field(default_factory=dict)
