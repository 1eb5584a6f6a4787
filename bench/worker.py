"""One benchmark measurement, run in its own process by ``bench/run.py``.

    python3 bench/worker.py SPEC.json RESULT.json

``SPEC.json`` is ``{"stage": ..., "ref": "oci-archive:...", "probes": [...],
"kind": "service"|"job", ...}``; the store is ``$TRIMCAGE_HOME`` (the parent
picks a fresh or a warm one). The result is one JSON object with the
stage's numbers and ``seconds`` (the timed part only). Any exception is
written as ``{"error": "..."}`` and the exit status is 1; the parent reads
peak memory of this process from ``wait4``.

Stages:

* ``analyze``: read, flatten, extract (``prepare_s``), then
  ``analyze_image`` (``seconds``): static syscalls, argument rules, files;
* ``trace``: the traced run with the sample's probes (``seconds``); writes
  the trace document to ``spec["trace_out"]`` and computes the lower bound
  of the slim image (what the trace saw, plus loaders, links, parent dirs);
* ``build``: ``pipeline.build`` in ``spec["mode"]``, no verify
  (``trace_file`` reused when given); sizes, profile, protection metrics;
* ``verify``: ``verify`` of the slim image in ``spec["output"]`` against
  the original, under its policy (``seconds`` = the verify call only);
* ``overhead``: latency of ``requests`` probe calls against the running
  service untraced and traced (a job: wall time of ``runs`` runs each).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any


def _probes(spec: dict[str, Any]) -> tuple:
    from trimcage.trace.probes import probe_from_json

    return tuple(probe_from_json(p, f"probe {i}") for i, p in enumerate(spec.get("probes") or ()))


def _prepare(ref: str):
    from trimcage.image.api import read_image
    from trimcage.image.extract import rootfs
    from trimcage.image.flatten import flatten
    from trimcage.image.store import open_store

    store = open_store()
    image = read_image(ref, store)
    index = flatten(image, store)
    root = rootfs(image, store)
    return store, image, index, Path(root)


def _target(image, root: Path, ref: str):
    from trimcage.trace.interface import Target

    return Target(str(root), dict(image.runtime_config), ref, image)


# --- lower bound ------------------------------------------------------------------


def _walk(index, path: str, keep: set[str], max_links: int = 40) -> str | None:
    """Resolve ``path`` in ``index``; when it exists, add every parent dir and symlink
    passed, and the final entry, to ``keep`` and return the final path (else None)."""
    import posixpath

    seen: set[str] = set()
    todo = [c for c in path.split("/") if c and c != "."]
    cur = "/"
    links = 0
    while todo:
        comp = todo.pop(0)
        if comp == "..":
            cur = posixpath.dirname(cur) or "/"
            continue
        nxt = posixpath.join(cur, comp)
        e = index.get(nxt)
        if e is None:
            return None
        seen.add(nxt)
        if e.type == "symlink" and e.link is not None:
            links += 1
            if links > max_links:
                return None
            target = e.link
            if target.startswith("/"):
                cur = "/"
            todo = [c for c in target.split("/") if c and c != "."] + todo
            continue
        cur = nxt
    keep |= seen  # only paths that exist: a missing file adds nothing
    return cur


def _interp(host: Path) -> str | None:
    try:
        from elftools.elf.elffile import ELFFile

        with open(host, "rb") as f:
            if f.read(4) != b"\x7fELF":
                return None
            f.seek(0)
            for seg in ELFFile(f).iter_segments():
                if seg["p_type"] == "PT_INTERP":
                    return seg.get_interp_name()
    except Exception:  # noqa: BLE001 - a file the ELF parser cannot read has no loader
        return None
    return None


def lower_bound(index, root: Path, doc: dict[str, Any]) -> dict[str, Any]:
    """Entries the trace saw that exist in the image, the loader of each ELF it
    executed, and the symlinks and parent directories needed to reach them."""
    keep: set[str] = set()
    finals: list[str] = []
    for path in sorted(doc.get("files") or {}):
        final = _walk(index, path, keep)
        if final is not None:
            finals.append(final)
    for path in sorted(set(finals)):
        e = index.get(path)
        if e is None or e.type != "file":
            continue
        host = root / path.lstrip("/")
        if host.is_symlink():
            continue
        interp = _interp(host)
        if interp:
            _walk(index, interp, keep)
    entries = [index[p] for p in keep if p in index]
    files = sum(e.type != "dir" for e in entries)
    size = sum(e.size for e in entries if e.type == "file")
    return {"bytes": size, "files": files, "entries": len(entries)}


# --- stages ------------------------------------------------------------------------


def stage_analyze(spec: dict[str, Any]) -> dict[str, Any]:
    from trimcage.elf.api import analyze_image
    from trimcage.elf.interface import AnalyzeOptions

    t = time.monotonic()
    store, image, _index, _root = _prepare(spec["ref"])
    prepare = time.monotonic() - t
    t = time.monotonic()
    a = analyze_image(image, store, AnalyzeOptions(use_cache=True))
    secs = time.monotonic() - t
    return {"seconds": secs, "prepare_s": prepare, "syscalls": sorted(a.syscalls),
            "arguments": {k: sorted(v) for k, v in sorted(a.arguments.items())},
            "files": len(a.files), "objects": len(a.objects),
            "unresolved_sites": (a.unresolved_sites or {}).get("total"),
            "phases": {k: round(v, 3) for k, v in a.timings.items()},
            "cache_hits": sum(bool(getattr(o, "cache_hit", False)) for o in a.objects)}


def stage_trace(spec: dict[str, Any]) -> dict[str, Any]:
    from trimcage.trace.interface import RunOptions
    from trimcage.trace.tracer import TraceOptions, trace
    from trimcage.util import dump_pretty

    _store, image, index, root = _prepare(spec["ref"])
    target = _target(image, root, spec["ref"])
    t = time.monotonic()
    doc = trace(target, RunOptions(), TraceOptions(probes=_probes(spec)))
    secs = time.monotonic() - t
    if spec.get("trace_out"):
        Path(spec["trace_out"]).write_text(dump_pretty(doc))
    lb = lower_bound(index, root, doc)
    return {"seconds": secs, "observed": sorted(doc.get("syscalls") or {}),
            "files_seen": len(doc.get("files") or {}), "lower_bound": lb,
            "strace_lines": (doc.get("strace") or {}).get("lines")}


def stage_build(spec: dict[str, Any]) -> dict[str, Any]:
    from trimcage.pipeline import BuildOptions, build
    from trimcage.policy.seccomp import profile_allowed
    from trimcage.report.metrics import profile_metrics

    tf = Path(spec["trace_file"]) if spec.get("trace_file") else None
    opts = BuildOptions(output=Path(spec["output"]), mode=spec["mode"], probes=_probes(spec),
                        verify=False, trace_file=tf)
    t = time.monotonic()
    res = build(spec["ref"], opts)
    secs = time.monotonic() - t
    allowed, restricted = profile_allowed(res.policy.seccomp)
    rep = res.report.to_json()
    return {"seconds": secs, "timings": dict(res.report.timings),
            "before": rep["image"]["before"], "after": rep["image"]["after"],
            "allowed": sorted(allowed), "restricted": sorted(restricted),
            "surface": profile_metrics(res.policy.seccomp).to_json(),
            "docker": rep["docker_default"],
            "packages_removed": rep["packages_removed"],
            "capabilities": list(res.policy.capabilities),
            "read_only_rootfs": res.policy.read_only_rootfs,
            "syscalls_per_mode": rep["syscalls_per_mode"]}


def stage_verify(spec: dict[str, Any]) -> dict[str, Any]:
    from trimcage.image.api import read_image
    from trimcage.image.extract import rootfs
    from trimcage.image.store import open_store
    from trimcage.verify.run import VerifyOptions, verify

    store, image, _index, root = _prepare(spec["ref"])
    out = Path(spec["output"])
    slim = read_image(f"oci-archive:{out / 'image.oci.tar'}", store)
    slim_root = rootfs(slim, open_store())
    vopts = VerifyOptions(probes=_probes(spec), seccomp=str(out / "seccomp.json"), cap_drop=("ALL",),
                          cap_add=tuple(spec.get("capabilities") or ()),
                          read_only=bool(spec.get("read_only_rootfs")))
    t = time.monotonic()
    r = verify(_target(image, root, spec["ref"]), _target(slim, Path(slim_root), "slim"), vopts)
    secs = time.monotonic() - t
    return {"seconds": secs, "equivalent": r.equivalent,
            "differences": [f"{d.what}: {d.detail}" for d in r.differences],
            "attacks_blocked": sum(bool(a.get("blocked")) for a in r.attacks),
            "attacks_total": len(r.attacks),
            "attacks_open": sorted(a.get("attack") for a in r.attacks if not a.get("blocked")),
            "timings": dict(r.timings)}


def _latencies(target, traced: bool, probes, requests: int) -> list[float]:
    from trimcage.trace.interface import RunOptions
    from trimcage.trace.probes import NetNS, run_probe, wait_ready
    from trimcage.trace.runtime import start

    with start(target, RunOptions(trace=traced), capture=True) as c:
        with NetNS(c.net_ns) as ns:
            ready = wait_ready(probes, ns, c, 30.0, lambda: c.poll() is not None)
            bad = [r for r in ready if not r.ok]
            if bad:
                tail = " | ".join(c.output().decode("utf-8", "replace").strip().splitlines()[-2:])
                raise RuntimeError(f"probe {bad[0].probe.target} not ready ({'traced' if traced else 'untraced'}): "
                                   f"{bad[0].error} (last output: {tail[:300]})")
            out = []
            for _ in range(requests):
                r = run_probe(probes[0], ns, c)
                if not r.ok:
                    raise RuntimeError(f"probe {probes[0].target} failed during the run: {r.error}")
                out.append(r.elapsed_s)
        c.stop()
    return out


def _job_times(target, traced: bool, runs: int) -> list[float]:
    from trimcage.trace.interface import RunOptions
    from trimcage.trace.runtime import start

    out = []
    for _ in range(runs):
        t = time.monotonic()
        with start(target, RunOptions(trace=traced), capture=True) as c:
            if c.wait(60.0) is None:
                raise RuntimeError("the job did not finish within 60 s")
            out.append(time.monotonic() - t)
            c.stop()
    return out


def stage_overhead(spec: dict[str, Any]) -> dict[str, Any]:
    _store, image, _index, root = _prepare(spec["ref"])
    target = _target(image, root, spec["ref"])
    probes = _probes(spec)
    if spec.get("kind") == "job" or not probes:
        what = f"wall time of the job, {spec.get('runs', 5)} runs (start to exit, incl. sandbox setup)"
        plain = _job_times(target, False, int(spec.get("runs", 5)))
        traced = _job_times(target, True, int(spec.get("runs", 5)))
    else:
        n = int(spec.get("requests", 100))
        what = f"latency of {n} '{probes[0].kind}' probe calls ({probes[0].target}) against the running service"
        plain = _latencies(target, False, probes, n)
        traced = _latencies(target, True, probes, n)
    mp, mt = statistics.median(plain), statistics.median(traced)
    return {"seconds": 0.0, "what": what, "untraced_median_s": mp, "traced_median_s": mt,
            "untraced_p90_s": sorted(plain)[int(0.9 * (len(plain) - 1))],
            "traced_p90_s": sorted(traced)[int(0.9 * (len(traced) - 1))],
            "ratio": (mt / mp) if mp else None, "samples": len(plain)}


STAGES = {"analyze": stage_analyze, "trace": stage_trace, "build": stage_build,
          "verify": stage_verify, "overhead": stage_overhead}


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[1]).read_text())
    try:
        result = STAGES[spec["stage"]](spec)
        rc = 0
    except BaseException as e:  # noqa: BLE001 - every failure is recorded for the parent
        msg = str(e).strip().splitlines()
        result = {"error": f"{type(e).__name__}: {msg[0] if msg else ''}"[:500],
                  "traceback": traceback.format_exc()[-3000:]}
        rc = 1
    Path(argv[2]).write_text(json.dumps(result, sort_keys=True))
    return rc


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
