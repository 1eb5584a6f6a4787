"""``trimcage analyze IMAGE``: static analysis of an image's executables.

Writes ``DIR/analysis.json`` and ``DIR/seccomp.json`` (a Docker-format
seccomp profile allowing exactly the statically found syscalls) atomically,
then prints a summary, or analysis.json itself with ``--json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from trimcage.cli.common import add_transport_options, transport_options
from trimcage.util import dump_pretty, write_atomic

DEFAULT_OUT = "./trimcage-out/analyze"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("analyze", help="find the files and syscalls an image's application needs, statically",
                       description="Statically analyse the image's entry points (config Entrypoint/Cmd, "
                       "scripts, --include-exe): library closure with ld.so rules, dlopen targets, "
                       "reachable syscalls and constant syscall arguments. Nothing from the image runs.")
    p.add_argument("image", metavar="IMAGE", help="image reference (see `trimcage --help`)")
    p.add_argument("-o", "--output", metavar="DIR", default=DEFAULT_OUT,
                   help="output directory for analysis.json and seccomp.json (default: %(default)s)")
    p.add_argument("--all-binaries", action="store_true", help="take every ELF file in the image as an entry point")
    p.add_argument("--include-exe", action="append", default=[], metavar="PATH",
                   help="also analyse this in-image executable (repeatable)")
    p.add_argument("--json", action="store_true", help="print analysis.json to stdout")
    add_transport_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from trimcage.elf.api import analyze_image
    from trimcage.elf.interface import AnalyzeOptions
    from trimcage.elf.seccomp_json import seccomp_profile
    from trimcage.image.api import read_image
    from trimcage.image.store import open_store

    tty = sys.stderr.isatty()

    def progress(msg: str) -> None:
        if tty:
            print(f"analyze: {msg}", file=sys.stderr, flush=True)

    t0 = time.monotonic()
    store = open_store()
    progress("reading image")
    image = read_image(args.image, store, transport_options(args))
    options = AnalyzeOptions(all_binaries=args.all_binaries, include_exe=tuple(args.include_exe))
    analysis = analyze_image(image, store, options, progress=progress)
    profile = seccomp_profile(analysis.syscalls, analysis.arguments)
    out = Path(args.output)
    # each file atomically (temp name + rename); other files in DIR are left alone
    write_atomic(out / "seccomp.json", dump_pretty(profile))
    write_atomic(out / "analysis.json", analysis.dumps())
    elapsed = time.monotonic() - t0
    if args.json:
        sys.stdout.write(analysis.dumps())
        return 0
    j = analysis.to_json()
    nrestricted = sum(len(v) for v in j["arguments"].values())
    print(f"entry points:          {', '.join(e['path'] for e in j['entry_points']) or '-'}")
    print(f"objects:               {len(j['objects'])} "
          f"({sum(1 for o in j['objects'] if o['cache_hit'])} from cache)")
    print(f"files:                 {len(j['files'])}")
    print(f"syscalls:              {len(j['syscalls'])}")
    print(f"restricted arguments:  {nrestricted} "
          f"({', '.join(f'{s}[{i}]' for s, a in j['arguments'].items() for i in a) or '-'})")
    print(f"open arguments:        {sum(len(v) for v in j['open_arguments'].values())}")
    print(f"unresolved libraries:  {len(j['unresolved_libraries'])}"
          + (" (" + ", ".join(u["name"] for u in j["unresolved_libraries"]) + ")"
             if j["unresolved_libraries"] else ""))
    print(f"unresolved sites:      {j['unresolved_sites']['total']}")
    print(f"time:                  {elapsed:.1f} s")
    print(f"wrote {out / 'analysis.json'} and {out / 'seccomp.json'}")
    return 0
