"""Drive the runs of ``verify``: original, slim under policy, attack battery.

Runs go through the trace stage's runtime (embedded, docker or podman), so
verification sees exactly what a user's engine would do with the policy.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from trimcage.errors import TrimcageError
from trimcage.trace.interface import Probe, RunOptions, Target
from trimcage.trace.probes import NetNS, default_probes, wait_ready
from trimcage.trace.runtime import start
from trimcage.util import sha256_bytes
from trimcage.trace.config import process_for
from trimcage.trace.resolve import walk_in_root
from trimcage.verify.attacks import ATTACK_NAMES, ATTACKS, parse_results, prober_path, prober_profile
from trimcage.verify.compare import compare, missing_files
from trimcage.verify.interface import RunObservation, VerifyError, VerifyResult

PROBER_MOUNT = "/.trimcage-prober"  # a file at the top: directories bwrap creates are root-only
LOG_KEEP = 64 * 1024


@dataclasses.dataclass(frozen=True)
class VerifyOptions:
    """How to verify: probes (empty = the exposed ports, or the output of a job),
    the policy the slim image runs under, the runtime, and timeouts."""

    probes: tuple[Probe, ...] = ()
    seccomp: str | None = None
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    read_only: bool = False
    user: str | None = None
    runtime: str = "embedded"
    ready_timeout: float = 30.0
    job_timeout: float = 120.0
    attacks: tuple[str, ...] = ATTACK_NAMES


def observe(target: Target, run_opts: RunOptions, probes: Sequence[Probe], opts: VerifyOptions
            ) -> tuple[RunObservation, tuple[Probe, ...]]:
    """Run ``target`` once, probe it, stop it; return what was seen and the probes used.

    With no probes and exposed ports, the ports decide (as ``trace`` does); with
    neither, the run is a job: its exit code and output digest are the outcome.
    """
    try:
        with start(target, run_opts, capture=True) as c:
            exited = lambda: c.poll() is not None  # noqa: E731
            used = tuple(probes)
            results: list[Any] = []
            with NetNS(c.net_ns) as ns:
                if not used and c.process.ports:
                    try:
                        used = tuple(default_probes(c.process.ports, ns, opts.ready_timeout, exited))
                    except TrimcageError:
                        used = tuple(Probe("tcp", f"127.0.0.1:{p}") for p, proto in c.process.ports
                                     if proto == "tcp")
                if used:
                    results = [r.to_json() for r in wait_ready(used, ns, c, opts.ready_timeout, exited)]
                else:
                    c.wait(opts.job_timeout)
            alive = c.poll() is None
            code = c.stop() if alive else c.poll()
            out = c.output()
            if not used:
                results = [{"probe": {"exec": "entrypoint"}, "ok": code == 0, "status": code,
                            "digest": sha256_bytes(out), "error": None}]
            return RunObservation(tuple(results), alive, None if alive else code,
                                  out[-LOG_KEEP:].decode("utf-8", "replace")), used
    except TrimcageError as e:
        return RunObservation((), False, None, "", str(e)), tuple(probes)


def own_program_attacks(target: Target, names: Sequence[str]) -> list[str]:
    """Exec attacks whose program is the application's own entrypoint (python3 for a
    Python app): running it is what the image is for, not an attack."""
    proc = process_for(target, RunOptions())
    exe = proc.argv[0]
    path_dirs = next((e.split("=", 1)[1] for e in proc.env if e.startswith("PATH=")), "/usr/bin:/bin").split(":")
    cands = [exe] if "/" in exe else [posixpath.join(d or "/", exe) for d in path_dirs]
    real = next((r for c in cands if (r := walk_in_root(target.rootfs, c)) is not None), None)
    by_name = {a.name: a for a in ATTACKS}
    return [n for n in names if real and by_name.get(n) and by_name[n].path
            and walk_in_root(target.rootfs, by_name[n].path) == real]


def run_attacks(target: Target, run_opts: RunOptions, opts: VerifyOptions) -> list[dict[str, Any]]:
    """Run the attack battery inside ``target`` under the slim policy; one dict per attack."""
    prober = prober_path()
    seccomp = run_opts.seccomp
    with tempfile.TemporaryDirectory(prefix="trimcage-verify-") as tmp:
        if seccomp and seccomp != "unconfined":
            profile = json.loads(Path(seccomp).read_text())
            widened = Path(tmp) / "prober-seccomp.json"
            widened.write_text(json.dumps(prober_profile(profile)))
            seccomp = str(widened)
        ropts = dataclasses.replace(run_opts, entrypoint=(PROBER_MOUNT,), cmd=tuple(opts.attacks),
                                    seccomp=seccomp, binds=((str(prober), PROBER_MOUNT),))
        with start(target, ropts, capture=True) as c:
            if c.wait(120) is None:
                c.stop()
                raise VerifyError(f"{target.ref}: the attack battery did not finish within 120 s")
            text = c.output().decode("utf-8", "replace")
    lines = "\n".join(line for line in text.splitlines() if line.startswith("{"))
    results = [dataclasses.asdict(r) for r in parse_results(lines)]
    if len(results) != len(opts.attacks):  # cannot vouch for what did not run: a failed check
        results.append({"attack": "battery", "blocked": False, "errno": "",
                        "detail": f"only {len(results)} of {len(opts.attacks)} attacks ran: {text.strip()[-200:]}"})
    return results


def verify(original: Target, slim: Target, opts: VerifyOptions) -> VerifyResult:
    """Compare ``original`` (run as is) with ``slim`` (run under the policy in ``opts``)
    using the same probes, then run the attack battery in ``slim``."""
    timings: dict[str, float] = {}
    base = RunOptions(runtime=opts.runtime)
    t = time.monotonic()
    before, probes = observe(original, base, opts.probes, opts)
    timings["original_s"] = round(time.monotonic() - t, 3)
    if before.error:
        raise VerifyError(f"the original image does not run: {before.error}")
    policy = dataclasses.replace(base, seccomp=opts.seccomp, cap_add=opts.cap_add, cap_drop=opts.cap_drop,
                                 read_only=opts.read_only, user=opts.user)
    t = time.monotonic()
    after, _ = observe(slim, policy, probes, opts)
    timings["slim_s"] = round(time.monotonic() - t, 3)
    diffs = compare(before, after)
    t = time.monotonic()
    if not opts.read_only:  # the policy leaves the root writable (the app writes there): not an attack
        opts = dataclasses.replace(opts, attacks=tuple(a for a in opts.attacks if a != "write_root"))
    skipped = own_program_attacks(slim, opts.attacks)
    opts = dataclasses.replace(opts, attacks=tuple(a for a in opts.attacks if a not in skipped))
    attacks = run_attacks(slim, policy, opts) if not after.error else []
    timings["attacks_s"] = round(time.monotonic() - t, 3)
    missing = [f for f in missing_files(after.log + "\n" + (after.error or ""))
               if f not in missing_files(before.log)]
    return VerifyResult(equivalent=not diffs, differences=tuple(diffs), attacks=tuple(attacks),
                        missing_files=tuple(missing), original=before, slim=after, runtime=opts.runtime,
                        timings=timings, skipped_attacks=tuple(skipped))


def summary_rows(result: VerifyResult) -> list[tuple[str, str, str]]:
    """(check, verdict, detail) rows for the terminal table."""
    rows: list[tuple[str, str, str]] = []
    for a, b in zip(result.original.probes, result.slim.probes):
        p: Mapping[str, Any] = a.get("probe") or {}
        name = " ".join(f"{k} {v}" for k, v in p.items() if k in ("http", "https", "tcp", "cmd", "exec"))
        same = a.get("ok") == b.get("ok") and a.get("status") == b.get("status") and a.get("digest") == b.get("digest")
        rows.append((f"probe {name}", "same" if same else "DIFFERS",
                     f"{a.get('status')} / {b.get('status')}" + (f" ({b.get('error')})" if b.get("error") else "")))
    for d in result.differences:
        if d.what != "probe":
            rows.append((d.what, "DIFFERS", d.detail))
    for at in result.attacks:
        rows.append((f"attack {at['attack']}", "blocked" if at["blocked"] else "OPEN",
                     f"{at.get('errno') or ''} {at.get('detail') or ''}".strip()))
    for name in result.skipped_attacks:
        rows.append((f"attack {name}", "skipped", "its program is the application's own entrypoint"))
    return rows
