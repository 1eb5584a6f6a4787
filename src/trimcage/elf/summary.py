"""Per-object summaries: one ELF file in, a JSON-able call/syscall graph out.

The summary depends only on the file's bytes, so it is cached by content
digest (``elf-v1``) and a shared library is analysed once for every image.
Whole-program results are a cheap walk over summaries (``program.py``).

Functions are found from symbols (``.symtab``, ``.dynsym``), direct call
targets, the entry point, init/fini arrays and code addresses stored in data;
the code between two consecutive starts belongs to the first one (a function
never seen as a start is merged into its predecessor: less precise, still
sound). Summary keys (all function references are indices into ``funcs``):

``funcs``      sorted start addresses
``names``      {idx: [symbol names]}
``exports``    {name: [idx]} defined dynamic symbols
``roots``      [idx] run without a visible caller: entry, init/fini, address
               stored in data (reachable once the object is loaded)
``edges``      {idx: [idx]} direct calls and tail jumps inside the object
``taken``      {idx: [idx]} functions whose address the function takes (lea/imm)
``imports``    {idx: [name]} imported symbols referenced without a call
``data_imports`` [name] imported functions whose address sits in data
``calls``      {idx: [[addr, idx, {reg: Val}]]} internal call sites with the
               register values the callee needs
``icalls``     {idx: [[addr, name, {reg: Val}]]} calls to imported symbols
``sites``      {idx: [[addr, Val nr, [Val x6 args]]]} ``syscall`` instructions
``strings``    sorted ``lib*.so*`` strings found in read-only data
"""

from __future__ import annotations

import bisect
from collections import deque
import re
import struct
from typing import Any

from capstone import CS_ARCH_X86, CS_MODE_64, Cs

from trimcage.elf.dataflow import (CALLER_SAVED, FAMILY, FunctionFlow, Insn, Val, caller_slot, direct_target,
                                   mnemonic, rip_target)
from trimcage.elf.golang import go_functions
from trimcage.elf.reader import (R_X86_64_64, R_X86_64_GLOB_DAT, R_X86_64_IRELATIVE, R_X86_64_JUMP_SLOT,
                                 R_X86_64_RELATIVE, ElfObject)

SUMMARY_VERSION = 5
MAX_PARAM_LEVELS = 6   # call levels a parameter is followed up from a syscall site
SYSCALL_ARG_REGS = ("rdi", "rsi", "rdx", "r10", "r8", "r9")
CALL_ARG_REGS = ("rdi", "rsi", "rdx", "rcx", "r8", "r9")
GO_REGS = ("rax", "rbx", "rcx", "rdi", "rsi", "r8", "r9", "r10", "r11")
PLT_SECTIONS = (".plt", ".plt.sec", ".plt.got", ".iplt")
_LIBSTR_RE = re.compile(rb"(?<![\w.+-])(lib[\w+.-]*?\.so(?:\.[0-9]+)*)\x00")
_IMM_RE = re.compile(r"(?<![\w\[])0x[0-9a-f]{5,8}\b")


def _disasm(code: bytes, base: int) -> list[Insn]:
    md = Cs(CS_ARCH_X86, CS_MODE_64)
    out: list[Insn] = []
    off = 0
    while off < len(code):
        n = len(out)
        for ins in md.disasm_lite(code[off:], base + off):
            out.append(ins)
        if len(out) > n:
            last = out[-1]
            off = last[0] + last[1] - base
        # undecodable byte: skip it and continue (data in code, padding)
        if off < len(code):
            off += 1
    return out


def kind_of(elf: ElfObject, is_go: bool) -> str:
    if is_go:
        return "go"
    if elf.e_type == "ET_EXEC":
        return "exec" if elf.interp else "static"
    if elf.e_type == "ET_DYN":
        if elf.interp and not elf.soname:
            return "pie"
        if not elf.needed and elf.has_segment("PT_DYNAMIC") and elf.soname is None \
                and elf.get_section_by_name(".interp") is None and not elf.exports:
            return "static-pie"
        return "shared"
    return elf.e_type


