"""``trimcage build IMAGE``: the whole job — profile, slim, lock down, verify, report.

Writes DIR/image.oci.tar, seccomp.json, run.sh, k8s.yaml, report.json (plus
analysis.json, trace.json and verify.json as evidence). Exit codes: 0 ok,
2 bad input, 3 the slim image failed verification.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from trimcage.cli.common import (Progress, add_probe_options, add_transport_options, probes_from_args,
                                 transport_options)

EPILOG = """\
modes:
  combined  static closure + traced files; seccomp allows static + observed syscalls (default)
  static    no run needed; keeps the static closure, allows the static syscall set
  dynamic   traced files + ELF closure of what ran; allows the observed syscalls only

examples:
  trimcage build oci-archive:nginx.tar --probe http://127.0.0.1:80/ -o out/nginx
  trimcage build docker-daemon:redis:7 --probe tcp://127.0.0.1:6379 --probe-send 'PING\\r\\n' \\
      --probe-expect +PONG --load docker
  trimcage build app.tar --mode static --no-verify -o out/app
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser("build", help="slim an image, lock it down, verify and report it",
                       description="Profile IMAGE (static analysis and a traced run with probes), "
                                   "rebuild it holding only what the application needs, write its "
                                   "seccomp profile, capabilities, run.sh and k8s.yaml, verify that the "
                                   "slim image answers the probes like the original and blocks the "
                                   "attack battery, and report what went.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", metavar="IMAGE", help="image reference (see trimcage --help)")
    p.add_argument("--mode", choices=("combined", "static", "dynamic"), default="combined",
                   help="how the keep-set and syscalls are found (default %(default)s)")
    p.add_argument("-o", "--output", default="trimcage-out/build", metavar="DIR",
                   help="output directory, replaced atomically (default %(default)s)")
    p.add_argument("--tag", metavar="NAME", help="name of the slim image (default <repo>:<tag>-slim)")
    p.add_argument("--load", choices=("docker", "podman"), help="also load the slim image into Docker or Podman")
    p.add_argument("--include", action="append", default=[], metavar="PATH",
                   help="keep this in-image path and everything under it (repeatable)")
    p.add_argument("--keep-shell", action="store_true", help="keep /bin/sh (debugging)")
    p.add_argument("--runtime", choices=("embedded", "docker", "podman"), default="embedded",
                   help="where traces and verification run (default %(default)s: bubblewrap, no daemon)")
    p.add_argument("--trace", metavar="FILE", type=Path,
                   help="use this trace.json (from `trimcage trace` or an earlier build) instead of tracing")
    p.add_argument("--no-verify", action="store_true", help="skip the verification runs")
    p.add_argument("--json", action="store_true", help="print report.json to stdout instead of the table")
    add_probe_options(p)
    add_transport_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from trimcage.pipeline import BuildOptions, build
    from trimcage.report.render import render_table
    from trimcage.verify.run import summary_rows

    opts = BuildOptions(output=Path(args.output), mode=args.mode, probes=probes_from_args(args),
                        ready_timeout=args.ready_timeout, duration=args.duration, runtime=args.runtime,
                        includes=tuple(args.include), keep_shell=args.keep_shell, tag=args.tag,
                        load=args.load, verify=not args.no_verify, trace_file=args.trace, transport=transport_options(args))
    progress = Progress(enabled=False if args.json else None)
    try:
        result = build(args.image, opts, say=progress)
    finally:
        progress.done()
    if args.json:
        print(json.dumps(result.report.to_json(), indent=2, sort_keys=True))
    else:
        print(render_table(result.report))
        if result.verify is not None:
            print()
            print(render_rows(summary_rows(result.verify)))
        print(f"\nwritten: {result.output}/ (image.oci.tar, seccomp.json, run.sh, k8s.yaml, report.json)")
        if result.loaded_as:
            print(f"loaded: {result.loaded_as}")
    if result.verify is not None and not result.verify.ok:
        why = "; ".join(d.detail for d in result.verify.differences[:3]) or "an attack was not blocked"
        print(f"trimcage build: verification failed: {why}", file=sys.stderr)
        return 3
    return 0


def render_rows(rows: list[tuple[str, str, str]]) -> str:
    """A three-column table (check, verdict, detail) with aligned columns."""
    if not rows:
        return "(nothing verified)"
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    return "\n".join(f"{a.ljust(w0)}  {b.ljust(w1)}  {c}".rstrip() for a, b, c in rows)
