"""The ``trimcage`` command: parses arguments and wires the stages together.

Each subcommand is one module in this package with ``add_parser(subparsers)``
and ``run(args) -> int``. Exit codes: 0 ok, 1 internal error, 2 bad input or
usage (one line on stderr, no traceback), 3 verification failed (``verify``,
``build``), 130 interrupted. ``TRIMCAGE_DEBUG=1`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from typing import Sequence

from trimcage import __version__
from trimcage.errors import TrimcageError

# Order is the order shown in --help.
COMMANDS = ("inspect", "analyze", "run", "trace", "build", "verify")

EPILOG = """\
image references (skopeo's transport names):
  oci-archive:PATH[:TAG]          OCI image layout in a tar file
  docker-archive:PATH[:NAME:TAG]  `docker save` tar file
  oci:DIR[:TAG]                   OCI image layout directory
  docker-daemon:NAME[:TAG]        the local Docker daemon (its unix socket)
  containers-storage:NAME[:TAG]   Podman's local storage
  docker://HOST[:PORT]/NAME[:TAG|@DIGEST]  a registry (HTTP API v2)
  PATH                            autodetected: layout dir, oci or docker archive

environment:
  TRIMCAGE_HOME   the store of blobs, unpacked root file systems and analysis
                  caches (default ~/.cache/trimcage)

exit codes: 0 ok, 1 internal error, 2 bad input or usage, 3 verification failed
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="trimcage",
        description="Cut the attack surface of container images: profile what the application "
        "needs, rebuild an image holding only that, lock it down, prove it still works.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"trimcage {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        modname = f"trimcage.cli.{name}"
        try:
            module = importlib.import_module(modname)
        except ModuleNotFoundError as e:  # a command not written yet; anything else is a bug
            if e.name != modname:
                raise
            continue
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except TrimcageError as e:
        if os.environ.get("TRIMCAGE_DEBUG"):
            traceback.print_exc()
        print(f"trimcage {args.command}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"trimcage {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # internal error: one line unless debugging
        if os.environ.get("TRIMCAGE_DEBUG"):
            traceback.print_exc()
        print(f"trimcage {args.command}: internal error: {type(e).__name__}: {e} "
              "(set TRIMCAGE_DEBUG=1 for a traceback)", file=sys.stderr)
        return 1
