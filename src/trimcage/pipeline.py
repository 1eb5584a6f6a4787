"""The whole job, stage after stage: what ``trimcage build`` runs.

read → flatten/extract → analyze (static) → trace (dynamic) → slim → policy →
write outputs → verify → report. This module only wires the stages; each
decision lives in its stage. Output is written to a temporary directory
renamed onto ``-o DIR`` at the end, so a failure leaves no partial output.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from trimcage.elf.api import analyze_image, analyze_root
from trimcage.elf.interface import AnalyzeOptions, Analysis
from trimcage.errors import TrimcageError
from trimcage.image.api import read_image, write_image
from trimcage.image.extract import rootfs
from trimcage.image.flatten import flatten
from trimcage.image.interface import Image, TransportOptions
from trimcage.image.store import Store, open_store
from trimcage.policy.builder import build_policy, combined_syscalls, socket_family_rule
from trimcage.policy.capabilities import static_privileged_ops
from trimcage.policy.interface import Policy, PolicyInputs
from trimcage.policy.render import render_k8s, render_run_sh
from trimcage.report.interface import ImageStats, Report
from trimcage.report.render import make_report, write_report
from trimcage.slim.interface import MODES, SlimError, SlimOptions, SlimResult
from trimcage.slim.rebuild import slim_image
from trimcage.trace.interface import Probe, RunOptions, Target
from trimcage.trace.tracer import TraceOptions, trace
from trimcage.util import atomic_path, dump_pretty
from trimcage.verify.interface import VerifyResult
from trimcage.verify.run import VerifyOptions, verify

Say = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    """Everything ``trimcage build`` takes besides the image reference."""

    output: Path
    mode: str = "combined"
    probes: tuple[Probe, ...] = ()
    ready_timeout: float = 30.0
    duration: float = 2.0
    runtime: str = "embedded"
    includes: tuple[str, ...] = ()
    keep_shell: bool = False
    tag: str | None = None
    load: str | None = None
    verify: bool = True
    trace_file: Path | None = None
    transport: TransportOptions = TransportOptions()


@dataclasses.dataclass(frozen=True)
class BuildResult:
    report: Report
    slim: SlimResult
    policy: Policy
    verify: VerifyResult | None
    output: Path
    loaded_as: str | None


def merge_arguments(static: Analysis | None, observed: Mapping[str, Mapping[str, list[int]]] | None,
                    mode: str) -> dict[str, dict[str, tuple[int, ...]]]:
    """Argument rules for ``mode``: arguments the static analysis resolved at every site.

    In ``combined`` mode the traced values are added to the static ones (a value
    the trace saw is always allowed). A socket family computed at run time gets
    :func:`~trimcage.policy.builder.socket_family_rule`. ``dynamic`` mode has no
    sites to reason about, so it emits no argument rules.
    """
    if mode == "dynamic" or static is None:
        return {}
    observed = observed or {}
    out: dict[str, dict[str, tuple[int, ...]]] = {}
    for name, args in static.arguments.items():
        for idx, values in args.items():
            seen = set(values)
            if mode == "combined":
                seen |= set((observed.get(name) or {}).get(idx, ()))
            out.setdefault(name, {})[idx] = tuple(sorted(seen))
    for name in ("socket", "socketpair"):
        if name in static.syscalls and "0" in (static.open_arguments.get(name) or {}):
            seen = tuple((observed.get(name) or {}).get("0", ())) if mode == "combined" else ()
            out.setdefault(name, {})["0"] = socket_family_rule(None, seen)
    return out


def executed_paths(doc: Mapping[str, Any]) -> list[str]:
    """In-image paths a trace executed successfully."""
    out = []
    for path, info in (doc.get("files") or {}).items():
        ops = info.get("ops") if isinstance(info, dict) else info
        for op in ops or ():
            name = op.get("op") if isinstance(op, dict) else op
            ok = op.get("ok", True) if isinstance(op, dict) else True
            if name == "exec" and ok:
                out.append(path)
                break
    return sorted(out)


def traced_paths(doc: Mapping[str, Any]) -> list[str]:
    """Every in-image path the trace touched (missing ones are skipped by the keep-set)."""
    return sorted(doc.get("files") or {})


def _uids(doc: Mapping[str, Any]) -> set[int]:
    uids: set[int] = set()
    for proc in doc.get("processes") or ():
        for key in ("uid", "euid"):
            if isinstance(proc.get(key), int):
                uids.add(proc[key])
        for ch in proc.get("uid_changes") or ():
            if isinstance(ch, dict):
                uids.update(v for v in ch.values() if isinstance(v, int))
    return uids


def run_as(doc: Mapping[str, Any] | None, index, root: Path, config: Mapping[str, Any]) -> str:
    """Numeric ``uid:gid`` the entrypoint runs as: from the trace, else the image's passwd."""
    user = (doc or {}).get("user")
    if isinstance(user, dict) and isinstance(user.get("uid"), int):
        return f"{user['uid']}:{user.get('gid', user['uid'])}"
    from trimcage.slim.accounts import configured_user, parse_colon_file
    from trimcage.slim.rebuild import reader_for

    try:
        passwd = reader_for(root, index)("/etc/passwd").decode("utf-8", "replace")
    except OSError:
        passwd = ""
    uid, gid = configured_user(config, parse_colon_file(passwd, 7))
    if uid is None:
        raise SlimError(f"user {config.get('User')!r} of the image config is not in its /etc/passwd")
    return f"{uid}:{gid if gid is not None else uid}"


