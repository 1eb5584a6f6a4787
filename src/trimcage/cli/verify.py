"""``trimcage verify ORIGINAL SLIM``: same answers to the same probes, attacks blocked.

Exit codes: 0 equivalent and every attack blocked, 3 otherwise (a table
says which), 2 bad input.
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
SLIM may be the output directory of `trimcage build`: its image.oci.tar, seccomp.json and the
capabilities and read-only setting of its report.json are then used unless given here.

example:
  trimcage verify oci-archive:nginx.tar out/nginx --probe http://127.0.0.1:80/
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser("verify", help="check a slim image against its original and run the attack battery",
                       description="Run ORIGINAL and SLIM (under its policy) with the same probes, compare "
                                   "every outcome, then run the attack battery (shells, package managers, "
                                   "raw sockets, namespaces, ptrace, bpf, keyctl, ...) inside SLIM.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("original", metavar="ORIGINAL", help="the original image reference")
    p.add_argument("slim", metavar="SLIM", help="the slim image reference, or a `trimcage build` output dir")
    p.add_argument("--seccomp", metavar="FILE", help="seccomp profile for the slim run (Docker JSON)")
    p.add_argument("--cap-add", action="append", default=[], metavar="CAP")
    p.add_argument("--cap-drop", action="append", default=[], metavar="CAP")
    p.add_argument("--read-only", action="store_true", default=None, help="read-only root for the slim run")
    p.add_argument("--runtime", choices=("embedded", "docker", "podman"), default="embedded")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")
    add_probe_options(p)
    add_transport_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from trimcage.cli.build import render_rows
    from trimcage.image.api import read_image
    from trimcage.image.extract import rootfs
    from trimcage.image.store import open_store
    from trimcage.trace.interface import Target
    from trimcage.verify.run import VerifyOptions, summary_rows, verify

    slim_ref, seccomp, caps_add, caps_drop, read_only = args.slim, args.seccomp, args.cap_add, args.cap_drop, \
        args.read_only
    out = Path(args.slim)
    if out.is_dir() and (out / "image.oci.tar").is_file():
        slim_ref = f"oci-archive:{out / 'image.oci.tar'}"
        if seccomp is None and (out / "seccomp.json").is_file():
            seccomp = str(out / "seccomp.json")
        if (out / "report.json").is_file():
            rep = json.loads((out / "report.json").read_text())
            if not caps_add and not caps_drop:
                caps_drop, caps_add = ["ALL"], list(rep.get("capabilities") or [])
            if read_only is None:
                read_only = bool(rep.get("read_only_rootfs"))
    store = open_store()
    topts = transport_options(args)
    targets = []
    for ref in (args.original, slim_ref):
        image = read_image(ref, store, topts)
        targets.append(Target(str(rootfs(image, store)), dict(image.runtime_config), ref, image))
    vopts = VerifyOptions(probes=probes_from_args(args), seccomp=seccomp, cap_add=tuple(caps_add),
                          cap_drop=tuple(caps_drop), read_only=bool(read_only), runtime=args.runtime,
                          ready_timeout=args.ready_timeout)
    progress = Progress(enabled=False if args.json else None)
    progress("verifying (original, slim, attack battery)...")
    try:
        result = verify(targets[0], targets[1], vopts)
    finally:
        progress.done()
    if args.json:
        print(json.dumps(result.to_json(), indent=2, sort_keys=True))
    else:
        print(render_rows(summary_rows(result)))
        verdict = "equivalent" if result.equivalent else "NOT equivalent"
        blocked = sum(1 for a in result.attacks if a.get("blocked"))
        print(f"\n{verdict}; attacks blocked: {blocked}/{len(result.attacks)}")
        if result.missing_files:
            print("missing in the slim image: " + ", ".join(result.missing_files))
    if not result.ok:
        print("trimcage verify: verification failed", file=sys.stderr)
    return result.exit_code
