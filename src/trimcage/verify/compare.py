"""Compare two run observations; find the files a failing run says are missing. Pure."""

from __future__ import annotations

import re
from typing import Iterable

from trimcage.verify.interface import Difference, RunObservation

#: Log patterns that name a missing file, each with one group for the name.
MISSING_PATTERNS = (
    re.compile(r"error while loading shared libraries: ([^\s:]+): cannot open shared object file"),
    re.compile(r'open\(\) "([^"]+)" failed \(2: No such file or directory\)'),
    re.compile(r"(?:can't|cannot|could not|unable to) (?:open|load|find|read|stat|exec)\w*[^/\n]*?['\"`]?(/[^\s'\"`:,)]+)",
               re.IGNORECASE),
    re.compile(r"(/[^\s'\"`:,()]+)['\"`]?: No such file or directory"),
    re.compile(r"No such file or directory[^/\n]*?['\"`]?(/[^\s'\"`:,)]+)"),
    re.compile(r"exec(?:ve)?[^/\n]*(/[^\s'\"`:,)]+)[^\n]*(?:not found|No such file)", re.IGNORECASE),
    re.compile(r"ModuleNotFoundError: No module named '([^']+)'"),
)
#: Log patterns that show a denied operation (policy too tight), not a missing file.
DENIED_PATTERNS = (re.compile(r"Operation not permitted"), re.compile(r"Bad system call"))


def missing_files(log: str) -> list[str]:
    """Return the file names a log says are missing, in order of first mention."""
    found: list[str] = []
    for pattern in MISSING_PATTERNS:
        for m in pattern.finditer(log):
            name = m.group(1).rstrip(".")
            if name not in found:
                found.append(name)
    return found


def denied_lines(log: str) -> list[str]:
    """Lines of ``log`` that report an operation the policy denied."""
    return [line.strip() for line in log.splitlines() if any(p.search(line) for p in DENIED_PATTERNS)]


def _shape(line: str) -> str:
    """A log line without what changes from run to run (times, pids, counters)."""
    return re.sub(r"\d+", "#", line)


def _probe_name(p: dict) -> str:
    probe = p.get("probe") or {}
    return ", ".join(f"{k} {v}" for k, v in probe.items() if k in ("http", "https", "tcp", "cmd", "exec")) or "probe"


def compare(original: RunObservation, slim: RunObservation,
            ignore_log_lines: Iterable[str] = ()) -> list[Difference]:
    """Return how ``slim`` differs from ``original``; empty when equivalent.

    Compared: the run starting at all, each probe's pass/fail, HTTP status or
    command exit code, and body/reply/output digest; the main process staying
    up or exiting (and its exit code); new missing-file or denied-call lines.
    """
    diffs: list[Difference] = []
    if slim.error and not original.error:
        diffs.append(Difference("start", slim.error))
    if len(original.probes) != len(slim.probes):
        diffs.append(Difference("probes", f"{len(original.probes)} probes ran on the original, "
                                          f"{len(slim.probes)} on the slim image"))
    for a, b in zip(original.probes, slim.probes):
        name = _probe_name(a)
        if bool(a.get("ok")) != bool(b.get("ok")):
            diffs.append(Difference("probe", f"{name}: original {'passed' if a.get('ok') else 'failed'}, "
                                             f"slim {'passed' if b.get('ok') else 'failed'}"
                                             + (f" ({b.get('error')})" if b.get("error") else "")))
            continue
        if a.get("status") != b.get("status"):
            diffs.append(Difference("probe", f"{name}: status {a.get('status')} vs {b.get('status')}"))
        if a.get("digest") != b.get("digest"):
            diffs.append(Difference("probe", f"{name}: content differs ({a.get('digest')} vs {b.get('digest')})"))
    if original.alive != slim.alive:
        state = lambda o: "running" if o.alive else f"exited ({o.exit_code})"  # noqa: E731
        diffs.append(Difference("process", f"original {state(original)}, slim {state(slim)}"))
    elif not original.alive and original.exit_code != slim.exit_code:
        diffs.append(Difference("process", f"exit code {original.exit_code} vs {slim.exit_code}"))
    ignore = set(ignore_log_lines)
    new_missing = [f for f in missing_files(slim.log) if f not in missing_files(original.log) and f not in ignore]
    for f in new_missing:
        diffs.append(Difference("missing", f"slim run cannot find {f}"))
    before = {_shape(line) for line in denied_lines(original.log)}
    new_denied = [line for line in denied_lines(slim.log) if _shape(line) not in before]
    for line in new_denied[:5]:
        diffs.append(Difference("denied", line[:300]))
    return diffs
