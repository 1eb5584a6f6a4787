"""Whole-program reachability over per-object summaries (see ``summary.py``).

One program is an executable plus the objects the loader maps for it, in
symbol lookup order: the executable, then DT_NEEDED breadth first, then the
interpreter, then dlopen targets (whose exported functions are all roots,
since ``dlsym`` names are not known statically). An imported name binds to
the first object defining it (interposition); all versions of the name in
that object are taken.

Values of registers that a function receives from its callers (``params``)
are resolved at every reachable call site, up to :data:`MAX_DEPTH` levels;
a function whose address is taken or that is a root has unknown callers, so
such values are unknown.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable

from trimcage.elf.arch import X86_64, Arch

MAX_DEPTH = 6
UNRESOLVED_POLICY = (
    "a reachable syscall site whose number cannot be determined (not a constant in the "
    "function, not a parameter with constant values at every reachable call site) adds no "
    "syscall to the allow-list; it is counted per object and listed here. Arguments whose "
    "value is unknown at any reachable site stay unrestricted (open_arguments)."
)
VDSO = {"clock_gettime": ("clock_gettime",), "__clock_gettime": ("clock_gettime",),
        "gettimeofday": ("gettimeofday",), "__gettimeofday": ("gettimeofday",),
        "time": ("time",), "getcpu": ("getcpu",), "sched_getcpu": ("getcpu",),
        "clock_getres": ("clock_getres",)}


@dataclass
class LoadedObject:
    path: str
    summary: dict[str, Any]
    dlopened: bool = False
    entry: bool = False


@dataclass
class ProgramResult:
    syscalls: set[str] = field(default_factory=set)
    per_object: dict[str, set[str]] = field(default_factory=dict)
    unresolved: dict[str, list[str]] = field(default_factory=dict)
    # (syscall, arg index) -> (values, first blocking reason or None)
    args: dict[tuple[str, int], tuple[set[int], str | None]] = field(default_factory=dict)


def _d(s: dict[str, Any], key: str, f: int) -> Any:
    return s[key].get(str(f), ())


class Program:
    """Reachability and syscall facts of one program (see module docstring)."""

    def __init__(self, objects: list[LoadedObject], arch: Arch = X86_64):
        self.objs = objects
        self.arch = arch
        self._bind: dict[str, list[tuple[int, int]]] = {}
        self.reach: set[tuple[int, int]] = set()
        self.indirect: set[tuple[int, int]] = set()

    def bind(self, name: str) -> list[tuple[int, int]]:
        """The (object, function) nodes an imported ``name`` binds to ([] if undefined)."""
        if name not in self._bind:
            base = name.split("@", 1)[0]
            out: list[tuple[int, int]] = []
            for oi, o in enumerate(self.objs):
                idxs = o.summary["exports"].get(base)
                if idxs:
                    out = [(oi, f) for f in idxs]
                    break
            self._bind[name] = out
        return self._bind[name]

    def walk(self) -> None:
        todo: deque[tuple[int, int]] = deque()

        def add(n: tuple[int, int], indirect: bool) -> None:
            if indirect:
                self.indirect.add(n)
            if n not in self.reach:
                self.reach.add(n)
                todo.append(n)

        for oi, o in enumerate(self.objs):
            s = o.summary
            for f in s["roots"]:
                # Go: every function is taken as reachable (sound, imprecise); callers
                # found by direct calls still supply parameter values (syscall numbers)
                add((oi, f), not s.get("is_go"))
            for name in s["data_imports"]:
                for n in self.bind(name):
                    add(n, True)
            if o.dlopened or (o.entry and s["kind"] in ("shared",)):
                for idxs in s["exports"].values():
                    for f in idxs:
                        add((oi, f), True)
        while todo:
            oi, f = todo.popleft()
            s = self.objs[oi].summary
            for g in _d(s, "edges", f):
                add((oi, g), False)
            for g in _d(s, "taken", f):
                add((oi, g), True)
            for name in _d(s, "imports", f):
                for n in self.bind(name):
                    add(n, True)
            for _addr, name, _regs in _d(s, "icalls", f):
                for n in self.bind(name):
                    add(n, False)
        # call sites per callee, for parameter resolution
        self.sites_of: dict[tuple[int, int], list[tuple[int, int, int, dict[str, Any]]]] = {}
        for oi, f in self.reach:
            s = self.objs[oi].summary
            for addr, g, regs in _d(s, "calls", f):
                self.sites_of.setdefault((oi, g), []).append((oi, f, addr, regs))
            for addr, name, regs in _d(s, "icalls", f):
                for n in self.bind(name):
                    self.sites_of.setdefault(n, []).append((oi, f, addr, regs))
        self._memo: dict[tuple[int, int, str], tuple[frozenset[int], str | None]] = {}

    def resolve(self, val: list[Any], oi: int, f: int, where: str, depth: int = 0
                ) -> tuple[frozenset[int], str | None]:
        """Constants ``val`` can take in function ``f`` of object ``oi``; and a reason if unknown."""
        consts, params, unknown = val
        if unknown:
            return frozenset(consts), f"{unknown} ({where})"
        out = set(consts)
        first = None
        for r in params:
            vals, why = self._param(oi, f, r, depth)
            out |= vals
            first = first or why
        return frozenset(out), first

    def _param(self, oi: int, f: int, reg: str, depth: int) -> tuple[frozenset[int], str | None]:
        key = (oi, f, reg)
        if key in self._memo:
            return self._memo[key]
        self._memo[key] = (frozenset(), None)      # recursion: contributes nothing new
        o = self.objs[oi]
        fname = f"{o.path}+{o.summary['funcs'][f]:#x}"
        if depth >= MAX_DEPTH:
            res: tuple[frozenset[int], str | None] = (frozenset(), f"parameter {reg} of {fname}: too deep")
        elif (oi, f) in self.indirect:
            res = (frozenset(), f"parameter {reg} of {fname}: address taken or called indirectly")
        else:
            out: set[int] = set()
            why = None if self.sites_of.get((oi, f)) else f"parameter {reg} of {fname}: no call site found"
            for coi, cf, addr, regs in sorted(self.sites_of.get((oi, f), ()), key=lambda x: (x[0], x[2])):
                where = f"{self.objs[coi].path}+{addr:#x}"
                if reg not in regs:
                    why = why or f"parameter {reg} of {fname} unknown at call site {where}"
                    continue
                vals, w = self.resolve(regs[reg], coi, cf, where, depth + 1)
                out |= vals
                if w and not why:
                    why = f"parameter {reg} of {fname} unknown at call site {where}: {w}"
            res = (frozenset(out), why)
        self._memo[key] = res
        return res

    def syscall_facts(self, tracked: dict[str, tuple[int, ...]]) -> ProgramResult:
        """Syscalls, unresolved sites and tracked argument values of the reachable code."""
        res = ProgramResult()
        names = self.arch.syscalls
        for oi, f in sorted(self.reach):
            o = self.objs[oi]
            for fn in o.summary["names"].get(str(f), ()):
                for sc in VDSO.get(fn, ()):
                    res.syscalls.add(sc)
                    res.per_object.setdefault(o.path, set()).add(sc)
            for addr, nr, args in _d(o.summary, "sites", f):
                where = f"{o.path}+{addr:#x}"
                nrs, why = self.resolve(nr, oi, f, where)
                if why or not nrs:
                    res.unresolved.setdefault(o.path, []).append(f"{where}: {why or 'no value'}")
                for n in sorted(nrs):
                    sc = names.get(n)
                    if sc is None:
                        continue
                    res.syscalls.add(sc)
                    res.per_object.setdefault(o.path, set()).add(sc)
                    for i in tracked.get(sc, ()):
                        vals, awhy = self.resolve(args[i], oi, f, where)
                        old_vals, old_why = res.args.get((sc, i), (set(), None))
                        res.args[(sc, i)] = (old_vals | set(vals), old_why or awhy)
        return res


def merge(results: Iterable[ProgramResult]) -> ProgramResult:
    out = ProgramResult()
    for r in results:
        out.syscalls |= r.syscalls
        for k, v in r.per_object.items():
            out.per_object.setdefault(k, set()).update(v)
        for k, v in r.unresolved.items():
            lst = out.unresolved.setdefault(k, [])
            lst.extend(x for x in v if x not in lst)
        for k, (vals, why) in r.args.items():
            ov, ow = out.args.get(k, (set(), None))
            out.args[k] = (ov | vals, ow or why)
    return out
