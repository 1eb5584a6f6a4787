"""Compile a Docker-format seccomp profile (JSON) into classic BPF with libseccomp.

:func:`parse_profile` is pure (bytes -> :class:`Profile`); :func:`compile_bpf`
calls ``libseccomp.so.2`` through ctypes (``seccomp_init``, ``seccomp_arch_add``,
``seccomp_rule_add_array``, ``seccomp_export_bpf``) and returns the program
bytes that ``bwrap --seccomp FD`` installs right before the entrypoint runs.

Supported: ``defaultAction``/``defaultErrnoRet``, ``architectures`` and
``archMap``, ``syscalls[].names``/``name``, ``action``, ``errnoRet``,
``args`` (``index``, ``value``, ``valueTwo``, ``op`` = ``SCMP_CMP_NE|LT|LE|EQ|
GE|GT|MASKED_EQ``), ``includes``/``excludes`` on ``caps`` and ``arches``.
Several comparisons on the same argument index become separate rules (OR),
otherwise the comparisons of one rule are ANDed (Docker's semantics).
Syscall names libseccomp does not know are skipped with a warning, as Docker
does; a rule whose action equals the default action is dropped.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import tempfile
import warnings
from dataclasses import dataclass
from typing import Any, Iterable

from trimcage.trace.interface import ParseError, TraceError

ACT_KILL_THREAD = 0x00000000
ACT_KILL_PROCESS = 0x80000000
ACT_TRAP = 0x00030000
ACT_ERRNO = 0x00050000
ACT_TRACE = 0x7FF00000
ACT_LOG = 0x7FFC0000
ACT_ALLOW = 0x7FFF0000
ACT_NOTIFY = 0x7FC00000
EPERM = 1

ARCHES = {"SCMP_ARCH_X86_64": 0xC000003E, "SCMP_ARCH_X86": 0x40000003, "SCMP_ARCH_X32": 0x4000003E,
          "SCMP_ARCH_AARCH64": 0xC00000B7, "SCMP_ARCH_ARM": 0x40000028}
CMP_OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
           "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "i686": "386"}


@dataclass(frozen=True)
class ArgRule:
    index: int
    op: str
    value: int
    value_two: int = 0


@dataclass(frozen=True)
class Rule:
    names: tuple[str, ...]
    action: str
    errno_ret: int | None = None
    args: tuple[ArgRule, ...] = ()
    include_caps: tuple[str, ...] = ()
    exclude_caps: tuple[str, ...] = ()
    include_arches: tuple[str, ...] = ()
    exclude_arches: tuple[str, ...] = ()


@dataclass(frozen=True)
class Profile:
    default_action: str
    default_errno: int | None
    architectures: tuple[str, ...]
    rules: tuple[Rule, ...]


def _act(name: str, errno: int | None, where: str) -> int:
    n = name.upper()
    if n == "SCMP_ACT_ALLOW":
        return ACT_ALLOW
    if n == "SCMP_ACT_ERRNO":
        return ACT_ERRNO | ((EPERM if errno is None else errno) & 0xFFFF)
    if n in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return ACT_KILL_THREAD
    if n == "SCMP_ACT_KILL_PROCESS":
        return ACT_KILL_PROCESS
    if n == "SCMP_ACT_TRAP":
        return ACT_TRAP
    if n == "SCMP_ACT_LOG":
        return ACT_LOG
    if n == "SCMP_ACT_TRACE":
        return ACT_TRACE | ((errno or 0) & 0xFFFF)
    raise ParseError(f"{where}: unknown seccomp action {name!r}")


def parse_profile(data: bytes | str, where: str = "<profile>") -> Profile:
    """Parse a Docker seccomp JSON profile; raise ParseError naming ``where``."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ParseError(f"{where}: not JSON: {e}") from e
    if not isinstance(doc, dict) or "defaultAction" not in doc:
        raise ParseError(f"{where}: not a seccomp profile (no defaultAction)")
    try:
        arches: list[str] = list(doc.get("architectures") or [])
        for m in doc.get("archMap") or []:
            arches.append(m["architecture"])
            arches.extend(m.get("subArchitectures") or [])
        rules = []
        for i, r in enumerate(doc.get("syscalls") or []):
            names = tuple(r.get("names") or ([r["name"]] if r.get("name") else []))
            args = tuple(ArgRule(int(a["index"]), str(a.get("op", "SCMP_CMP_EQ")), int(a.get("value", 0)),
                                 int(a.get("valueTwo", 0))) for a in (r.get("args") or []))
            for a in args:
                if a.op not in CMP_OPS or not 0 <= a.index <= 5:
                    raise ParseError(f"{where}: syscalls[{i}]: bad argument rule {a}")
            inc, exc = r.get("includes") or {}, r.get("excludes") or {}
            rules.append(Rule(names, str(r.get("action", "SCMP_ACT_ALLOW")),
                              r.get("errnoRet"), args,
                              tuple(inc.get("caps") or ()), tuple(exc.get("caps") or ()),
                              tuple(inc.get("arches") or ()), tuple(exc.get("arches") or ())))
    except (KeyError, TypeError, ValueError) as e:
        raise ParseError(f"{where}: malformed seccomp profile: {e}") from e
    prof = Profile(str(doc["defaultAction"]), doc.get("defaultErrnoRet"), tuple(dict.fromkeys(arches)),
                   tuple(rules))
    _act(prof.default_action, prof.default_errno, where)
    for r in prof.rules:
        _act(r.action, r.errno_ret, where)
    return prof


