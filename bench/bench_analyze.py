"""Benchmark of ``trimcage analyze``'s static analysis on the sample images.

For each sample: the image is read, flattened and extracted once (the image
stage's cache); then the analysis runs ``--repeat`` times cold (a fresh,
empty summary cache each time) and ``--repeat`` times warm (the cache the
first cold run filled). Medians are printed as a table and written as JSON.

    python3 bench/bench_analyze.py [--repeat 3] [--out bench/work/analyze.json] [NAMES...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NAMES = ("nginx", "redis", "memcached", "postgres", "flask", "registry", "hello-static")


def bench_one(name: str, repeat: int) -> dict:
    from samples.build import ensure
    from trimcage.elf.api import DirCache, analyze_root
    from trimcage.elf.interface import AnalyzeOptions
    from trimcage.image.api import read_image
    from trimcage.image.extract import rootfs
    from trimcage.image.flatten import flatten
    from trimcage.image.store import open_store

    sample = ensure(name)
    store = open_store()
    image = read_image(sample.reference, store)
    index = flatten(image, store)
    root = rootfs(image, store)
    cfg = image.runtime_config
    cold: list[float] = []
    warm: list[float] = []
    result = None
    with tempfile.TemporaryDirectory(prefix="bench-analyze-") as tmp:
        keep = DirCache(Path(tmp) / "keep")
        for i in range(repeat):
            cache = keep if i == 0 else DirCache(Path(tmp) / f"cold{i}")
            t = time.monotonic()
            result = analyze_root(root, index, cfg, AnalyzeOptions(), store=cache)
            cold.append(time.monotonic() - t)
        for _ in range(repeat):
            t = time.monotonic()
            analyze_root(root, index, cfg, AnalyzeOptions(), store=keep)
            warm.append(time.monotonic() - t)
    assert result is not None
    return {
        "name": name, "entry_points": [e.path for e in result.entry_points],
        "objects": len(result.objects), "syscalls": len(result.syscalls),
        "restricted_arguments": sum(len(v) for v in result.arguments.values()),
        "unresolved_sites": result.unresolved_sites["total"],
        "unresolved_libraries": len(result.unresolved_libraries),
        "cold_s": round(statistics.median(cold), 2), "warm_s": round(statistics.median(warm), 2),
        "cold_runs": [round(x, 2) for x in cold], "warm_runs": [round(x, 2) for x in warm],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", default=list(NAMES))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench" / "work" / "analyze.json"))
    args = ap.parse_args(argv)
    rows = []
    for name in args.names:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        rows.append(bench_one(name, args.repeat))
    head = f"{'image':<14}{'objects':>8}{'syscalls':>9}{'args':>6}{'unres':>7}{'cold s':>9}{'warm s':>9}"
    print(head)
    for r in rows:
        print(f"{r['name']:<14}{r['objects']:>8}{r['syscalls']:>9}{r['restricted_arguments']:>6}"
              f"{r['unresolved_sites']:>7}{r['cold_s']:>9.2f}{r['warm_s']:>9.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"analyze": rows}, indent=2, sort_keys=True) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
