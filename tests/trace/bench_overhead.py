"""Tracing overhead: median latency of N GETs on nginx, traced vs untraced (not a test).

    python3 -m tests.trace.bench_overhead ROOTFS [N]

ROOTFS is an extracted Debian rootfs with nginx-light (tests/trace/conftest.py
builds one); prints medians, p90s and the strace log size.
"""

from __future__ import annotations

import statistics
import sys
import time

from trimcage.trace.interface import RunOptions, Target
from trimcage.trace.probes import NetNS, _http, default_probes
from trimcage.trace.runtime import start

CONFIG = {"Entrypoint": ["nginx", "-g", "daemon off;"], "ExposedPorts": {"80/tcp": {}}, "StopSignal": "SIGQUIT"}


def measure(root: str, n: int, trace: bool) -> tuple[list[float], int]:
    target = Target(root, CONFIG, root)
    with start(target, RunOptions(trace=trace), capture=True) as c:
        with NetNS(c.net_ns) as ns:
            default_probes(c.process.ports, ns, 30, lambda: c.poll() is not None)
            for _ in range(10):
                ns.call(_http, "http://127.0.0.1:80/", 5)
            lat = []
            for _ in range(n):
                t0 = time.perf_counter()
                status, _ = ns.call(_http, "http://127.0.0.1:80/", 5)
                lat.append(time.perf_counter() - t0)
                assert status == 200
        c.stop()
        size = c.trace_log.stat().st_size if c.trace_log and c.trace_log.exists() else 0
    return lat, size


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    root, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 200
    for trace in (False, True):
        lat, size = measure(root, n, trace)
        q = statistics.quantiles(lat, n=10)
        print(f"{'traced  ' if trace else 'untraced'} n={n} median={statistics.median(lat) * 1e3:.3f} ms "
              f"p90={q[-1] * 1e3:.3f} ms strace log={size} bytes ({size / max(1, n):.0f} B/request)")


if __name__ == "__main__":
    main()