def load_profile(path: str) -> Profile:
    """Read and parse a profile file; errors name the file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise TraceError(f"{path}: cannot read seccomp profile: {e.strerror}") from e
    return parse_profile(data, path)


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


_LIB: Any = None


def _lib() -> Any:
    global _LIB
    if _LIB is None:
        try:
            lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
        except OSError as e:
            raise TraceError(f"libseccomp.so.2 not found (apt-get install libseccomp2): {e}") from e
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_release.argtypes = [ctypes.c_void_p]
        lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                               ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
        lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
        _LIB = lib
    return _LIB


def _norm_cap(c: str) -> str:
    c = c.upper()
    return c if c.startswith("CAP_") else "CAP_" + c


def compile_bpf(profile: Profile, caps: Iterable[str] = (), where: str = "<profile>") -> bytes:
    """Return the BPF program (struct sock_filter array bytes) for ``profile``.

    ``caps`` is the container's capability set, for ``includes``/``excludes``.
    """
    lib = _lib()
    capset = {_norm_cap(c) for c in caps}
    goarch = GOARCH.get(platform.machine(), platform.machine())
    ctx = lib.seccomp_init(_act(profile.default_action, profile.default_errno, where))
    if not ctx:
        raise TraceError(f"{where}: seccomp_init failed")
    try:
        for a in profile.architectures:
            tok = ARCHES.get(a)
            if tok is None:  # an architecture this host cannot run anyway
                continue
            lib.seccomp_arch_add(ctx, tok)  # -EEXIST for the native arch is fine
        default = _act(profile.default_action, profile.default_errno, where)
        unknown: list[str] = []
        for rule in profile.rules:
            if rule.include_caps and not all(_norm_cap(c) in capset for c in rule.include_caps):
                continue
            if rule.exclude_caps and any(_norm_cap(c) in capset for c in rule.exclude_caps):
                continue
            if rule.include_arches and goarch not in rule.include_arches:
                continue
            if rule.exclude_arches and goarch in rule.exclude_arches:
                continue
            action = _act(rule.action, rule.errno_ret, where)
            if action == default:
                continue
            idx = [a.index for a in rule.args]
            groups = ([[a] for a in rule.args] if len(set(idx)) != len(idx) else [list(rule.args)])
            for name in rule.names:
                nr = lib.seccomp_syscall_resolve_name(name.encode())
                if nr == -1:  # __NR_SCMP_ERROR; other negatives are other arches' syscalls
                    unknown.append(name)
                    continue
                for group in groups:
                    arr = (_ArgCmp * max(1, len(group)))()
                    for i, a in enumerate(group):
                        arr[i] = _ArgCmp(a.index, CMP_OPS[a.op], a.value & (2**64 - 1),
                                         a.value_two & (2**64 - 1))
                    rc = lib.seccomp_rule_add_array(ctx, action, nr, len(group), arr)
                    if rc < 0:
                        raise TraceError(f"{where}: cannot add rule for {name}: "
                                         f"{os.strerror(-rc)}")
        if unknown:
            names = ", ".join(sorted(set(unknown)))
            warnings.warn(f"{where}: syscalls unknown to libseccomp skipped: {names}", stacklevel=2)
        with tempfile.TemporaryFile() as f:
            rc = lib.seccomp_export_bpf(ctx, f.fileno())
            if rc < 0:
                raise TraceError(f"{where}: seccomp_export_bpf failed: {os.strerror(-rc)}")
            f.seek(0)
            return f.read()
    finally:
        lib.seccomp_release(ctx)
