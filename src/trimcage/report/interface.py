"""The report stage's contract: the numbers of one trimcage run and ``report.json``.

A :class:`Report` says what was cut (image bytes, files, packages), what the
lock-down leaves reachable (:class:`SurfaceMetrics` of the generated profile
next to Docker's default) and how long each stage took. ``to_json`` has
stable, sorted keys; equal reports give byte-identical ``report.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from trimcage.errors import TrimcageError


class ReportError(TrimcageError):
    """A report cannot be made or written (names the data file or output)."""


CRITICAL_SYSCALLS = ("bind", "socket", "connect", "accept", "accept4", "listen", "setreuid",
                     "chmod", "mprotect", "recvfrom", "setuid", "setgid", "sendto", "execve",
                     "execveat", "clone", "fork", "ptrace")


@dataclass(frozen=True)
class SurfaceMetrics:
    """What one allow-list leaves reachable.

    ``allowed``: x86-64 syscalls allowed (of ``total``); ``restricted``: the
    allowed ones that only pass argument rules; ``cves_mitigated``: the CVE
    ids none of whose syscalls is allowed; ``payloads_broken``: how many
    payloads need a syscall that is not allowed; ``critical_allowed``: the
    security-critical syscalls still allowed (``critical_restricted`` those of
    them under argument rules); ``x86_abi``: whether the i386 ABI is on.
    """

    allowed: int
    total: int
    restricted: tuple[str, ...]
    cves_mitigated: tuple[str, ...]
    cves_total: int
    payloads_broken: int
    payloads_total: int
    critical_allowed: tuple[str, ...]
    critical_restricted: tuple[str, ...]
    x86_abi: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "critical_allowed": list(self.critical_allowed),
            "critical_restricted": list(self.critical_restricted),
            "critical_total": len(CRITICAL_SYSCALLS),
            "cves_mitigated": len(self.cves_mitigated),
            "cves_mitigated_ids": list(self.cves_mitigated),
            "cves_total": self.cves_total,
            "payloads_broken": self.payloads_broken,
            "payloads_total": self.payloads_total,
            "syscalls_allowed": self.allowed,
            "syscalls_restricted": list(self.restricted),
            "syscalls_total": self.total,
            "x86_abi": self.x86_abi,
        }


@dataclass(frozen=True)
class ImageStats:
    """Size of one image: uncompressed bytes of its files, file count, installed packages."""

    bytes: int
    files: int
    packages: int

    def to_json(self) -> dict[str, int]:
        return {"bytes": self.bytes, "files": self.files, "packages": self.packages}


@dataclass(frozen=True)
class Report:
    """Everything ``report.json`` and the terminal table show.

    ``syscalls_per_mode``: allowed syscall count of the profile each analysis
    mode gives (``static``, ``dynamic``, ``combined``; the ones computed).
    ``surface`` is the metrics of the profile shipped, ``docker`` those of
    Docker's default profile. ``argument_rules``: syscalls restricted by
    argument rules in the shipped profile. ``packages_removed`` doubles as
    the known-vulnerability estimate: it counts *packages* no longer in the
    image, not CVEs from a scanner. ``timings``: stage -> seconds.
    ``attacks``: verify's attack battery results (``attack``, ``blocked``),
    empty when verify did not run.
    """

    name: str
    before: ImageStats
    after: ImageStats
    packages_removed: tuple[str, ...]
    syscalls_per_mode: Mapping[str, int]
    surface: SurfaceMetrics
    docker: SurfaceMetrics
    argument_rules: tuple[str, ...]
    capabilities: tuple[str, ...]
    read_only_rootfs: bool
    mode: str = "combined"
    timings: Mapping[str, float] = field(default_factory=dict)
    attacks: tuple[Mapping[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The ``report.json`` object (sort keys when dumping; lists are ordered)."""
        def pct(a: int, b: int) -> float:
            return round(100.0 * (b - a) / b, 1) if b else 0.0

        return {
            "argument_rules": list(self.argument_rules),
            "attacks": [dict(a) for a in self.attacks],
            "capabilities": list(self.capabilities),
            "docker_default": self.docker.to_json(),
            "image": {
                "after": self.after.to_json(),
                "before": self.before.to_json(),
                "bytes_reduction_percent": pct(self.after.bytes, self.before.bytes),
                "files_reduction_percent": pct(self.after.files, self.before.files),
            },
            "known_vulnerability_estimate": {
                "packages_removed": len(self.packages_removed),
                "note": "count of packages removed from the image, not a CVE scan",
            },
            "mode": self.mode,
            "name": self.name,
            "packages_removed": list(self.packages_removed),
            "read_only_rootfs": self.read_only_rootfs,
            "surface": self.surface.to_json(),
            "syscalls_per_mode": dict(sorted(self.syscalls_per_mode.items())),
            "timings": {k: round(float(v), 3) for k, v in sorted(self.timings.items())},
        }
