"""Pure parser of ``strace -f -q -X raw -y -o FILE`` output: text in, events out.

Every line starts with the pid (``-f -o FILE``). Recognised forms::

    PID name(ARGS) = RET[<path>] [ERRNO (text)]
    PID name(ARGS <unfinished ...>          (joined with its resumption)
    PID <... name resumed>ARGS) = RET
    PID --- SIGCHLD {...} ---
    PID +++ exited with N +++ / +++ killed by SIGKILL [(core dumped)] +++

Anything else (``strace:`` messages, a truncated last line) is skipped and
counted in :attr:`ParseStats.skipped`; nothing raises on odd input.
The helpers :func:`split_args`, :func:`parse_int`, :func:`parse_string`
and :func:`fd_path` decode the raw argument texts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Iterator

from trimcage.trace.interface import Exit, Signal, Syscall

_LINE = re.compile(r"^(\d+)\s+(.*)$")
_CALL = re.compile(r"^([a-z_0-9A-Z?]+)\((.*)$", re.S)
_RESUMED = re.compile(r"^<\.\.\. ([a-z_0-9A-Z?]+) resumed>(.*)$", re.S)
_SIG = re.compile(r"^--- (SIG[A-Z0-9+-]+|\{)")
_EXITED = re.compile(r"^\+\+\+ exited with (-?\d+) \+\+\+")
_KILLED = re.compile(r"^\+\+\+ killed by (SIG[A-Z0-9]+)")
_RET = re.compile(r"^\s*=\s*(-?\d+|0x[0-9a-f]+|\?)(<[^\n]*?>)?(?:\s+([A-Z][A-Z0-9_]+)\b)?")
UNFINISHED = " <unfinished ...>"


@dataclass
class ParseStats:
    lines: int = 0
    skipped: int = 0


def parse_lines(lines: Iterable[str], stats: ParseStats | None = None) -> Iterator[Syscall | Signal | Exit]:
    """Yield events in file order; unfinished calls are emitted when resumed.

    A call left unfinished at the end (process killed inside it) is emitted
    with ``ret=None`` so no event is lost.
    """
    stats = stats if stats is not None else ParseStats()
    pending: dict[int, tuple[str, str]] = {}
    for raw in lines:
        stats.lines += 1
        line = raw.rstrip("\n")
        m = _LINE.match(line)
        if not m:
            stats.skipped += 1
            continue
        pid, rest = int(m.group(1)), m.group(2)
        if rest.startswith("<..."):
            r = _RESUMED.match(rest)
            if not r:
                stats.skipped += 1
                continue
            name, tail = r.group(1), r.group(2)
            head_name, head = pending.pop(pid, (name, ""))
            ev = _finish(pid, head_name, head + tail)
            if ev is None:
                stats.skipped += 1
            else:
                yield ev
            continue
        if rest.startswith("---"):
            s = _SIG.match(rest)
            if s and s.group(1) != "{":
                yield Signal(pid, s.group(1))
            continue
        if rest.startswith("+++"):
            e = _EXITED.match(rest)
            if e:
                yield Exit(pid, int(e.group(1)))
                continue
            k = _KILLED.match(rest)
            if k:
                yield Exit(pid, None, k.group(1))
            continue
        c = _CALL.match(rest)
        if not c:
            stats.skipped += 1
            continue
        name, body = c.group(1), c.group(2)
        if body.endswith(UNFINISHED):
            pending[pid] = (name, body[: -len(UNFINISHED)])
            continue
        if body.endswith("<unfinished ...>"):
            pending[pid] = (name, body[: -len("<unfinished ...>")])
            continue
        ev = _finish(pid, name, body)
        if ev is None:
            stats.skipped += 1
        else:
            yield ev
    for pid, (name, head) in sorted(pending.items()):
        args = tuple(split_args(head.rstrip().rstrip(",")))
        yield Syscall(pid, name, args, None)


def parse_text(text: str) -> list[Syscall | Signal | Exit]:
    """Parse a whole strace log held in memory."""
    return list(parse_lines(text.splitlines()))


def _finish(pid: int, name: str, body: str) -> Syscall | None:
    """``body`` is everything after ``name(``: the args, ``)`` and ``= RET ...``."""
    end = _close_paren(body)
    if end < 0:
        return None
    args = tuple(split_args(body[:end]))
    rest = body[end + 1:]
    m = _RET.match(rest)
    if not m:
        return Syscall(pid, name, args, None)
    ret_s, deco, err = m.group(1), m.group(2), m.group(3)
    ret = None if ret_s == "?" else _ret_int(ret_s)
    ret_path = deco[1:-1] if deco else None
    errno = err if (err and (ret is None or ret < 0)) else None
    return Syscall(pid, name, args, ret, errno, ret_path)


def _ret_int(text: str) -> int | None:
    """A return value: decimal, ``0x`` hex, or octal as strace prints umask's (``022``)."""
    try:
        return int(text, 0)
    except ValueError:
        try:
            return int(text, 8)
        except ValueError:
            return None


