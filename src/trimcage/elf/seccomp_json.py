"""A minimal Docker-format seccomp profile from a syscall set and argument values.

The policy stage owns the richer generator; this one writes exactly the
allow-list of the static analysis.
"""

from __future__ import annotations

import itertools
from typing import Any, Iterable, Mapping

from trimcage.elf.arch import X86_64

MAX_COMBINATIONS = 64


def seccomp_profile(syscalls: Iterable[str], arguments: Mapping[str, Mapping[str, Iterable[int]]]
                    ) -> dict[str, Any]:
    """Allow exactly ``syscalls``; default ``SCMP_ACT_ERRNO`` (errno 1).

    A syscall with restricted arguments gets one rule per allowed value
    (``SCMP_CMP_EQ``) instead of a plain allow. When several arguments of one
    syscall are restricted, a rule is emitted per combination of values (the
    conditions of one rule are AND-ed) as long as there are at most
    :data:`MAX_COMBINATIONS`; beyond that only the argument with the fewest
    values is restricted. The output is deterministic.
    """
    plain: list[str] = []
    rules: list[dict[str, Any]] = []
    for sc in sorted(set(syscalls)):
        args = arguments.get(sc) or {}
        if not args:
            plain.append(sc)
            continue
        items = sorted((int(i), sorted({int(x) for x in v})) for i, v in args.items())
        if any(not vals for _, vals in items):
            plain.append(sc)  # no value known at all: do not guess, allow it
            continue
        combos = 1
        for _, vals in items:
            combos *= len(vals)
        if combos > MAX_COMBINATIONS:
            items = [min(items, key=lambda x: (len(x[1]), x[0]))]
        for combo in itertools.product(*[[(i, v) for v in vals] for i, vals in items]):
            rules.append({"names": [sc], "action": "SCMP_ACT_ALLOW",
                          "args": [{"index": i, "value": v, "op": "SCMP_CMP_EQ"} for i, v in combo]})
    syscalls_out: list[dict[str, Any]] = []
    if plain:
        syscalls_out.append({"names": plain, "action": "SCMP_ACT_ALLOW"})
    syscalls_out.extend(rules)
    return {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
            "architectures": [X86_64.seccomp_arch], "syscalls": syscalls_out}
