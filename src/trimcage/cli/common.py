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
