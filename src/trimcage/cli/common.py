"""Argument groups shared by several subcommands (transport options, output)."""

from __future__ import annotations

import argparse

from trimcage.image.interface import TransportOptions


def add_transport_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("image source")
    g.add_argument("--creds", metavar="USER:PASS", help="registry credentials")
    g.add_argument("--authfile", metavar="FILE", help="Docker config.json with registry auths")
    g.add_argument("--platform", default="linux/amd64", metavar="OS/ARCH",
                   help="platform to pick from a manifest list (default: %(default)s)")
    g.add_argument("--tls-verify", default=True, action=argparse.BooleanOptionalAction,
                   help="verify registry TLS; --no-tls-verify also allows plain HTTP")


def transport_options(args: argparse.Namespace) -> TransportOptions:
    return TransportOptions(creds=args.creds, authfile=args.authfile, platform=args.platform,
                            tls_verify=args.tls_verify)


def add_probe_options(p: argparse.ArgumentParser) -> None:
    """The probe options shared by ``trace``, ``build`` and ``verify``."""
    g = p.add_argument_group("probes (default: wait for the exposed ports, GET / where HTTP answers)")
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


def probes_from_args(args: argparse.Namespace) -> tuple:
    """The probes the options name, in order: --probe, --probe-cmd, --exec, --probe-file."""
    from trimcage.trace.interface import Probe
    from trimcage.trace.probes import load_probe_file, parse_probe_url, unescape

    out = [parse_probe_url(u, unescape(args.probe_send), unescape(args.probe_expect)) for u in args.probe]
    out += [Probe("cmd", c) for c in args.probe_cmd]
    out += [Probe("exec", c) for c in args.exec_]
    if args.probe_file:
        out += load_probe_file(args.probe_file)
    return tuple(out)


class Progress:
    """One status line on stderr, rewritten in place; silent unless stderr is a terminal."""

    def __init__(self, enabled: bool | None = None):
        import sys
        import time

        self._t0 = time.monotonic()
        self._enabled = sys.stderr.isatty() if enabled is None else enabled

    def __call__(self, message: str) -> None:
        import sys
        import time

        if self._enabled:
            sys.stderr.write(f"\r\033[K[{time.monotonic() - self._t0:6.1f}s] {message}")
            sys.stderr.flush()

    def done(self) -> None:
        import sys

        if self._enabled:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
