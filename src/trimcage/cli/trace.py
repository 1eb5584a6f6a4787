"""``trimcage trace IMAGE [probe options] [-o DIR]``: record what the application does.

Writes ``DIR/trace.json`` atomically (default ``./trimcage-out/trace``).
Exit codes: 0 ok, 2 bad input, 3 a probe never passed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from trimcage.cli.run import add_container_options, run_options, target_from_args


def add_parser(sub: Any) -> None:
    p = sub.add_parser("trace", help="trace an image under strace while probing it",
                       description="Run IMAGE under strace in a sandbox, wait until it answers "
                                   "its probes (or its exposed ports), observe it, stop it and "
                                   "write DIR/trace.json.")
    add_container_options(p, run=False)
    g = p.add_argument_group("probes")
    g.add_argument("--probe", action="append", default=[], metavar="URL",
                   help="http://HOST:PORT/PATH, https://..., tcp://HOST:PORT (repeatable)")
    g.add_argument("--probe-send", metavar="TEXT", help="for tcp probes: what to send (C escapes)")
    g.add_argument("--probe-expect", metavar="TEXT", help="for tcp probes: substring of the reply")
    g.add_argument("--probe-cmd", action="append", default=[], metavar="CMD",
                   help="host command run in the container's network namespace; passes on exit 0")
    g.add_argument("--exec", dest="exec_", action="append", default=[], metavar="CMD",
                   help="command run inside the container; passes on exit 0")
    g.add_argument("--probe-file", metavar="FILE", help="JSON or YAML list of probes")
    g.add_argument("--ready-timeout", type=float, default=30.0, metavar="S",
                   help="seconds for the probes to pass (default %(default)s)")
    g.add_argument("--duration", type=float, default=2.0, metavar="S",
                   help="extra observation seconds after the probes (default %(default)s)")
    p.add_argument("-o", "--output", default="trimcage-out/trace", metavar="DIR",
                   help="output directory (default %(default)s)")
    p.add_argument("--keep-log", action="store_true", help="also keep the raw strace log as DIR/strace.log")
    p.add_argument("--json", action="store_true", help="print trace.json to stdout")
    p.set_defaults(func=run, _parser=p)


def probes_from_args(args: argparse.Namespace) -> tuple:
    from trimcage.trace.interface import Probe
    from trimcage.trace.probes import load_probe_file, parse_probe_url, unescape

    out = [parse_probe_url(u, unescape(args.probe_send), unescape(args.probe_expect)) for u in args.probe]
    out += [Probe("cmd", c) for c in args.probe_cmd]
    out += [Probe("exec", c) for c in args.exec_]
    if args.probe_file:
        out += load_probe_file(args.probe_file)
    return tuple(out)


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
