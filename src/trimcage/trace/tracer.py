"""Trace one image: start it under strace, probe it, stop it, build trace.json.

The strace log is written by strace inside the container to a bind-mounted
host directory and parsed after strace exited (it flushes on exit), so no
event is lost; the container is stopped with its stop signal, which lets
strace see every process exit before the namespace goes away.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from trimcage.trace.interface import Probe, ProbeError, ProbeResult, RunOptions, Target, TraceError
from trimcage.trace.model import TraceBuilder
from trimcage.trace.parse_strace import ParseStats, parse_lines
from trimcage.trace.resolve import enrich
from trimcage.trace.probes import NetNS, default_probes, run_probe, wait_ready
from trimcage.trace.runtime import start
from trimcage.util import atomic_path, dump_pretty, sha256_bytes

OUTPUT_KEEP = 64 * 1024


@dataclasses.dataclass(frozen=True)
class TraceOptions:
    """``probes`` empty: wait for the exposed ports (or the exit of a job).
    ``ready_timeout``: seconds for all probes to pass; ``duration``: extra
    observation seconds after them; ``job_timeout``: how long a job (no
    ports, no probes) may run before it is stopped."""

    probes: tuple[Probe, ...] = ()
    ready_timeout: float = 30.0
    duration: float = 2.0
    job_timeout: float = 300.0


class _LineCounter:
    """Lines of a growing log, counting only the bytes added since the last call."""

    def __init__(self) -> None:
        self.offset = 0
        self.lines = 0

    def __call__(self, path: Path | None) -> int:
        try:
            with open(path, "rb") as f:  # type: ignore[arg-type]
                f.seek(self.offset)
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    self.lines += chunk.count(b"\n")
                    self.offset += len(chunk)
        except (OSError, TypeError):
            pass
        return self.lines


def trace(target: Target, run_opts: RunOptions, opts: TraceOptions,
          progress: Callable[[str, int], None] | None = None, keep_log: Path | None = None) -> dict[str, Any]:
    """Run, probe and trace ``target``; return the trace document (trace.json content).

    Raises ProbeError (exit 3) when a probe never passes or a service exits
    before it is ready, TraceError for anything else; the container is gone
    either way.
    """
    ropts = dataclasses.replace(run_opts, trace=True)
    say = progress or (lambda phase, n: None)
    t0 = time.monotonic()
    results: list[ProbeResult] = []
    _count_lines = _LineCounter()
    with start(target, ropts, capture=True) as c:
        exited = lambda: c.poll() is not None  # noqa: E731
        say("starting", 0)
        with NetNS(c.net_ns) as ns:
            probes: Sequence[Probe] = opts.probes
            job = False
            if not probes and c.process.ports:
                say("waiting for ports", _count_lines(c.trace_log))
                try:
                    probes = default_probes(c.process.ports, ns, opts.ready_timeout, exited)
                except ProbeError as e:
                    raise ProbeError(f"{target.ref}: {e}{_why(c)}") from None
            if probes:
                say("probing", _count_lines(c.trace_log))
                results = wait_ready(probes, ns, c, opts.ready_timeout, exited)
                bad = [r for r in results if not r.ok]
                if bad:
                    r = bad[0]
                    state = "exited before it was ready" if exited() else f"not ready after {opts.ready_timeout:g}s"
                    raise ProbeError(f"{target.ref}: probe {r.probe.kind} {r.probe.target} failed, "
                                     f"{state}: {r.error}{_why(c)}")
                if opts.duration > 0:
                    end = time.monotonic() + opts.duration
                    while time.monotonic() < end and not exited():
                        say("observing", _count_lines(c.trace_log))
                        time.sleep(min(0.5, max(0.0, end - time.monotonic())))
                    # probes once more so the observed traffic is part of the trace
                    if not exited():
                        results = [run_probe(r.probe, ns, c) for r in results]
            else:
                job = True
                say("running job", 0)
                if c.wait(opts.job_timeout) is None:
                    say("stopping", 0)
        say("stopping", _count_lines(c.trace_log))
        exit_code = c.stop()
        output = c.output()
        log = c.trace_log
        if log is None or not log.exists():
            raise TraceError(f"{target.ref}: strace wrote no log (exit {exit_code}){_why(c)}")
        say("parsing", _count_lines(log))
        proc = c.process
        builder = TraceBuilder(workdir=proc.cwd, uid=proc.uid, gid=proc.gid)
        stats = ParseStats()
        with open(log, encoding="utf-8", errors="surrogateescape") as f:
            for ev in parse_lines(f, stats):
                builder.add(ev)
        log_size = log.stat().st_size
        if keep_log is not None:
            keep_log.parent.mkdir(parents=True, exist_ok=True)
            c.keep_trace(keep_log)  # type: ignore[attr-defined]
        if not builder.started:
            raise TraceError(f"{target.ref}: the entrypoint never started{_why(c)}")
    doc = builder.result()
    enrich(doc, target.rootfs)
    doc.update({
        "image": target.ref,
        "runtime": ropts.runtime,
        "argv": list(proc.argv),
        "user": {"uid": proc.uid, "gid": proc.gid},
        "probes": [r.to_json() for r in results],
        "kind": "job" if job else "service",
        "exit_code": exit_code,
        "output": output[:OUTPUT_KEEP].decode("utf-8", "replace"),
        "output_digest": sha256_bytes(output),
        "duration_s": round(time.monotonic() - t0, 3),
        "strace": {"log_bytes": log_size, "lines": stats.lines, "skipped": stats.skipped},
    })
    return doc


def _why(c: Any) -> str:
    lines = c.output().decode("utf-8", "replace").strip().splitlines()
    return f" (last output: {lines[-1][:160]})" if lines else ""


def write_trace(doc: dict[str, Any], out_dir: Path) -> Path:
    """Write ``out_dir/trace.json`` atomically; return its path."""
    dest = Path(out_dir) / "trace.json"
    with atomic_path(dest) as tmp:
        tmp.write_text(dump_pretty(doc), encoding="utf-8", errors="surrogateescape")
    return dest


class Progress:
    """Phase, elapsed seconds and events so far on one stderr line (terminals only)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.t0 = time.monotonic()

    def __call__(self, phase: str, events: int) -> None:
        if self.enabled:
            sys.stderr.write(f"\r\x1b[K{phase} {time.monotonic() - self.t0:5.1f}s {events} events")
            sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
