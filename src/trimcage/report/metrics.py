"""Attack-surface metrics of a seccomp allow-list, from the reference data.

* kernel CVEs mitigated (``data/kernel-cve-syscalls.tsv``, 59): a CVE counts
  when none of its syscalls is allowed;
* shellcode payloads broken (``data/shellcode-syscalls.tsv``, 808): a payload
  is broken when at least one of its syscalls is not allowed; a name that is
  not an x86-64 syscall (``mmap2``, ``socketcall``...) is allowed only when
  the profile keeps the 32-bit x86 ABI and allows that name;
* which of the 18 security-critical syscalls stay allowed, and which of them
  only under argument rules.

Parsers are pure (text in, tuples out); the data files are read through
``importlib.resources``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Iterable, Mapping

from trimcage.policy.seccomp import (DEFAULT_CAPS, X86, X86_64, all_syscalls, docker_default_rules,
                                     profile_allowed)
from trimcage.report.interface import CRITICAL_SYSCALLS, ReportError, SurfaceMetrics


@dataclass(frozen=True)
class CveEntry:
    """One kernel CVE and the syscalls that reach it."""

    cve: str
    syscalls: tuple[str, ...]


@dataclass(frozen=True)
class Payload:
    """One shellcode payload and the syscalls it needs."""

    payload: str
    syscalls: tuple[str, ...]


def _rows(text: str, name: str, ncols: int) -> list[tuple[int, list[str]]]:
    rows: list[tuple[int, list[str]]] = []
    header = False
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        if not header:
            header = True
            continue
        cols = line.split("\t")
        if len(cols) < ncols or not cols[0] or not cols[1]:
            raise ReportError(f"{name} line {lineno}: expected {ncols} tab-separated columns")
        rows.append((lineno, cols))
    return rows


def _names(field: str) -> tuple[str, ...]:
    return tuple(sorted({n.strip() for n in field.split(",") if n.strip()}))


def parse_cve_table(text: str, name: str = "kernel-cve-syscalls.tsv") -> tuple[CveEntry, ...]:
    """Parse ``cve<TAB>syscalls<TAB>sources`` lines (``#`` comments, one header line)."""
    return tuple(CveEntry(cols[0], _names(cols[1])) for _, cols in _rows(text, name, 2))


def parse_shellcode_table(text: str, name: str = "shellcode-syscalls.tsv") -> tuple[Payload, ...]:
    """Parse ``payload<TAB>syscalls`` lines (``#`` comments, one header line)."""
    return tuple(Payload(cols[0], _names(cols[1])) for _, cols in _rows(text, name, 2))


@lru_cache(maxsize=1)
def cve_table() -> tuple[CveEntry, ...]:
    """The shipped CVE table (59 entries)."""
    return parse_cve_table(resources.files("trimcage").joinpath(
        "data/kernel-cve-syscalls.tsv").read_text())


@lru_cache(maxsize=1)
def shellcode_table() -> tuple[Payload, ...]:
    """The shipped payload table (808 entries)."""
    return parse_shellcode_table(resources.files("trimcage").joinpath(
        "data/shellcode-syscalls.tsv").read_text())


def surface_metrics(allowed: Iterable[str], *, restricted: Iterable[str] = (),
                    architectures: Iterable[str] = (X86_64,)) -> SurfaceMetrics:
    """Compute the metrics of an allow-list.

    ``allowed`` may hold i386-only names; they count only when
    ``architectures`` contains ``SCMP_ARCH_X86``.
    """
    x86 = X86 in set(architectures)
    known = all_syscalls()
    allowed_set = {n for n in allowed if n in known or x86}
    restricted_set = set(restricted) & allowed_set
    cves = tuple(c.cve for c in cve_table() if not any(s in allowed_set for s in c.syscalls))
    broken = sum(1 for p in shellcode_table() if any(s not in allowed_set for s in p.syscalls))
    crit = tuple(s for s in CRITICAL_SYSCALLS if s in allowed_set)
    return SurfaceMetrics(
        allowed=len(allowed_set & known), total=len(known),
        restricted=tuple(sorted(restricted_set)),
        cves_mitigated=cves, cves_total=len(cve_table()),
        payloads_broken=broken, payloads_total=len(shellcode_table()),
        critical_allowed=crit, critical_restricted=tuple(s for s in crit if s in restricted_set),
        x86_abi=x86,
    )


def profile_metrics(profile: Mapping[str, Any]) -> SurfaceMetrics:
    """Metrics of a default-deny Docker-format profile (e.g. ``Policy.seccomp``)."""
    allowed, restricted = profile_allowed(profile)
    return surface_metrics(allowed, restricted=restricted,
                           architectures=profile.get("architectures") or [X86_64])


def docker_default_metrics(caps: Iterable[str] = DEFAULT_CAPS) -> SurfaceMetrics:
    """Metrics of Docker's default profile on x86-64 with ``caps``.

    Docker keeps the i386 and x32 ABIs on x86-64 (its ``archMap``), so
    i386-only names it allows count as allowed.
    """
    allowed: set[str] = set()
    free: set[str] = set()
    for r in docker_default_rules(caps):
        if r["action"] == "SCMP_ACT_ALLOW":
            allowed.update(r["names"])
            if not r.get("args"):
                free.update(r["names"])
    return surface_metrics(allowed, restricted=allowed - free, architectures=(X86_64, X86))
