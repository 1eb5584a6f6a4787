"""Backward register data flow inside one function (x86-64, Intel syntax text).

A function is a list of ``(address, size, mnemonic, operands)`` tuples as
capstone's ``disasm_lite`` returns them. :class:`FunctionFlow` answers "which
values can register R hold just before instruction i?" by walking back
through the instruction's basic block and its predecessors (fall-through and
direct jumps). The answer is a :data:`Val`:

``(consts, params, unknown)``: a sorted tuple of constants, a sorted tuple of
registers whose value on *function entry* flows here (resolved at the call
sites, interprocedurally), and None or the reason some path is unknown.
Anything not understood makes the value unknown, so results are sound.
"""

from __future__ import annotations

import re
from typing import Sequence

Insn = tuple[int, int, str, str]
Val = tuple[tuple[int, ...], tuple[str, ...], str | None]

UNKNOWN_CALL: Val = ((), (), "clobbered by a call")

_GPR = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
FAMILY: dict[str, str] = {}
WIDTH: dict[str, int] = {}
for _r in ("ax", "bx", "cx", "dx", "si", "di", "bp", "sp"):
    _full = "r" + _r
    FAMILY.update({_full: _full, "e" + _r: _full, _r: _full})
    WIDTH.update({_full: 64, "e" + _r: 32, _r: 16})
for _l, _r in (("al", "rax"), ("ah", "rax"), ("bl", "rbx"), ("bh", "rbx"), ("cl", "rcx"), ("ch", "rcx"),
               ("dl", "rdx"), ("dh", "rdx"), ("sil", "rsi"), ("dil", "rdi"), ("bpl", "rbp"), ("spl", "rsp")):
    FAMILY[_l], WIDTH[_l] = _r, 8
for _n in range(8, 16):
    _full = f"r{_n}"
    FAMILY.update({_full: _full, _full + "d": _full, _full + "w": _full, _full + "b": _full})
    WIDTH.update({_full: 64, _full + "d": 32, _full + "w": 16, _full + "b": 8})

ALIASES: dict[str, tuple[str, ...]] = {}
for _a, _f in FAMILY.items():
    ALIASES.setdefault(_f, ())
    ALIASES[_f] += (_a,)
ALIASES = {f: tuple(sorted(set(a), key=len)) for f, a in ALIASES.items()}
ALIASES.update({f: tuple(x for x in a if not any(y != x and y in x for y in a)) for f, a in ALIASES.items()})

CALLER_SAVED = frozenset({"rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11"})
PREFIXES = ("bnd ", "notrack ", "lock ", "rep ", "repe ", "repne ", "repz ", "repnz ", "data16 ", "addr32 ")
TERMINATORS = frozenset({"jmp", "ret", "retf", "iretq", "iret", "ud2", "hlt", "ljmp", "sysret", "sysretq"})
NO_DEST = frozenset({"cmp", "test", "push", "jmp", "call", "nop", "bt", "ret", "endbr64", "endbr32",
                     "ud2", "hlt", "pause", "lfence", "mfence", "sfence", "prefetcht0", "prefetcht1",
                     "prefetcht2", "prefetchnta", "prefetchw", "clflush", "ucomisd", "ucomiss",
                     "comisd", "comiss", "ptest", "vptest", "int3", "leave_", "fxsave", "xsave",
                     "xsavec", "xsaveopt", "xrstor", "fxrstor", "ldmxcsr", "stmxcsr", "fldcw", "fnstcw",
                     "wrfsbase", "wrgsbase", "vzeroupper"})
# Instructions writing registers that do not appear as their first operand.
IMPLICIT: dict[str, frozenset[str]] = {
    "syscall": frozenset({"rax", "rcx", "r11"}),
    "cpuid": frozenset({"rax", "rbx", "rcx", "rdx"}),
    "rdtsc": frozenset({"rax", "rdx"}), "rdtscp": frozenset({"rax", "rdx", "rcx"}),
    "xgetbv": frozenset({"rax", "rdx"}), "rdpid": frozenset(),
    "cdq": frozenset({"rdx"}), "cqo": frozenset({"rdx"}), "cwd": frozenset({"rdx"}),
    "cdqe": frozenset({"rax"}), "cwde": frozenset({"rax"}), "cbw": frozenset({"rax"}),
    "mul": frozenset({"rax", "rdx"}), "div": frozenset({"rax", "rdx"}), "idiv": frozenset({"rax", "rdx"}),
    "cmpxchg": frozenset({"rax"}), "cmpxchg8b": frozenset({"rax", "rdx"}),
    "cmpxchg16b": frozenset({"rax", "rdx"}), "leave": frozenset({"rsp", "rbp"}),
    "rdrand": frozenset(), "rdseed": frozenset(), "xlatb": frozenset({"rax"}), "lahf": frozenset({"rax"}),
    "enter": frozenset({"rsp", "rbp"}), "pop": frozenset({"rsp"}), "push": frozenset({"rsp"}),
}
STRING_OPS = ("stos", "movs", "lods", "scas", "cmps", "ins", "outs")
_REG_RE = re.compile(r"\b([a-z][a-z0-9]{1,4})\b")
_RIP_RE = re.compile(r"\[rip ([+-]) (0x[0-9a-f]+|\d+)\]")