def is_go_binary(elf: ElfObject) -> bool:
    if elf.has_section(".go.buildinfo") or elf.has_section(".gopclntab"):
        return True
    return any(s[0] == "runtime.buildVersion" for s in elf.iter_symbols(".symtab"))


def summarize(data: bytes, name: str) -> dict[str, Any]:
    """Analyse one ELF file; raise ``ElfError`` if it cannot be parsed."""
    elf = ElfObject(data, name)
    go = is_go_binary(elf)
    out: dict[str, Any] = {
        "version": SUMMARY_VERSION, "kind": kind_of(elf, go), "interp": elf.interp,
        "needed": list(elf.needed), "rpath": elf.rpath, "runpath": elf.runpath, "soname": elf.soname,
        "undefined": sorted({s[0] for s in elf.iter_symbols(".dynsym") if not s[6] and s[0]}),
    }
    ranges = list(elf.iter_code_ranges())
    insns: list[Insn] = []
    plt_ranges: list[tuple[int, int]] = []
    for secname, base, code in ranges:
        insns.extend(_disasm(code, base))
        if secname in PLT_SECTIONS:
            plt_ranges.append((base, base + len(code)))
    insns.sort()
    addrs = [i[0] for i in insns]
    code_spans = sorted((b, b + len(c)) for _, b, c in ranges)

    def in_code(a: int) -> bool:
        k = bisect.bisect_right(code_spans, (a, float("inf"))) - 1
        return k >= 0 and code_spans[k][0] <= a < code_spans[k][1]

    def in_plt(a: int) -> bool:
        return any(lo <= a < hi for lo, hi in plt_ranges)

    # GOT slots: symbol name (import) or internal address (RELATIVE/IRELATIVE)
    slot_sym: dict[int, str] = {}
    slot_addr: dict[int, int] = {}
    data_roots: set[int] = set()
    data_imports: set[str] = set()
    defined = {s[0] for s in elf.iter_symbols() if s[6]}
    for off, typ, sname, svalue, addend in elf.iter_relocations():
        if typ in (R_X86_64_JUMP_SLOT, R_X86_64_GLOB_DAT) and sname:
            slot_sym[off] = sname
        elif typ in (R_X86_64_RELATIVE, R_X86_64_IRELATIVE):
            slot_addr[off] = addend
            if in_code(addend):
                data_roots.add(addend)
        elif typ == R_X86_64_64:
            if sname and (svalue == 0 or sname not in defined):
                slot_sym[off] = sname
                data_imports.add(sname)
            elif in_code(svalue + addend):
                slot_addr[off] = svalue + addend
                data_roots.add(svalue + addend)
    if elf.e_type == "ET_EXEC" or not elf.is_dynamic:
        # no relocations for absolute pointers: scan data for code addresses
        for base, raw in elf.iter_data_ranges():
            pad = (-base) % 8
            for k, (v,) in enumerate(struct.iter_unpack("<Q", raw[pad:pad + (len(raw) - pad) // 8 * 8])):
                if v and in_code(v):
                    data_roots.add(v)
                    slot_addr.setdefault(base + pad + 8 * k, v)

    # function starts
    starts: set[int] = set()
    for _n, value, _size in elf.iter_function_symbols():
        if in_code(value):
            starts.add(value)
    go_funcs = go_functions(elf) if go else []
    for value, _n in go_funcs:
        if in_code(value):
            starts.add(value)
    entry = elf.entry if in_code(elf.entry) else None
    if entry is not None:
        starts.add(entry)
    init_fini = [a for a in elf.iter_init_fini() if in_code(a)]
    starts.update(init_fini)
    starts.update(data_roots)
    for ins in insns:
        m = mnemonic(ins[2])
        if m == "call":
            t = direct_target(ins)
            if t is not None and in_code(t):
                starts.add(t)
    for lo, _hi in code_spans:
        starts.add(lo)
    funcs = sorted(starts)

    def fidx(a: int) -> int:
        return bisect.bisect_right(funcs, a) - 1

    # PLT stubs: start address -> import name or internal target
    def plt_resolve(t: int) -> tuple[str | None, int | None]:
        k = bisect.bisect_left(addrs, t)
        for ins in insns[k:k + 4]:
            if mnemonic(ins[2]) == "jmp":
                slot = rip_target(ins)
                if slot is None:
                    return None, None
                if slot in slot_sym:
                    return slot_sym[slot], None
                if slot in slot_addr:
                    return None, slot_addr[slot]
                return None, None
        return None, None

    names: dict[int, list[str]] = {}
    for n, value, _size in elf.iter_function_symbols():
        if in_code(value) and n:
            names.setdefault(fidx(value), []).append(n)
    for value, n in go_funcs:
        if in_code(value) and n:
            names.setdefault(fidx(value), []).append(n)
    exports: dict[str, list[int]] = {}
    for n, values in elf.exports.items():
        idxs = sorted({fidx(v) for v in values if in_code(v)})
        if idxs:
            exports[n] = idxs

    imm_ok = elf.e_type == "ET_EXEC"
    start_set = set(funcs)
    edges: dict[int, set[int]] = {}
    taken: dict[int, set[int]] = {}
    imports: dict[int, set[str]] = {}
    call_pos: dict[int, list[tuple[int, int | str]]] = {}   # fidx -> [(insn pos, target)]
    sys_pos: dict[int, list[int]] = {}
    bounds: list[tuple[int, int]] = []
    j = 0
    for f, start in enumerate(funcs):
        end = funcs[f + 1] if f + 1 < len(funcs) else float("inf")
        lo = bisect.bisect_left(addrs, start, lo=j)
        hi = bisect.bisect_left(addrs, end, lo=lo)
        j = hi
        bounds.append((lo, hi))
        if any(lo2 <= start < hi2 for lo2, hi2 in plt_ranges):
            continue  # PLT stubs are resolved at their call sites
        for p in range(lo, hi):
            ins = insns[p]
            m = mnemonic(ins[2])
            if m == "syscall":
                sys_pos.setdefault(f, []).append(p)
                continue
            if m == "call" or m == "jmp":
                t = direct_target(ins)
                if t is not None:
                    if start <= t < end:
                        continue
                    if in_plt(t):
                        sym, internal = plt_resolve(t)
                        if sym:
                            call_pos.setdefault(f, []).append((p, sym))
                        elif internal is not None and in_code(internal):
                            edges.setdefault(f, set()).add(fidx(internal))
                            call_pos.setdefault(f, []).append((p, fidx(internal)))
                        continue
                    if in_code(t):
                        edges.setdefault(f, set()).add(fidx(t))
                        call_pos.setdefault(f, []).append((p, fidx(t)))
                    continue
            target = rip_target(ins)
            if target is not None:
                if target in slot_sym:
                    if m in ("call", "jmp"):
                        call_pos.setdefault(f, []).append((p, slot_sym[target]))
                    else:
                        imports.setdefault(f, set()).add(slot_sym[target])
                elif target in slot_addr and in_code(slot_addr[target]):
                    taken.setdefault(f, set()).add(fidx(slot_addr[target]))
                elif in_code(target):
                    g = fidx(target)
                    if g != f:
                        taken.setdefault(f, set()).add(g)
            elif imm_ok and m not in ("call", "jmp") and not m.startswith("j"):
                for h in _IMM_RE.findall(ins[3]):
                    v = int(h, 16)
                    if v in start_set:
                        taken.setdefault(f, set()).add(fidx(v))

    clobbers = frozenset(GO_REGS) | CALLER_SAVED if go else CALLER_SAVED
    flows: dict[int, FunctionFlow] = {}

    def flow(f: int) -> FunctionFlow:
        if f not in flows:
            lo, hi = bounds[f]
            flows[f] = FunctionFlow(insns[lo:hi], call_clobbers=clobbers)
        return flows[f]

    def enc(v: Val) -> list[Any]:
        return [list(v[0]), list(v[1]), v[2]]

    sites: dict[int, list[Any]] = {}
    needs: dict[int, set[str]] = {}
    for f, ps in sys_pos.items():
        fl = flow(f)
        lo = bounds[f][0]
        for p in ps:
            nr = fl.value_before(p - lo, "rax")
            args = [fl.value_before(p - lo, r) for r in SYSCALL_ARG_REGS]
            sites.setdefault(f, []).append([insns[p][0], enc(nr), [enc(a) for a in args]])
            for v in [nr, *args]:
                needs.setdefault(f, set()).update(v[1])

    # internal call sites: values of the registers the callee needs, to a fixpoint
    callers: dict[int, list[tuple[int, int]]] = {}
    for g, lst in call_pos.items():
        for p, t in lst:
            if isinstance(t, int):
                callers.setdefault(t, []).append((g, p))
    calls: dict[int, dict[int, list[Any]]] = {}   # g -> pos -> [addr, target, {reg: val}]
    work = deque(sorted(needs))
    level = {f: 0 for f in needs}
    rounds = 0
    while work and rounds < 200000:
        rounds += 1
        f = work.popleft()
        if level[f] >= MAX_PARAM_LEVELS:
            continue
        for g, p in callers.get(f, ()):
            fl = flow(g)
            rec = calls.setdefault(g, {}).setdefault(p, [insns[p][0], f, {}])
            grew = False
            for r in sorted(needs.get(f, ())):
                if r in rec[2]:
                    continue
                cr = caller_slot(r) if r.startswith("stk:") else r
                if cr is None:
                    continue
                v = fl.value_before(p - bounds[g][0], cr)
                rec[2][r] = enc(v)
                if not set(v[1]) <= needs.get(g, set()):
                    needs.setdefault(g, set()).update(v[1])
                    grew = True
            if grew:
                level[g] = min(level.get(g, MAX_PARAM_LEVELS), level[f] + 1)
                work.append(g)

    icalls: dict[int, list[Any]] = {}
    regs = GO_REGS if go else CALL_ARG_REGS
    for g, lst in call_pos.items():
        for p, t in lst:
            if isinstance(t, str):
                fl = flow(g)
                vals = {}
                for r in regs:
                    v = fl.value_before(p - bounds[g][0], r)
                    if v[0] or v[1]:
                        vals[r] = enc(v)
                icalls.setdefault(g, []).append([insns[p][0], t, vals])

    roots = {fidx(a) for a in data_roots} | {fidx(a) for a in init_fini}
    if entry is not None:
        roots.add(fidx(entry))
    if go:
        roots.update(range(len(funcs)))
    strings: set[str] = set()
    for base, raw in elf.iter_data_ranges():
        for m in _LIBSTR_RE.finditer(raw):
            strings.add(m.group(1).decode("ascii", "replace"))

    out.update({
        "is_go": go, "funcs": funcs, "entry": fidx(entry) if entry is not None else None,
        "names": {str(k): sorted(set(v)) for k, v in sorted(names.items())},
        "exports": dict(sorted(exports.items())),
        "roots": sorted(roots), "data_imports": sorted(data_imports),
        "edges": {str(k): sorted(v) for k, v in sorted(edges.items())},
        "taken": {str(k): sorted(v) for k, v in sorted(taken.items())},
        "imports": {str(k): sorted(v) for k, v in sorted(imports.items())},
        "calls": {str(g): [d[p] for p in sorted(d)] for g, d in sorted(calls.items())},
        "icalls": {str(k): v for k, v in sorted(icalls.items())},
        "sites": {str(k): v for k, v in sorted(sites.items())},
        "strings": sorted(strings),
    })
    return out


__all__ = ["summarize", "SUMMARY_VERSION", "SYSCALL_ARG_REGS", "FAMILY"]