def build(ref: str, opts: BuildOptions, say: Say = lambda s: None, store: Store | None = None) -> BuildResult:
    """Run the whole job on ``ref``; write ``opts.output``; return what was made.

    Raises a ``TrimcageError`` subclass on bad input (nothing is written then).
    The result's ``verify`` is None with ``verify=False``.
    """
    if opts.mode not in MODES:
        raise SlimError(f"unknown mode {opts.mode!r} (one of {', '.join(MODES)})")
    store = store or open_store()
    timings: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        say(f"{name}...")
        t = time.monotonic()
        try:
            return fn()
        finally:
            timings[name] = round(time.monotonic() - t, 3)

    image = timed("read", lambda: read_image(ref, store, opts.transport))
    index = timed("flatten", lambda: flatten(image, store))
    root = timed("extract", lambda: rootfs(image, store))
    target = Target(str(root), dict(image.runtime_config), ref, image)

    analysis = None
    if opts.mode in ("combined", "static"):
        analysis = timed("analyze", lambda: analyze_image(image, store, AnalyzeOptions()))
    doc: dict[str, Any] | None = None
    if opts.mode in ("combined", "dynamic") and opts.trace_file is not None:
        doc = _load_trace(opts.trace_file)
    elif opts.mode in ("combined", "dynamic"):
        topts = TraceOptions(probes=opts.probes, ready_timeout=opts.ready_timeout, duration=opts.duration)
        doc = timed("trace", lambda: trace(target, RunOptions(runtime=opts.runtime), topts))
    dynamic_files: list[str] = []
    if opts.mode == "dynamic" and doc is not None:
        ran = executed_paths(doc)
        closure = timed("closure", lambda: analyze_root(Path(root), index, image.runtime_config,
                                                        AnalyzeOptions(include_exe=tuple(ran)), store=store))
        dynamic_files = list(closure.files)

    static_files = list(analysis.files) if analysis else None
    traced = (traced_paths(doc) + dynamic_files) if doc is not None else None
    sopts = SlimOptions(mode=opts.mode, includes=opts.includes, keep_shell=opts.keep_shell,
                        source_name=image.name)
    slim = timed("slim", lambda: slim_image(image, store, index, Path(root), sopts, static_files=static_files,
                                            traced_files=traced, executed=executed_paths(doc or {}),
                                            extra_uids=_uids(doc or {}),
                                            entry_points=[ep.path for ep in analysis.entry_points]
                                            if analysis else ()))

    observed = set((doc or {}).get("syscalls") or {})
    static_set = set(analysis.syscalls) if analysis else set()
    syscalls = {"combined": combined_syscalls(static_set, observed), "static": static_set,
                "dynamic": observed}[opts.mode]
    inputs = PolicyInputs(
        syscalls=frozenset(syscalls),
        arguments=merge_arguments(analysis, (doc or {}).get("arguments"), opts.mode),
        privileged_ops=static_privileged_ops(static_set) if opts.mode == "static"
        else tuple((doc or {}).get("privileged_ops") or ()),
        writes=tuple((doc or {}).get("writes") or ()),
        volumes=tuple(sorted(image.runtime_config.get("Volumes") or {})),
        user=run_as(doc, index, Path(root), image.runtime_config),
        mode=opts.mode,
    )
    policy = timed("policy", lambda: build_policy(inputs))

    name = opts.tag or _slim_name(image, ref)
    ports = sorted(int(p.split("/")[0]) for p in (image.runtime_config.get("ExposedPorts") or {}))
    out = Path(opts.output)
    with atomic_path(out, is_dir=True) as tmp:
        timed("write", lambda: write_image(f"oci-archive:{tmp / 'image.oci.tar'}:{name.rsplit(':', 1)[-1]}",
                                           slim.image, store))
        (tmp / "seccomp.json").write_text(json.dumps(policy.seccomp, indent=2, sort_keys=True) + "\n")
        (tmp / "run.sh").write_text(render_run_sh(policy, name, ports=ports,
                                                  volumes=inputs.volumes))
        (tmp / "run.sh").chmod(0o755)
        (tmp / "k8s.yaml").write_text(render_k8s(policy, name.split("/")[-1].split(":")[0], name, ports=ports))
        if analysis is not None:
            (tmp / "analysis.json").write_text(analysis.dumps())
        if doc is not None:
            (tmp / "trace.json").write_text(dump_pretty(doc))
        result = None
        if opts.verify:
            slim_root = timed("extract slim", lambda: rootfs(slim.image, store))
            slim_target = Target(str(slim_root), dict(slim.image.runtime_config), f"{name} (slim)", slim.image)
            vopts = VerifyOptions(probes=opts.probes, seccomp=str(tmp / "seccomp.json"), cap_drop=("ALL",),
                                  cap_add=tuple(policy.capabilities), read_only=policy.read_only_rootfs,
                                  runtime=opts.runtime, ready_timeout=opts.ready_timeout)
            result = timed("verify", lambda: verify(target, slim_target, vopts))
            (tmp / "verify.json").write_text(dump_pretty(result.to_json()))
        per_mode = {opts.mode: len(syscalls)}
        if analysis is not None:
            per_mode["static"] = len(static_set)
        if doc is not None:
            per_mode["observed"] = len(observed)
        report = make_report(name, ImageStats(slim.bytes_before, slim.files_before, len(slim.packages.before)),
                             ImageStats(slim.bytes_after, slim.files_after, len(slim.packages.kept)),
                             policy, packages_removed=slim.packages.removed, syscalls_per_mode=per_mode,
                             timings=timings, attacks=result.attacks if result else ())
        write_report(report, tmp / "report.json")
    loaded = None
    if opts.load:
        dest = {"docker": "docker-daemon", "podman": "containers-storage"}.get(opts.load)
        if dest is None:
            raise TrimcageError(f"--load {opts.load}: one of docker, podman")
        write_image(f"{dest}:{name}", slim.image, store)
        loaded = f"{dest}:{name}"
    return BuildResult(report=report, slim=slim, policy=policy, verify=result, output=out, loaded_as=loaded)