_MNEM: dict[str, str] = {}


def mnemonic(m: str) -> str:
    """The mnemonic without prefixes (``bnd jmp`` -> ``jmp``)."""
    r = _MNEM.get(m)
    if r is None:
        r = _MNEM[m] = _strip_prefixes(m)
    return r


def _strip_prefixes(m: str) -> str:
    while True:
        for p in PREFIXES:
            if m.startswith(p):
                m = m[len(p):]
                break
        else:
            return m


def rip_target(insn: Insn) -> int | None:
    """The address a ``[rip +/- X]`` operand refers to, None if there is none."""
    m = _RIP_RE.search(insn[3])
    if not m:
        return None
    disp = int(m.group(2), 0)
    return insn[0] + insn[1] + (disp if m.group(1) == "+" else -disp)


def direct_target(insn: Insn) -> int | None:
    """The target of a direct call/jump (operand is one immediate), else None."""
    ops = insn[3]
    if ops.startswith("0x") and " " not in ops:
        try:
            return int(ops, 16)
        except ValueError:
            return None
    return None


def join(vals: Sequence[Val]) -> Val:
    consts: set[int] = set()
    params: set[str] = set()
    unknown: str | None = None
    for c, p, u in vals:
        consts.update(c)
        params.update(p)
        if u and unknown is None:
            unknown = u
    return tuple(sorted(consts)), tuple(sorted(params)), unknown


def _written(m: str, ops: str) -> set[str]:
    """Register families ``m ops`` may write (conservative)."""
    out: set[str] = set(IMPLICIT.get(m, ()))
    if m.startswith(STRING_OPS):
        out.update(("rdi", "rsi", "rcx", "rax"))
    if m in NO_DEST or m.startswith("j") or m.startswith("set") and False:
        return out
    parts = ops.split(", ")
    dest = parts[0]
    if "[" not in dest:
        for r in _REG_RE.findall(dest):
            if r in FAMILY:
                out.add(FAMILY[r])
    if m in ("xchg", "xadd", "cmpxchg") and len(parts) > 1 and "[" not in parts[1]:
        for r in _REG_RE.findall(parts[1]):
            if r in FAMILY:
                out.add(FAMILY[r])
    if m == "pop" and dest in FAMILY:
        out.add(FAMILY[dest])
    return out


