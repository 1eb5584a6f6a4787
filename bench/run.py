"""trimcage benchmark: speed, size, precision and protection on every sample image.

    python3 bench/run.py [--quick] [--samples a,b] [--repeat N] [--out DIR]

Every measurement runs in its own process (``bench/worker.py``) so its peak
memory (``ru_maxrss`` from ``wait4``) and wall time are its own; a stage
that fails on a sample is recorded (sample, stage, message) and the bench
goes on. Per sample, with a fresh ``TRIMCAGE_HOME`` (the sample images are
shared through ``TRIMCAGE_SAMPLES``):

1. static analysis cold (fresh home each run: ``--cold-repeat`` runs, nginx
   gets ``--repeat``), then warm (same home, ``--repeat`` runs);
2. trace with the sample's probes (``--repeat`` runs; the first trace.json
   is kept, and gives the lower bound of the slim image);
3. build ``combined`` without verify (``--repeat`` runs; warm analysis
   cache, traced afresh), ``static`` and ``dynamic`` (the kept trace) once;
4. verify of the combined output (``--repeat`` runs);
5. tracing overhead: probe latency untraced vs traced (``--requests``).

Writes ``DIR/results.json`` and ``DIR/RESULTS.md`` (default ``bench/``).
``--quick`` = nginx only, one run of everything.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WORKER = Path(__file__).resolve().parent / "worker.py"

STAGE_TIMEOUT = 900.0


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- running one measurement ----------------------------------------------------------


def run_worker(spec: dict[str, Any], home: Path, work: Path, tag: str,
               timeout: float = STAGE_TIMEOUT) -> dict[str, Any]:
    """Run ``worker.py`` on ``spec`` with ``TRIMCAGE_HOME=home``; return its result plus
    ``wall_s`` and ``maxrss_mb`` (peak resident memory of the process and the children it
    waited for). Never raises: failures come back as ``{"error": ...}``."""
    work.mkdir(parents=True, exist_ok=True)
    spec_f, out_f, log_f = work / f"{tag}.spec.json", work / f"{tag}.result.json", work / f"{tag}.log"
    spec_f.write_text(json.dumps(spec))
    out_f.unlink(missing_ok=True)
    env = dict(os.environ, TRIMCAGE_HOME=str(home))
    t = time.monotonic()
    with open(log_f, "wb") as lf:
        p = subprocess.Popen([sys.executable, str(WORKER), str(spec_f), str(out_f)], env=env,
                             stdout=lf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True, cwd=str(ROOT))
        timed_out = False
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - t > timeout:
                timed_out = True
                os.killpg(p.pid, signal.SIGKILL)
                pid, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.05)
        p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t
    try:
        os.killpg(p.pid, signal.SIGKILL)  # anything the worker left behind
    except (ProcessLookupError, PermissionError):
        pass
    try:
        res = json.loads(out_f.read_text())
    except (OSError, ValueError):
        tail = log_f.read_text(errors="replace").strip().splitlines()[-3:] if log_f.exists() else []
        res = {"error": ("timed out after %ds" % timeout) if timed_out else
               f"worker exited {p.returncode} without a result: {' | '.join(tail)[:400]}"}
    res["wall_s"] = wall
    res["maxrss_mb"] = ru.ru_maxrss / 1024.0
    return res


def fresh_home(work: Path) -> Path:
    return Path(tempfile.mkdtemp(prefix="home-", dir=work))


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# --- statistics ---------------------------------------------------------------------------


def timing(runs: list[dict[str, Any]], key: str = "seconds") -> dict[str, Any] | None:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return None
    xs = [float(r[key]) for r in ok]
    mem = [float(r["maxrss_mb"]) for r in ok]
    return {"median_s": round(statistics.median(xs), 2), "min_s": round(min(xs), 2), "max_s": round(max(xs), 2),
            "runs_s": [round(x, 2) for x in xs], "peak_mem_mb": round(max(mem), 1)}


def first_ok(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((r for r in runs if "error" not in r), None)


# --- one sample ---------------------------------------------------------------------------


class SampleBench:
    def __init__(self, name: str, sample: Any, args: argparse.Namespace, work: Path):
        self.name = name
        self.args = args
        self.work = work / name
        self.work.mkdir(parents=True, exist_ok=True)
        self.base = {"ref": sample.reference, "probes": list(sample.meta.get("probes") or []),
                     "kind": sample.meta.get("kind", "service")}
        self.errors: list[dict[str, str]] = []
        self.runs: dict[str, list[dict[str, Any]]] = {}

    def measure(self, stage: str, label: str, home: Path, n: int, **extra: Any) -> list[dict[str, Any]]:
        out = self.runs.setdefault(label, [])
        for i in range(n):
            spec = dict(self.base, stage=stage, **{k: (v(i) if callable(v) else v) for k, v in extra.items()})
            log(f"{self.name}: {label} {i + 1}/{n}")
            r = run_worker(spec, home, self.work, f"{label}-{i}")
            if "error" in r:
                log(f"{self.name}: {label} FAILED: {r['error']}")
                self.errors.append({"sample": self.name, "stage": label, "run": i + 1, "message": r["error"]})
            else:
                log(f"{self.name}: {label} {r.get('seconds', 0):.2f}s (process {r['wall_s']:.1f}s, "
                    f"{r['maxrss_mb']:.0f} MB)")
            out.append(r)
        return out

    def run(self) -> dict[str, Any]:
        a = self.args
        n = a.repeat
        n_cold = n if (self.name == "nginx" or a.cold_repeat is None) else min(n, a.cold_repeat)
        home = fresh_home(self.work)
        try:
            self.measure("analyze", "analyze_cold", home, 1)
            for i in range(1, n_cold):
                h = fresh_home(self.work)
                try:
                    self.measure("analyze", "analyze_cold", h, 1)
                finally:
                    rmtree(h)
            self.measure("analyze", "analyze_warm", home, n)
            trace_file = self.work / "trace.json"
            self.measure("trace", "trace", home, n, trace_out=lambda i: str(self.work / f"trace-{i}.json"))
            kept = next((self.work / f"trace-{i}.json" for i, r in enumerate(self.runs["trace"])
                         if "error" not in r), None)
            if kept is not None:
                shutil.copyfile(kept, trace_file)
            self.measure("build", "build_combined", home, n, mode="combined",
                         output=lambda i: str(self.work / f"out-combined-{i}"))
            self.measure("build", "build_static", home, 1, mode="static", output=str(self.work / "out-static"))
            self.measure("build", "build_dynamic", home, 1, mode="dynamic", output=str(self.work / "out-dynamic"),
                         trace_file=str(trace_file) if kept else None)
            comb = next((i for i, r in enumerate(self.runs["build_combined"]) if "error" not in r), None)
            if comb is not None:
                c = self.runs["build_combined"][comb]
                self.measure("verify", "verify", home, n, output=str(self.work / f"out-combined-{comb}"),
                             capabilities=c["capabilities"], read_only_rootfs=c["read_only_rootfs"])
            else:
                self.errors.append({"sample": self.name, "stage": "verify", "run": 0,
                                    "message": "skipped: no combined build succeeded"})
            self.measure("overhead", "overhead", home, 1, requests=a.requests, runs=a.job_runs)
        finally:
            rmtree(home)
        return self.summary()

    def summary(self) -> dict[str, Any]:
        R = self.runs
        s: dict[str, Any] = {"errors": self.errors}
        s["times"] = {k: timing(R.get(k, [])) for k in
                      ("analyze_cold", "analyze_warm", "trace", "build_combined", "verify")}
        s["times"]["prepare_cold"] = timing(R.get("analyze_cold", []), "prepare_s")
        comb, stat, dyn = first_ok(R.get("build_combined", [])), first_ok(R.get("build_static", [])), \
            first_ok(R.get("build_dynamic", []))
        tr, an = first_ok(R.get("trace", [])), first_ok(R.get("analyze_cold", []) + R.get("analyze_warm", []))
        size: dict[str, Any] = {}
        if comb:
            size["original"] = comb["before"]
            size["slim_combined"] = comb["after"]
        if stat:
            size["slim_static"] = stat["after"]
            size.setdefault("original", stat["before"])
        if tr:
            size["lower_bound"] = tr["lower_bound"]
        lb = size.get("lower_bound")
        for mode in ("combined", "static"):
            sl = size.get(f"slim_{mode}")
            if sl and lb and lb["bytes"]:
                size[f"ratio_{mode}_to_lower_bound"] = round(sl["bytes"] / lb["bytes"], 2)
                size[f"ratio_{mode}_to_lower_bound_files"] = round(sl["files"] / max(1, lb["files"]), 2)
        s["size"] = size
        sys_: dict[str, Any] = {}
        if tr:
            sys_["observed"] = len(tr["observed"])
        if an:
            sys_["static_analysis"] = len(an["syscalls"])
        for mode, b in (("dynamic", dyn), ("combined", comb), ("static", stat)):
            if b:
                sys_[f"{mode}_allowed"] = b["surface"]["syscalls_allowed"]
        if "static_allowed" in sys_ and sys_.get("observed"):
            sys_["ratio_static_to_observed"] = round(sys_["static_allowed"] / sys_["observed"], 2)
        if "combined_allowed" in sys_ and sys_.get("observed"):
            sys_["ratio_combined_to_observed"] = round(sys_["combined_allowed"] / sys_["observed"], 2)
        s["syscalls"] = sys_
        if comb:
            s["argument_rules"] = comb["restricted"]
            s["critical_open"] = comb["surface"]["critical_allowed"]
            s["critical_restricted"] = comb["surface"]["critical_restricted"]
            s["protection"] = {
                "combined": {k: comb["surface"][k] for k in ("cves_mitigated", "cves_total", "payloads_broken",
                                                              "payloads_total", "syscalls_allowed")},
                "packages_removed": len(comb["packages_removed"]),
                "packages_before": comb["before"].get("packages"),
                "capabilities": comb["capabilities"], "read_only_rootfs": comb["read_only_rootfs"]}
            for mode, b in (("static", stat), ("dynamic", dyn)):
                if b:
                    s["protection"][mode] = {k: b["surface"][k] for k in ("cves_mitigated", "payloads_broken")}
            s["combined_timings"] = comb["timings"]
        v = first_ok(R.get("verify", []))
        if v:
            s["verify"] = {k: v[k] for k in ("equivalent", "differences", "attacks_blocked", "attacks_total",
                                             "attacks_open")}
        o = first_ok(R.get("overhead", []))
        if o:
            s["overhead"] = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in o.items()
                             if k not in ("wall_s", "maxrss_mb", "seconds")}
        s["bench_seconds"] = round(sum(r.get("wall_s", 0) for rs in R.values() for r in rs), 1)
        s["raw"] = {k: [{kk: vv for kk, vv in r.items() if kk not in ("observed", "syscalls", "traceback",
                                                                          "allowed")}
                        for r in rs] for k, rs in R.items()}
        return s


# --- machine, published figures, goals ---------------------------------------------------


def machine_info() -> dict[str, Any]:
    def sh(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    cpu = ""
    try:
        cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "")
        mem = next((int(ln.split()[1]) // 1024 for ln in open("/proc/meminfo") if ln.startswith("MemTotal")), 0)
    except OSError:
        mem = 0
    return {"cores": os.cpu_count(), "cpu": cpu, "mem_mb": mem, "kernel": platform.release(),
            "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "git_commit": sh(["git", "rev-parse", "HEAD"]),
            "git_dirty": bool(sh(["git", "status", "--porcelain", "--untracked-files=no"])),
            "load_average_start": [round(x, 2) for x in os.getloadavg()]}


PUBLISHED = {
    "confine": "median 80 s per image; filters >=145 of 326 syscalls for half of 150 images; nginx 171 filtered; "
               "51 kernel CVEs mitigated",
    "sysfilter": "nginx allowed set 115 syscalls",
    "dockerslim": "up to 30x smaller images (Python 916 MB -> 27.5 MB); profile = observed + 32 extras, "
                  "no argument rules",
}


def docker_default() -> dict[str, Any]:
    from trimcage.policy.seccomp import DEFAULT_CAPS, docker_default_allowed
    from trimcage.report.metrics import docker_default_metrics

    m = docker_default_metrics().to_json()
    no_chroot = [c for c in DEFAULT_CAPS if c != "CAP_SYS_CHROOT"]
    return {"allowed_default_caps": m["syscalls_allowed"],
            "allowed_without_sys_chroot": len(docker_default_allowed(no_chroot)),
            "total": m["syscalls_total"], "cves_mitigated": m["cves_mitigated"], "cves_total": m["cves_total"],
            "payloads_broken": m["payloads_broken"], "payloads_total": m["payloads_total"],
            "critical_allowed": len(m["critical_allowed"]),
            "note": "x86-64 with Docker's 14 default capabilities (CAP_SYS_CHROOT enables chroot); "
                    "i386 ABI kept as Docker does"}


def goals(samples: dict[str, Any]) -> list[dict[str, Any]]:
    """The five goal numbers, with how far each is from its goal (value / goal)."""
    out = []
    ng = samples.get("nginx") or {}
    t = ng.get("times") or {}
    for key, goal, what in (("analyze_cold", 20.0, "static analysis of nginx, cold (s)"),
                            ("analyze_warm", 2.0, "static analysis of nginx, warm (s)")):
        if t.get(key):
            v = t[key]["median_s"]
            out.append({"goal": what, "target": goal, "value": v, "factor": round(v / goal, 2)})
    r = (ng.get("size") or {}).get("ratio_combined_to_lower_bound")
    if r is not None:
        out.append({"goal": "slim nginx / lower bound (bytes)", "target": 1.15, "value": r,
                    "factor": round(r / 1.15, 2)})
    for name, s in samples.items():
        r = (s.get("syscalls") or {}).get("ratio_static_to_observed")
        if r is not None:
            out.append({"goal": f"static allow-list / observed ({name})", "target": 1.6, "value": r,
                        "factor": round(r / 1.6, 2)})
    return sorted(out, key=lambda g: -g["factor"])


# --- main -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="nginx only, one run of everything")
    ap.add_argument("--samples", default="", help="comma-separated sample names (default: all)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (default 3)")
    ap.add_argument("--cold-repeat", type=int, default=1,
                    help="cold analysis runs for samples other than nginx (default 1; nginx gets --repeat)")
    ap.add_argument("--requests", type=int, default=100, help="probe calls per overhead measurement")
    ap.add_argument("--job-runs", type=int, default=5, help="runs of a job image per overhead measurement")
    ap.add_argument("--out", default=str(ROOT / "bench"), help="where results.json and RESULTS.md go")
    ap.add_argument("--work", default=None, help="scratch directory (default: a temporary one, removed)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench: the embedded runtime needs root", file=sys.stderr)
        return 2
    from samples import SAMPLES
    from samples.build import ensure

    names = [n for n in args.samples.split(",") if n] or list(SAMPLES)
    if args.quick:
        names, args.repeat = (names if args.samples else ["nginx"]), 1
    unknown = [n for n in names if n not in SAMPLES]
    if unknown:
        print(f"bench: unknown samples {unknown} (known: {', '.join(SAMPLES)})", file=sys.stderr)
        return 2
    os.environ.setdefault("TRIMCAGE_SAMPLES", str(Path(os.environ.get("TRIMCAGE_HOME") or
                                                       Path.home() / ".cache" / "trimcage") / "samples"))
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="trimcage-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    command = "python3 bench/run.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    t0 = time.monotonic()
    results: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    try:
        for name in names:
            log(f"=== {name}")
            try:
                sample = ensure(name)
            except Exception as e:  # noqa: BLE001 - a sample that cannot be built is a recorded failure
                errors.append({"sample": name, "stage": "sample", "run": 0, "message": f"{type(e).__name__}: {e}"})
                results[name] = {"errors": errors[-1:]}
                continue
            try:
                results[name] = SampleBench(name, sample, args, work).run()
            except Exception as e:  # noqa: BLE001 - never crash the whole bench
                results[name] = {"errors": [{"sample": name, "stage": "bench", "run": 0,
                                             "message": f"{type(e).__name__}: {e}"}]}
            errors.extend(results[name].get("errors", []))
    finally:
        if not args.work:
            rmtree(work)
    info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    total = time.monotonic() - t0
    doc = {"command": command, "machine": info, "repeat": args.repeat, "cold_repeat": args.cold_repeat,
           "requests": args.requests, "total_seconds": round(total, 1), "samples": results,
           "docker_default": docker_default(), "published": PUBLISHED, "goals": goals(results),
           "errors": errors}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from report_md import render  # bench/report_md.py

    from trimcage.util import atomic_path

    with atomic_path(out / "results.json") as tmp:
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    with atomic_path(out / "RESULTS.md") as tmp:
        tmp.write_text(render(doc))
    log(f"done in {total:.0f}s: {out / 'results.json'}, {out / 'RESULTS.md'}; {len(errors)} failures")
    for e in errors:
        log(f"FAILED {e['sample']} / {e['stage']} (run {e['run']}): {e['message']}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    raise SystemExit(main())
