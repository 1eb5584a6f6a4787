"""``trimcage run IMAGE [options] [-- CMD ARGS...]``: run an image in a sandbox.

Exit code: the container's own exit code; 2 for bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import signal
from typing import Any

from trimcage.cli.common import add_transport_options, transport_options
from trimcage.trace.interface import RUNTIMES, RunOptions, Target


def add_container_options(p: argparse.ArgumentParser, *, run: bool) -> None:
    """Options shared by ``run`` and ``trace`` (image, runtime, process)."""
    p.add_argument("image", nargs="?", metavar="IMAGE", help="image reference (see trimcage --help)")
    p.add_argument("--rootfs", metavar="DIR",
                   help="run an extracted root file system instead of IMAGE (development)")
    p.add_argument("--image-config", metavar="FILE",
                   help="with --rootfs: the image config JSON (Entrypoint, Cmd, Env, ...)")
    p.add_argument("--runtime", choices=RUNTIMES, default="embedded",
                   help="embedded (bubblewrap, default), docker or podman")
    g = p.add_argument_group("process")
    g.add_argument("--env", "-e", action="append", default=[], metavar="K=V")
    g.add_argument("--user", "-u", metavar="USER[:GROUP]", help="name or uid[:gid] of the image's passwd")
    g.add_argument("--workdir", "-w", metavar="DIR")
    g.add_argument("--entrypoint", metavar="CMD", help="replace the image's entrypoint (drops its Cmd)")
    if run:
        g.add_argument("--seccomp", metavar="FILE", help="Docker-format seccomp profile, or 'unconfined'")
        g.add_argument("--cap-add", action="append", default=[], metavar="CAP")
        g.add_argument("--cap-drop", action="append", default=[], metavar="CAP")
        g.add_argument("--read-only", action="store_true", help="read-only root file system")
    add_transport_options(p)
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ARGS",
                   help="replace the image's Cmd")


def split_command(args: argparse.Namespace) -> None:
    """Separate options given after IMAGE from the command (``argparse.REMAINDER`` takes both).

    ``IMAGE [OPTIONS] -- CMD ARGS`` and Docker's ``IMAGE CMD ARGS`` both work; options
    after IMAGE are parsed again, the command ends up in ``args.cmd``.
    """
    from trimcage.errors import UsageError

    p: argparse.ArgumentParser = args._parser
    rem = list(args.cmd or [])
    if "--" in rem:
        i = rem.index("--")
        before, cmd = rem[:i], rem[i + 1:]
    else:
        before, cmd = rem, []
    if before:
        sub = p.parse_args(before)
        for k, v in vars(sub).items():
            if k in ("image", "cmd", "func", "_parser") or v == p.get_default(k):
                continue
            cur = getattr(args, k)
            setattr(args, k, cur + v if isinstance(v, list) and isinstance(cur, list) else v)
        extra = ([sub.image] if sub.image else []) + list(sub.cmd or [])
        if extra and cmd:
            raise UsageError(f"unexpected arguments before '--': {' '.join(extra)}")
        cmd = extra + cmd if extra else cmd
    args.cmd = cmd


def target_from_args(args: argparse.Namespace) -> Target:
    from trimcage.errors import UsageError
    from trimcage.trace import target as tg

    if hasattr(args, "_parser"):
        split_command(args)
        del args._parser
    if args.rootfs and args.image:  # with --rootfs every positional is the command
        args.cmd = [args.image] + list(args.cmd or [])
        args.image = None
    if args.rootfs:
        cfg = tg.load_config(args.image_config) if args.image_config else {}
        return tg.from_rootfs(args.rootfs, cfg, args.image or None)
    if not args.image:
        raise UsageError("IMAGE (or --rootfs DIR) is required")
    return tg.from_image(args.image, transport_options(args))


def run_options(args: argparse.Namespace) -> RunOptions:
    cmd = list(args.cmd or [])
    return RunOptions(
        entrypoint=(args.entrypoint,) if args.entrypoint else None,
        cmd=tuple(cmd) or None,
        env=tuple(args.env),
        user=args.user,
        workdir=args.workdir,
        cap_add=tuple(getattr(args, "cap_add", ()) or ()),
        cap_drop=tuple(getattr(args, "cap_drop", ()) or ()),
        seccomp=getattr(args, "seccomp", None),
        read_only=bool(getattr(args, "read_only", False)),
        runtime=args.runtime,
    )


def add_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="run an image in a sandbox (bubblewrap, Docker or Podman)",
                       description="Run IMAGE like `docker run` would: image config honoured, "
                                   "Docker's default capabilities, no-new-privileges, optional seccomp "
                                   "profile. Exits with the container's exit code.")
    add_container_options(p, run=True)
    p.set_defaults(func=run, _parser=p)


def quiet_warnings() -> None:
    """Warnings (e.g. unknown syscalls skipped from a profile) as one plain line each."""
    import warnings

    warnings.formatwarning = lambda msg, *a, **k: f"trimcage: warning: {msg}\n"  # type: ignore[assignment]


def run(args: argparse.Namespace) -> int:
    from trimcage.trace.runtime import start

    quiet_warnings()
    target = target_from_args(args)
    opts = run_options(args)
    with start(target, opts) as c:
        def forward(sig: int, _frame: Any) -> None:
            c.signal(sig)
        old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            rc = c.wait()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        return int(rc or 0)