class FunctionFlow:
    """Backward data flow over one function's instructions (see module docstring).

    ``call_clobbers`` is the set of registers a call destroys (the SysV set by
    default; Go's ABIInternal clobbers all).
    """

    def __init__(self, insns: Sequence[Insn], *, call_clobbers: frozenset[str] = CALLER_SAVED,
                 budget: int = 200):
        self.insns = insns
        self.call_clobbers = call_clobbers
        self.budget = budget
        self._preds: list[list[int]] | None = None
        self._memo: dict[tuple[int, str], Val] = {}

    @property
    def preds(self) -> list[list[int]]:
        if self._preds is None:
            pos = {ins[0]: i for i, ins in enumerate(self.insns)}
            preds: list[list[int]] = [[] for _ in self.insns]
            for i, ins in enumerate(self.insns):
                m = mnemonic(ins[2])
                if i + 1 < len(self.insns) and m not in TERMINATORS:
                    preds[i + 1].append(i)
                if m.startswith("j") or m.startswith("loop"):
                    t = direct_target(ins)
                    if t is not None and t in pos:
                        preds[pos[t]].append(i)
            self._preds = preds
        return self._preds

    def value_before(self, i: int, reg: str) -> Val:
        """Values register family ``reg`` can hold just before instruction ``i``."""
        key = (i, reg)
        if key not in self._memo:
            self._steps = 0
            try:
                v = self._before(i, reg, set())
            except RecursionError:
                v = ((), (), "data flow too deep")
            if not v[0] and not v[1] and not v[2]:
                v = ((), (), "no defining path")
            self._memo[key] = v
        return self._memo[key]

    # --- private ------------------------------------------------------------

    def _before(self, i: int, reg: str, path: set[tuple[int, str]]) -> Val:
        self._steps += 1
        if self._steps > self.budget:
            return (), (), "data flow too complex"
        if (i, reg) in path:
            # already explored in this query: its values are in the union already
            return (), (), None
        path.add((i, reg))
        preds = self.preds[i]
        vals: list[Val] = []
        if i == 0:
            vals.append(((), (reg,), None))
        elif not preds:
            return (), (), "unknown predecessor (indirect jump target)"
        for p in preds:
            vals.append(self._through(p, reg, path))
            if vals[-1][2]:
                break
        return join(vals)

    def _through(self, p: int, reg: str, path: set[tuple[int, str]]) -> Val:
        """Value of ``reg`` after instruction ``p``."""
        addr, _size, raw_m, ops = self.insns[p]
        m = mnemonic(raw_m)
        if reg.startswith("stk:"):
            return self._through_stack(p, m, ops, reg, path)
        if m == "call":
            if reg in self.call_clobbers:
                return UNKNOWN_CALL
            return self._before(p, reg, path)
        if m not in IMPLICIT and not m.startswith(STRING_OPS) and \
                not any(a in ops for a in ALIASES[reg]):
            return self._before(p, reg, path)   # fast path: the register is not mentioned
        written = _written(m, ops)
        if reg not in written:
            return self._before(p, reg, path)
        parts = ops.split(", ")
        dest = parts[0]
        w = WIDTH.get(dest, 0)
        if FAMILY.get(dest) == reg and len(parts) == 2 and w in (32, 64):
            src = parts[1]
            if m in ("mov", "movabs"):
                if src[:1].isdigit() or src.startswith("-"):
                    try:
                        v = int(src, 0)
                    except ValueError:
                        return (), (), f"{m} {ops} at {addr:#x}"
                    v &= 0xFFFFFFFF if w == 32 else 0xFFFFFFFFFFFFFFFF
                    return (v,), (), None
                if src in FAMILY and WIDTH[src] in (32, 64):
                    if w == 64 and WIDTH[src] == 32:
                        pass  # zero-extended 32-bit source: value still the low 32 bits
                    return self._before(p, FAMILY[src], path)
            if m == "mov" and w == 64:
                sm = _STK_RE.fullmatch(src)
                if sm:
                    return self._before(p, stack_slot(sm), path)
            if m == "movsxd" and src in FAMILY:
                return self._before(p, FAMILY[src], path)
            if m in ("xor", "sub") and FAMILY.get(src) == reg:
                return (0,), (), None
        return (), (), f"{m} {ops} at {addr:#x}"

    def _through_stack(self, p: int, m: str, ops: str, reg: str, path: set[tuple[int, str]]) -> Val:
        """Value of the stack slot ``stk:X`` (``qword ptr [rsp + X]``) after instruction ``p``.

        Best effort for Go's register spills: any change of rsp, or a call when
        the slot is in the outgoing-argument area (below 0x40), makes it unknown;
        stores through other pointers are not tracked.
        """
        addr = self.insns[p][0]
        parts = ops.split(", ")
        dest = parts[0]
        if m == "call":
            if int(reg[4:], 16) < 0x40:
                return (), (), f"stack slot clobbered by a call at {addr:#x}"
            return self._before(p, reg, path)
        if m in ("push", "pop", "leave", "enter") or (dest == "rsp" and m not in ("cmp", "test")):
            return (), (), f"{m} {ops} changes rsp at {addr:#x}"
        sm = _STK_RE.fullmatch(dest) if "[rsp" in dest else None
        if sm is None or stack_slot(sm) != reg:
            if "[rsp" in dest and m not in NO_DEST and reg[4:] in dest:
                return (), (), f"{m} {ops} at {addr:#x}"
            return self._before(p, reg, path)
        if m == "mov" and len(parts) == 2:
            src = parts[1]
            if src in FAMILY and WIDTH[src] == 64:
                return self._before(p, FAMILY[src], path)
            if src[:1].isdigit() or src.startswith("-"):
                try:
                    return (int(src, 0) & 0xFFFFFFFFFFFFFFFF,), (), None
                except ValueError:
                    pass
        return (), (), f"{m} {ops} at {addr:#x}"


_STK_RE = re.compile(r"qword ptr \[rsp(?: \+ (0x[0-9a-f]+|\d+))?\]")


def stack_slot(m: "re.Match[str]") -> str:
    """The pseudo register naming a ``qword ptr [rsp + X]`` slot."""
    return f"stk:{int(m.group(1) or '0', 0):#x}"


def caller_slot(reg: str) -> str | None:
    """The caller's slot (just before its call) holding the callee's entry ``stk:X``."""
    x = int(reg[4:], 16) - 8
    return f"stk:{x:#x}" if x >= 0 else None