def _load_trace(path: Path) -> dict[str, Any]:
    """A trace.json written by ``trimcage trace`` (or an earlier build)."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise TrimcageError(f"{path}: cannot read the trace: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), dict):
        raise TrimcageError(f"{path}: not a trace.json (no 'files' object)")
    return doc


def _slim_name(image: Image, ref: str = "") -> str:
    """``<repo>:<tag>-slim``: from the image's own name, else from the reference
    (a file's name without ``.oci.tar``/``.tar``), else ``trimcage-slim:latest``."""
    import re

    name = image.name or ""
    if not name:
        from trimcage.image.reference import parse_reference

        try:
            parsed = parse_reference(ref)
        except TrimcageError:
            parsed = None
        if parsed is not None and parsed.name:
            name = parsed.name + (f":{parsed.tag}" if parsed.tag else "")
        elif parsed is not None and parsed.path:
            stem = re.sub(r"(\.oci)?\.tar$", "", Path(parsed.path).name.lower())
            stem = re.sub(r"[^a-z0-9._-]+", "-", stem).strip("-._") or "trimcage"
            name = f"{stem}:{parsed.tag or 'latest'}"
    if not name:
        return "trimcage-slim:latest"
    repo, sep, tag = name.rpartition(":")
    if not sep or "/" in tag:
        repo, tag = name, "latest"
    return f"{repo}:{tag}-slim"
