"""Architecture tables: syscall numbers and calling conventions.

Only x86-64 is implemented; an aarch64 :class:`Arch` would add its table
(``asm-generic/unistd.h``), ``svc #0`` sites with the number in ``x8`` and
arguments in ``x0``..``x5``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from trimcage.elf.syscalls_x86_64 import SYSCALLS_X86_64


@dataclass(frozen=True)
class Arch:
    name: str
    seccomp_arch: str
    syscalls: Mapping[int, str]
    number_reg: str
    arg_regs: tuple[str, ...]

    def number(self, name: str) -> int | None:
        for n, s in self.syscalls.items():
            if s == name:
                return n
        return None


X86_64 = Arch("x86_64", "SCMP_ARCH_X86_64", SYSCALLS_X86_64, "rax",
              ("rdi", "rsi", "rdx", "r10", "r8", "r9"))

# Arguments whose values are collected: syscall -> argument indices.
TRACKED_ARGS: dict[str, tuple[int, ...]] = {
    "socket": (0, 1), "socketpair": (0,), "clone": (0,), "clone3": (0,), "unshare": (0,),
    "prctl": (0,), "personality": (0,), "mmap": (2,), "mprotect": (2,), "ioctl": (1,),
    "setsockopt": (1, 2), "fcntl": (1,),
}
# Arguments that can never be restricted by seccomp (a pointer to a struct).
STRUCT_ARGS: dict[tuple[str, int], str] = {
    ("clone3", 0): "clone3 takes a pointer to struct clone_args; seccomp cannot inspect it",
}
