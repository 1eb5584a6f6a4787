"""``trimcage trace IMAGE [probe options] [-o DIR]``: record what the application does.

Writes ``DIR/trace.json`` atomically (default ``./trimcage-out/trace``).
Exit codes: 0 ok, 2 bad input, 3 a probe never passed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from trimcage.cli.common import add_probe_options, probes_from_args
from trimcage.cli.run import add_container_options, run_options, target_from_args


def add_parser(sub: Any) -> None:
    p = sub.add_parser("trace", help="trace an image under strace while probing it",
                       description="Run IMAGE under strace in a sandbox, wait until it answers "
                                   "its probes (or its exposed ports), observe it, stop it and "
                                   "write DIR/trace.json.")
    add_container_options(p, run=False)
    add_probe_options(p)
    p.add_argument("-o", "--output", default="trimcage-out/trace", metavar="DIR",
                   help="output directory (default %(default)s)")
    p.add_argument("--keep-log", action="store_true", help="also keep the raw strace log as DIR/strace.log")
    p.add_argument("--json", action="store_true", help="print trace.json to stdout")
    p.set_defaults(func=run, _parser=p)


def run(args: argparse.Namespace) -> int:
    from trimcage.trace.tracer import Progress, TraceOptions, trace, write_trace
    from trimcage.util import dump_pretty

    probes = probes_from_args(args)
    target = target_from_args(args)
    topts = TraceOptions(probes=probes, ready_timeout=args.ready_timeout, duration=args.duration)
    prog = Progress(sys.stderr.isatty() and not args.json)
    out = Path(args.output)
    try:
        doc = trace(target, run_options(args), topts, prog,
                    keep_log=(out / "strace.log") if args.keep_log else None)
    finally:
        prog.done()
    path = write_trace(doc, out)
    if args.json:
        sys.stdout.write(dump_pretty(doc))
    else:
        print(f"{path}: {len(doc['files'])} files, {sum(doc['syscalls'].values())} syscalls "
              f"({len(doc['syscalls'])} distinct), {len(doc['processes'])} processes, "
              f"exit {doc['exit_code']}")
    return 0
