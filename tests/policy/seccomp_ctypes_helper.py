"""Compile a Docker-format profile to BPF with libseccomp (ctypes), for tests.

Uses the project's compiler (``trimcage.trace.seccomp_bpf``) when it is there;
otherwise a minimal private one: default action, architectures, ALLOW/ERRNO
rules with argument comparisons (no includes/excludes: trimcage's own profiles
have none).
"""

from __future__ import annotations

import ctypes
import json
import os
import tempfile
from typing import Any, Mapping

ARCH = {"SCMP_ARCH_X86_64": 0xC000003E, "SCMP_ARCH_X86": 0x40000003, "SCMP_ARCH_X32": 0x4000003E}
OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5,
       "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
ACT_ALLOW, ACT_ERRNO = 0x7FFF0000, 0x00050000


class _Cmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("a", ctypes.c_uint64),
                ("b", ctypes.c_uint64)]


def _private_compile(profile: Mapping[str, Any]) -> bytes:
    lib = ctypes.CDLL("libseccomp.so.2")
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_arch_remove.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(_Cmp)]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]

    def act(name: str, ret: int | None) -> int:
        return ACT_ALLOW if name == "SCMP_ACT_ALLOW" else ACT_ERRNO | (1 if ret is None else ret)

    ctx = lib.seccomp_init(act(profile["defaultAction"], profile.get("defaultErrnoRet")))
    try:
        for a in profile.get("architectures") or []:
            lib.seccomp_arch_add(ctx, ARCH[a])
        for rule in profile["syscalls"]:
            action = act(rule["action"], rule.get("errnoRet"))
            args = rule.get("args") or []
            arr = (_Cmp * max(1, len(args)))(*[_Cmp(a["index"], OPS[a["op"]], a["value"],
                                                     a.get("valueTwo", 0)) for a in args])
            for name in rule["names"]:
                nr = lib.seccomp_syscall_resolve_name(name.encode())
                assert nr >= 0, name
                rc = lib.seccomp_rule_add_array(ctx, action, nr, len(args), arr)
                assert rc == 0, (name, os.strerror(-rc))
        with tempfile.TemporaryFile() as f:
            assert lib.seccomp_export_bpf(ctx, f.fileno()) == 0
            f.seek(0)
            return f.read()
    finally:
        lib.seccomp_release(ctx)


def compile_profile(profile: Mapping[str, Any]) -> bytes:
    """BPF program bytes (8 bytes per instruction) for ``profile``."""
    try:
        from trimcage.trace.seccomp_bpf import compile_bpf, parse_profile
    except ImportError:
        return _private_compile(profile)
    return compile_bpf(parse_profile(json.dumps(profile)))
