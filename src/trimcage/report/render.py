"""Build a :class:`Report` from a policy, write ``report.json``, print the table."""

from __future__ import annotations

import os
import sys
from typing import Any, Iterable, Mapping

from trimcage.policy.interface import Policy
from trimcage.policy.seccomp import DEFAULT_CAPS
from trimcage.report.interface import ImageStats, Report, SurfaceMetrics
from trimcage.report.metrics import docker_default_metrics, profile_metrics
from trimcage.util import dump_pretty, write_atomic


def make_report(name: str, before: ImageStats, after: ImageStats, policy: Policy, *,
                packages_removed: Iterable[str] = (), syscalls_per_mode: Mapping[str, int] | None = None,
                timings: Mapping[str, float] | None = None,
                attacks: Iterable[Mapping[str, Any]] = ()) -> Report:
    """Compute the metrics of ``policy.seccomp`` and Docker's default into a Report."""
    surface = profile_metrics(policy.seccomp)
    per_mode = dict(syscalls_per_mode or {policy.mode: surface.allowed})
    return Report(
        name=name, before=before, after=after,
        packages_removed=tuple(sorted(set(packages_removed))),
        syscalls_per_mode=per_mode, surface=surface, docker=docker_default_metrics(),
        argument_rules=surface.restricted, capabilities=tuple(policy.capabilities),
        read_only_rootfs=policy.read_only_rootfs, mode=policy.mode,
        timings=dict(timings or {}),
        attacks=tuple({"attack": a["attack"], "blocked": bool(a["blocked"])} for a in attacks),
    )


def write_report(report: Report, path: str | os.PathLike[str]) -> None:
    """Write ``report.json`` atomically (sorted keys, final newline)."""
    write_atomic(path, dump_pretty(report.to_json()))


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]
        out.append("  ".join(cells).rstrip())
    return out


def render_table(report: Report, *, color: bool | None = None) -> str:
    """The terminal summary: aligned columns; ANSI bold headings only when ``color``
    (default: stdout is a tty and ``NO_COLOR`` is unset)."""
    if color is None:
        color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")

    def head(text: str) -> str:
        return f"\033[1m{text}\033[0m" if color else text

    b, a = report.before, report.after
    s: SurfaceMetrics = report.surface
    d: SurfaceMetrics = report.docker

    def pct(x: int, y: int) -> str:
        return f"-{100.0 * (y - x) / y:.1f}%" if y else "-"

    lines = [head(f"trimcage report: {report.name}"), ""]
    lines += _table([
        ("image", "before", "after", "change"),
        ("size", _size(b.bytes), _size(a.bytes), pct(a.bytes, b.bytes)),
        ("files", str(b.files), str(a.files), pct(a.files, b.files)),
        ("packages", str(b.packages), str(a.packages), pct(a.packages, b.packages)),
    ])
    lines.append("")
    lines += _table([
        ("lock-down", "trimcage", "docker default"),
        ("syscalls allowed", f"{s.allowed}/{s.total}", f"{d.allowed}/{d.total}"),
        ("argument-restricted", str(len(s.restricted)), str(len(d.restricted))),
        ("critical syscalls allowed", f"{len(s.critical_allowed)}/18", f"{len(d.critical_allowed)}/18"),
        ("kernel CVEs mitigated", f"{len(s.cves_mitigated)}/{s.cves_total}",
         f"{len(d.cves_mitigated)}/{d.cves_total}"),
        ("shellcode payloads broken", f"{s.payloads_broken}/{s.payloads_total}",
         f"{d.payloads_broken}/{d.payloads_total}"),
        ("32-bit x86 ABI", "on" if s.x86_abi else "off", "on" if d.x86_abi else "off"),
        ("capabilities", str(len(report.capabilities)), str(len(DEFAULT_CAPS))),
        ("read-only root", "yes" if report.read_only_rootfs else "no", "no"),
    ])
    lines.append("")
    if len(report.syscalls_per_mode) > 1:
        lines.append("syscalls per mode: " + ", ".join(
            f"{m} {n}" for m, n in sorted(report.syscalls_per_mode.items())))
    lines.append("capabilities: " + (", ".join(report.capabilities) or "none"))
    if s.critical_allowed:
        lines.append("critical syscalls still allowed: " + ", ".join(
            f"{c}*" if c in s.critical_restricted else c for c in s.critical_allowed)
            + ("  (* argument-restricted)" if s.critical_restricted else ""))
    lines.append(f"known-vulnerability estimate: {len(report.packages_removed)} packages removed "
                 "(a package count, not a CVE scan)")
    if report.attacks:
        blocked = sum(1 for x in report.attacks if x["blocked"])
        lines.append(f"attacks blocked: {blocked}/{len(report.attacks)}")
    if report.timings:
        lines.append("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in sorted(report.timings.items())))
    return "\n".join(lines) + "\n"
