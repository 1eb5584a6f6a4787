"""Parsing ``strace -f -qq`` output of a program started under bwrap (tests only)."""

from __future__ import annotations

import re

_LINE = re.compile(r"(\d+)\s+(?:<\.\.\. ([a-z0-9_]+) resumed>|([a-z0-9_]+)\()")


def observed_syscalls(text: str, exe: str) -> tuple[set[str], set[str]]:
    """(syscall names, successfully opened paths) of ``exe`` and every process started after
    its execve; bwrap's own set-up before the execve is left out. PIDs in strace output
    after bwrap's PID namespace is entered are namespace PIDs, so processes are taken by
    first appearance after the execve rather than by clone return values."""
    seen: set[int] = set()
    rec: set[int] = set()
    names: set[str] = set()
    opened: set[str] = set()
    started = False
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        pid = int(m.group(1))
        name = m.group(2) or m.group(3)
        if m.group(3) == "execve" and line[m.end():].startswith(f'"{exe}"'):
            started = True
            rec.add(pid)
        elif started and pid not in seen:
            rec.add(pid)
        seen.add(pid)
        if pid in rec:
            names.add(name)
            o = re.search(r'open(?:at)?\((?:AT_FDCWD, )?"([^"]+)".*\) = (\d+)', line)
            if o:
                opened.add(o.group(1))
    return names, opened