def _scan(text: str, stop_at_close: bool) -> Iterator[tuple[int, str]]:
    """Yield (index, char) of top-level characters (outside strings/brackets/decorations)."""
    depth = 0
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            continue
        if ch == "<" and i > 0 and (text[i - 1].isdigit()):
            j = text.find(">", i)
            i = n if j < 0 else j + 1
            continue
        if ch == "/" and text.startswith("/*", i):
            j = text.find("*/", i)
            i = n if j < 0 else j + 2
            continue
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            if depth == 0:
                yield i, ch
                if stop_at_close:
                    return
            depth -= 1
        elif depth == 0:
            yield i, ch
        i += 1


def _close_paren(body: str) -> int:
    for i, ch in _scan(body, True):
        if ch == ")":
            return i
    return -1


def split_args(text: str) -> list[str]:
    """Split an argument list on top-level commas; each part stripped."""
    out: list[str] = []
    start = 0
    for i, ch in _scan(text, False):
        if ch == ",":
            out.append(text[start:i].strip())
            start = i + 1
    last = text[start:].strip()
    if last or out:
        out.append(last)
    return out


def parse_int(arg: str) -> int | None:
    """Decode a raw numeric argument: ``0x1|0x80000``, ``-100</x>``, ``htons(0)``, ``17``.

    Returns None when the text is not numeric (a pointer struct, a string...).
    """
    a = arg.strip()
    if "=" in a and not a.startswith("{"):
        a = a.split("=", 1)[1]
    lt = a.find("<")
    if lt > 0:
        a = a[:lt]
    if a.startswith("htons(") and a.endswith(")"):
        a = a[6:-1]
    total = 0
    try:
        for part in a.split("|"):
            part = part.strip()
            if not part:
                continue
            total |= int(part, 0)
    except ValueError:
        return None
    return total


def fd_path(arg: str) -> str | None:
    """The ``-y`` path decorating an fd argument (``3</etc>`` -> ``/etc``), or None."""
    lt = arg.find("<")
    if lt <= 0 or not arg.endswith(">"):
        return None
    p = arg[lt + 1:-1]
    if p.endswith(" (deleted)"):
        p = p[: -len(" (deleted)")]
    return p


_ESC = {"n": 10, "t": 9, "r": 13, "v": 11, "f": 12, "a": 7, "b": 8, "\\": 92, '"': 34}


def parse_string(arg: str) -> str | None:
    """Decode a quoted strace string (C escapes) to text (surrogateescape); None if unquoted.

    A truncated string (``"abc"...``) decodes to its visible part.
    """
    a = arg.strip()
    if not a.startswith('"'):
        return None
    out = bytearray()
    i, n = 1, len(a)
    while i < n:
        ch = a[i]
        if ch == '"':
            break
        if ch == "\\" and i + 1 < n:
            nx = a[i + 1]
            if nx == "x":
                out.append(int(a[i + 2:i + 4], 16))
                i += 4
                continue
            if nx.isdigit():
                j = i + 1
                while j < n and j < i + 4 and a[j] in "01234567":
                    j += 1
                out.append(int(a[i + 1:j], 8) & 0xFF)
                i = j
                continue
            out.append(_ESC.get(nx, ord(nx)))
            i += 2
            continue
        out.extend(ch.encode("utf-8", "surrogateescape"))
        i += 1
    return out.decode("utf-8", "surrogateescape")


def parse_struct(arg: str) -> dict[str, str]:
    """Split ``{a=1, b="x", c={...}}`` into its top-level ``key -> raw value`` texts."""
    a = arg.strip()
    if a.startswith("{"):
        end = _close_paren_any(a)
        a = a[1:end]
    out: dict[str, str] = {}
    for part in split_args(a):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def _close_paren_any(a: str) -> int:
    for i, ch in _scan(a[1:], True):
        if ch in ")]}":
            return i + 1
    return len(a)


def parse_string_list(arg: str) -> list[str]:
    """Decode ``["a", "b"]`` (argv) to a list; elided tails (``...``) are dropped."""
    a = arg.strip()
    if not a.startswith("["):
        return []
    return [s for s in (parse_string(p) for p in split_args(a[1:-1])) if s is not None]
