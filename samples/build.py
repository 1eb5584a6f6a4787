"""Build the sample images from Debian packages, cached by recipe hash.

Usage::

    python3 -m samples.build [--all] [--out DIR] [--force] [--no-check] [NAMES...]

A sample is made in three steps:

1. its rootfs: ``mmdebstrap --variant=minbase --include=PACKAGES`` into a
   temporary directory, with ``--customize-hook``s that copy the app files in,
   apply the recipe's configuration and clean up like the Docker image does
   (apt lists, ``/var/cache/apt/*.bin``, logs, the host's resolv.conf and
   hostname, device nodes). ``base = "empty"`` recipes (``hello-static``)
   start from an empty directory and compile their program with gcc instead;
2. the image: trimcage's writer (``scan_directory`` + ``build_image``, one
   deterministic gzip layer, times clamped to :data:`SOURCE_DATE_EPOCH`) with
   the recipe's runtime config, written with ``write_image("oci-archive:...")``;
3. a check (unless ``--no-check``): the entrypoint is started in the rootfs
   under bubblewrap (own pid/ipc/uts/network namespaces, ``/tmp`` and
   ``/run`` as tmpfs, the configured user via ``setpriv``) and the recipe's
   probes must pass inside the sandbox's network namespace (services) or the
   output must match (jobs).

Outputs go to ``$TRIMCAGE_SAMPLES`` (default ``$TRIMCAGE_HOME/samples``,
default ``~/.cache/trimcage/samples``): ``<name>.oci.tar`` and ``<name>.json``
(metadata: ``hash``, ``kind``, ``ports``, ``probes``, ``expect_output``,
``config``, ``manifest_digest``, ``size``, ``build_seconds``...). Both are
written through temporary names and renamed, the metadata last, so a sample
is either complete or absent. A sample is rebuilt only when the hash of its
recipe, its app files and :data:`BUILDER_VERSION` changes, or with ``force``.
Temporary rootfs directories are always removed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import ctypes
import dataclasses
import datetime
import fcntl
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

from samples import SAMPLES
from trimcage.errors import TrimcageError
from trimcage.util import atomic_path, dump_pretty, dumps, sha256_bytes, sha256_file

BUILDER_VERSION = "2"  # bump whenever the builder changes what it writes
SOURCE_DATE_EPOCH = 1700000000  # 2023-11-14T22:13:20Z: every build clamps its times to this
SUITE = "bookworm"
HERE = Path(__file__).resolve().parent
RECIPES = HERE / "recipes"
CHECK_TIMEOUT = 60.0
MAX_PARALLEL = 2

_RECIPE_KEYS = {"kind", "packages", "ports", "volumes", "customize", "copy", "config", "probes",
                "base", "compile", "expect_output", "description"}
_CONFIG_KEYS = {"Entrypoint", "Cmd", "Env", "WorkingDir", "User", "StopSignal", "Labels"}

# What Docker's debian:bookworm leaves out (debuerreotype's slimming), plus
# host details mmdebstrap copies in. Run as a customize hook, "$1" = rootfs.
_CLEANUP_HOOK = " ".join([
    'rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/cache/apt/archives/partial',
    '"$1"/var/cache/debconf/*-old "$1"/var/lib/dpkg/*-old "$1"/var/cache/ldconfig/aux-cache',
    '"$1"/var/log/apt/* "$1"/var/log/dpkg.log "$1"/var/log/alternatives.log "$1"/var/log/bootstrap.log',
    '"$1"/etc/resolv.conf "$1"/etc/hostname "$1"/etc/machine-id',
])


class SampleError(TrimcageError):
    """A sample could not be built or checked; the message names the sample."""


@dataclasses.dataclass(frozen=True)
class Sample:
    """A built sample: ``path`` is its ``oci-archive`` tar, ``meta`` its metadata dict."""

    name: str
    path: Path
    meta: dict[str, Any]

    @property
    def reference(self) -> str:
        """The trimcage/skopeo reference of the archive (``oci-archive:PATH``)."""
        return f"oci-archive:{self.path}"


# --- locations, recipes, hashes ------------------------------------------------


def samples_dir() -> Path:
    """``$TRIMCAGE_SAMPLES``, else ``$TRIMCAGE_HOME/samples``, else ``~/.cache/trimcage/samples``."""
    if os.environ.get("TRIMCAGE_SAMPLES"):
        return Path(os.environ["TRIMCAGE_SAMPLES"])
    home = os.environ.get("TRIMCAGE_HOME") or str(Path.home() / ".cache" / "trimcage")
    return Path(home) / "samples"


def load_recipe(name: str) -> dict[str, Any]:
    """Parse and check ``recipes/<name>.toml``; raise ``SampleError`` naming the file."""
    if name not in SAMPLES:
        raise SampleError(f"unknown sample {name!r} (known: {', '.join(SAMPLES)})")
    path = RECIPES / f"{name}.toml"
    try:
        recipe = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise SampleError(f"{path}: cannot read recipe: {e}") from e
    unknown = set(recipe) - _RECIPE_KEYS
    if unknown:
        raise SampleError(f"{path}: unknown keys {sorted(unknown)}")
    if recipe.get("kind") not in ("service", "job"):
        raise SampleError(f"{path}: kind must be 'service' or 'job'")
    config = recipe.get("config") or {}
    if set(config) - _CONFIG_KEYS or not config.get("Entrypoint"):
        raise SampleError(f"{path}: [config] needs an Entrypoint and only {sorted(_CONFIG_KEYS)}")
    if recipe["kind"] == "service" and not (recipe.get("ports") and recipe.get("probes")):
        raise SampleError(f"{path}: a service needs ports and probes")
    if recipe["kind"] == "job" and "expect_output" not in recipe:
        raise SampleError(f"{path}: a job needs expect_output")
    if recipe.get("base", "debian") not in ("debian", "empty"):
        raise SampleError(f"{path}: base must be 'debian' or 'empty'")
    for src, _dest in recipe.get("copy", []) + ([[recipe["compile"]["src"], ""]] if "compile" in recipe else []):
        if not (HERE / src).resolve().is_relative_to(HERE / "apps"):
            raise SampleError(f"{path}: {src!r} is not under samples/apps")
    return recipe


def _app_files(recipe: dict[str, Any]) -> list[str]:
    files = [src for src, _dest in recipe.get("copy", [])]
    if "compile" in recipe:
        files.append(recipe["compile"]["src"])
    return sorted(files)


def recipe_hash(name: str) -> str:
    """``sha256:`` over the recipe file, the app files it uses and :data:`BUILDER_VERSION`."""
    recipe = load_recipe(name)
    parts = {"builder": BUILDER_VERSION, "suite": SUITE, "epoch": SOURCE_DATE_EPOCH,
             "recipe": sha256_file(RECIPES / f"{name}.toml"),
             "apps": {src: sha256_file(HERE / src) for src in _app_files(recipe)}}
    return sha256_bytes(dumps(parts))


def image_config(name: str, recipe: dict[str, Any]) -> dict[str, Any]:
    """The runtime config (``config`` member of the image config) of a sample."""
    cfg: dict[str, Any] = {k: v for k, v in (recipe.get("config") or {}).items()}
    env = list(cfg.get("Env", []))
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    cfg["Env"] = env
    if recipe.get("ports"):
        cfg["ExposedPorts"] = {f"{p}/tcp": {} for p in recipe["ports"]}
    if recipe.get("volumes"):
        cfg["Volumes"] = {v: {} for v in recipe["volumes"]}
    labels = {"org.opencontainers.image.title": f"trimcage-sample-{name}",
              "org.opencontainers.image.description": f"trimcage sample '{name}' built from Debian {SUITE}",
              "dev.trimcage.sample.kind": recipe["kind"]}
    labels.update(cfg.get("Labels", {}))
    cfg["Labels"] = labels
    return cfg


def _log(msg: str) -> None:
    print(f"[samples] {msg}", file=sys.stderr, flush=True)


# --- rootfs ---------------------------------------------------------------------


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()).rstrip("/") + "/"
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = line.split()[4].replace("\\040", " ")
            if mnt.startswith(prefix) or mnt == prefix.rstrip("/"):
                out.append(mnt)
    return out


def _safe_rmtree(path: Path) -> None:
    """Remove a temporary rootfs, first unmounting anything left mounted inside it."""
    if not path.exists():
        return
    for mnt in sorted(_mounts_under(path), reverse=True):
        subprocess.run(["umount", "-l", mnt], capture_output=True)
    if _mounts_under(path):
        raise SampleError(f"{path}: still has mounts inside, not removing it")
    shutil.rmtree(path, ignore_errors=True)


def _mmdebstrap(name: str, recipe: dict[str, Any], root: Path, logfile: Path) -> None:
    hooks: list[str] = []
    for src, dest in recipe.get("copy", []):
        dest_q = shlex.quote(dest.lstrip("/"))
        hooks.append(f'mkdir -p "$1"/$(dirname {dest_q}) && '
                     f'install -o 0 -g 0 -m 0644 {shlex.quote(str(HERE / src))} "$1"/{dest_q}')
    hooks.extend(recipe.get("customize", []))
    hooks.append(_CLEANUP_HOOK)
    cmd = ["mmdebstrap", "--variant=minbase", "--mode=root", "--format=directory",
           "--include=" + ",".join(recipe["packages"])]
    cmd += [f"--customize-hook={h}" for h in hooks]
    cmd += [SUITE, str(root)]
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(SOURCE_DATE_EPOCH), LC_ALL="C.UTF-8")
    with open(logfile, "wb") as log:
        cp = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
    if cp.returncode != 0:
        tail = logfile.read_text(errors="replace").strip().splitlines()[-15:]
        raise SampleError(f"{name}: mmdebstrap failed (exit {cp.returncode}):\n  " + "\n  ".join(tail))
    _docker_like_cleanup(name, root)


def _docker_like_cleanup(name: str, root: Path) -> None:
    """Empty ``/dev`` (the runtime provides devices) and ``/var/lib/apt/lists`` (mmdebstrap
    leaves ``lock`` and ``partial`` after the hooks), like Docker's debian image."""
    if _mounts_under(root):
        raise SampleError(f"{name}: {root} still has mounts after mmdebstrap")
    for rel in ("dev", "var/lib/apt/lists"):
        d = root / rel
        if d.is_symlink() or not d.is_dir():
            continue
        for child in d.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()


def _compile(name: str, recipe: dict[str, Any], root: Path) -> None:
    spec = recipe["compile"]
    dest = root / spec["dest"].lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["gcc", *spec.get("cflags", []), "-o", str(dest), str(HERE / spec["src"])]
    cp = subprocess.run(cmd, capture_output=True, text=True)
    if cp.returncode != 0:
        raise SampleError(f"{name}: {' '.join(cmd)} failed: {cp.stderr.strip()}")
    os.chmod(dest, 0o755)
    os.chmod(root, 0o755)


def make_rootfs(name: str, recipe: dict[str, Any], root: Path, logfile: Path) -> None:
    """Fill the empty directory ``root`` with the sample's file tree."""
    if recipe.get("base", "debian") == "empty":
        _compile(name, recipe, root)
    else:
        _mmdebstrap(name, recipe, root, logfile)


# --- image ------------------------------------------------------------------------


def write_sample_image(name: str, root: Path, config: dict[str, Any], dest: Path, store_home: Path) -> str:
    """Pack ``root`` into one deterministic layer and write ``oci-archive:dest``; return the manifest digest."""
    from trimcage.image.api import write_image
    from trimcage.image.store import Store
    from trimcage.image.writer import build_image, scan_directory

    store = Store(store_home)
    index = scan_directory(root)
    created = datetime.datetime.fromtimestamp(SOURCE_DATE_EPOCH, datetime.timezone.utc)
    image = build_image(store, root, index.iter_entries(), config, mtime=SOURCE_DATE_EPOCH,
                        created=created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        history_comment=f"trimcage sample {name} (samples/build.py v{BUILDER_VERSION})")
    written = write_image(f"oci-archive:{dest}", image, store)
    return written if isinstance(written, str) and written.startswith("sha256:") else image.manifest_digest


# --- check: start the entrypoint under bubblewrap -----------------------------------------


def _user_ids(root: Path, user: str) -> tuple[int, int]:
    name = user.split(":")[0]
    if name.isdigit():
        return int(name), int(user.split(":")[1]) if ":" in user else int(name)
    for line in (root / "etc/passwd").read_text().splitlines():
        f = line.split(":")
        if len(f) >= 4 and f[0] == name:
            return int(f[2]), int(f[3])
    raise SampleError(f"user {user!r} not in {root}/etc/passwd")


def bwrap_command(root: Path, config: dict[str, Any]) -> list[str]:
    """A bubblewrap command line that runs the image's entrypoint in ``root`` as the runtime would."""
    cmd = ["bwrap", "--bind", str(root), "/", "--proc", "/proc", "--dev", "/dev",
           "--perms", "1777", "--tmpfs", "/dev/shm", "--perms", "1777", "--tmpfs", "/tmp", "--perms", "0755", "--tmpfs", "/run",
           "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net", "--unshare-cgroup-try",
           "--die-with-parent", "--new-session", "--clearenv"]
    for e in config.get("Env", []):
        k, _, v = e.partition("=")
        cmd += ["--setenv", k, v]
    cmd += ["--chdir", config.get("WorkingDir") or "/", "--"]
    argv = list(config.get("Entrypoint", [])) + list(config.get("Cmd", []))
    user = config.get("User")
    if user and user not in ("root", "0", "0:0"):
        uid, gid = _user_ids(root, user)
        cmd += ["/usr/bin/setpriv", f"--reuid={uid}", f"--regid={gid}", "--init-groups", "--"]
    return cmd + argv


_CLONE_NEWNET = 0x40000000


def _child_pid(pid: int, timeout: float = 10.0) -> int | None:
    """The first child of ``pid`` (bubblewrap's sandboxed side), waiting for it to appear."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return None
        if kids:
            return int(kids[0])
        time.sleep(0.05)
    return None


def probe_in_netns(pid: int, probe: dict[str, Any], timeout: float = 5.0) -> tuple[bool, str]:
    """Run :func:`run_probe` inside the network namespace of process ``pid``.

    A helper thread joins the namespace with ``setns`` (which moves only the
    calling thread), so the sandbox's loopback ports never meet the host's.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    result: list[tuple[bool, str]] = []

    def target() -> None:
        try:
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        except OSError as e:
            result.append((False, f"no network namespace: {e}"))
            return
        try:
            if libc.setns(fd, _CLONE_NEWNET) != 0:
                result.append((False, f"setns: {os.strerror(ctypes.get_errno())}"))
                return
        finally:
            os.close(fd)
        result.append(run_probe(probe, timeout))

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join()
    return result[0] if result else (False, "probe thread failed")


def run_probe(probe: dict[str, Any], timeout: float = 5.0) -> tuple[bool, str]:
    """Run one probe in the caller's network namespace (shared probe format); return (passed, detail).

    ``http``: GET, status must equal ``expect_status`` (default 200); ``tcp``:
    connect, send ``send``, the reply must contain ``expect``; ``cmd``: a host
    shell command that must exit 0. ``exec`` is not supported here.
    """
    try:
        if "http" in probe:
            try:
                with urllib.request.urlopen(probe["http"], timeout=timeout) as r:
                    status = r.status
            except urllib.error.HTTPError as e:
                status = e.code
            want = probe.get("expect_status", 200)
            return status == want, f"HTTP {status}"
        if "tcp" in probe:
            host, _, port = probe["tcp"].rpartition(":")
            with socket.create_connection((host, int(port)), timeout=timeout) as s:
                if probe.get("send"):
                    s.sendall(probe["send"].encode())
                data = s.recv(4096).decode(errors="replace")
            return probe.get("expect", "") in data, data.strip()[:80]
        if "cmd" in probe:
            cp = subprocess.run(probe["cmd"], shell=True, capture_output=True, text=True, timeout=timeout)
            return cp.returncode == 0, (cp.stdout + cp.stderr).strip()[:80]
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    return False, f"unsupported probe {probe}"


def check_rootfs(name: str, root: Path, recipe: dict[str, Any], config: dict[str, Any]) -> str:
    """Start the entrypoint under bubblewrap; services must pass every probe, jobs print ``expect_output``.

    Return a one-line summary; raise ``SampleError`` with the process output on failure.
    The process is killed (with its pid namespace) before returning.
    """
    cmd = bwrap_command(root, config)
    if recipe["kind"] == "job":
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=CHECK_TIMEOUT)
        if cp.returncode != 0 or recipe["expect_output"] not in cp.stdout:
            raise SampleError(f"{name}: check failed: exit {cp.returncode}, output {cp.stdout!r} {cp.stderr!r}")
        return f"printed {cp.stdout.strip()!r}"
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + CHECK_TIMEOUT
            inner = _child_pid(proc.pid)
            if inner is None:
                raise SampleError(f"{name}: check failed: bubblewrap did not start")
            pending = list(recipe["probes"])
            detail = ""
            while pending:
                if proc.poll() is not None:
                    break
                ok, detail = probe_in_netns(inner, pending[0])
                if ok:
                    pending.pop(0)
                    continue
                if time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            if pending:
                out.seek(0)
                text = out.read().decode(errors="replace")[-2000:]
                state = "exited" if proc.poll() is not None else "running"
                raise SampleError(f"{name}: check failed: probe {pending[0]} ({detail}); service {state}; "
                                  f"output:\n{text}")
            return f"{len(recipe['probes'])} probe(s) passed"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# --- build and cache -----------------------------------------------------------------


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _read_meta(out: Path, name: str) -> dict[str, Any] | None:
    try:
        meta = json.loads((out / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and (out / f"{name}.oci.tar").is_file() else None


def cached(name: str, out: Path | None = None) -> Sample | None:
    """The sample if it is built and its hash matches the current recipe, else None."""
    out = Path(out) if out else samples_dir()
    meta = _read_meta(out, name)
    if meta is None or meta.get("hash") != recipe_hash(name):
        return None
    return Sample(name, out / f"{name}.oci.tar", meta)


def build(name: str, out: Path | None = None, *, check: bool = True,
          log: Callable[[str], None] = _log) -> Sample:
    """Build one sample unconditionally and return it; call it under the sample's lock (:func:`ensure`)."""
    out = Path(out) if out else samples_dir()
    recipe = load_recipe(name)
    digest_of_recipe = recipe_hash(name)
    config = image_config(name, recipe)
    work = out / ".build"
    work.mkdir(parents=True, exist_ok=True)
    for stale in work.glob(f"{name}.*"):  # left by a killed build of this sample (callers hold its lock)
        _safe_rmtree(stale)
    start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=f"{name}.", dir=work))
    try:
        root = tmp / "rootfs"
        root.mkdir()
        what = f"packages {', '.join(recipe['packages'])}" if recipe.get("packages") else "gcc"
        log(f"{name}: building rootfs ({what})")
        make_rootfs(name, recipe, root, tmp / "mmdebstrap.log")
        t_rootfs = time.monotonic() - start
        log(f"{name}: rootfs ready in {t_rootfs:.1f} s; writing the image")
        with atomic_path(out / f"{name}.oci.tar") as archive:
            archive.unlink()
            manifest_digest = write_sample_image(name, root, config, archive, tmp / "store")
            os.chmod(archive, 0o644)
            size = archive.stat().st_size
            summary = "not checked"
            if check:
                summary = check_rootfs(name, root, recipe, config)
                log(f"{name}: check: {summary}")
        seconds = round(time.monotonic() - start, 1)
        meta = {
            "name": name, "hash": digest_of_recipe, "builder_version": BUILDER_VERSION,
            "kind": recipe["kind"], "ports": list(recipe.get("ports", [])),
            "probes": list(recipe.get("probes", [])), "expect_output": recipe.get("expect_output"),
            "packages": list(recipe.get("packages", [])), "config": config,
            "manifest_digest": manifest_digest, "size": size, "archive": f"{name}.oci.tar",
            "build_seconds": seconds, "check": summary, "suite": SUITE,
        }
        with atomic_path(out / f"{name}.json") as tmp_meta:
            tmp_meta.write_text(dump_pretty(meta))
            os.chmod(tmp_meta, 0o644)
        log(f"{name}: built in {seconds:.1f} s, {size / 1e6:.1f} MB, {manifest_digest}")
        return Sample(name, out / f"{name}.oci.tar", meta)
    finally:
        _safe_rmtree(tmp)


def ensure(name: str, *, out: Path | None = None, force: bool = False, check: bool = True,
           log: Callable[[str], None] = _log) -> Sample:
    """Return the sample, building it first if it is missing, stale or ``force`` is set.

    Safe to call from several processes: builds of one sample are serialised by a
    lock file, and a process that waited finds the other's result in the cache.
    """
    out = Path(out) if out else samples_dir()
    if not force and (hit := cached(name, out)) is not None:
        return hit
    with _locked(out / ".locks" / f"{name}.lock"):
        if not force and (hit := cached(name, out)) is not None:
            return hit
        return build(name, out, check=check, log=log)


def ensure_many(names: list[str], *, out: Path | None = None, force: bool = False, check: bool = True,
                jobs: int = MAX_PARALLEL) -> dict[str, Sample | SampleError]:
    """Ensure several samples, at most ``jobs`` at a time; failures are returned, not raised."""
    results: dict[str, Sample | SampleError] = {}
    lock = threading.Lock()

    def one(n: str) -> None:
        try:
            s: Sample | SampleError = ensure(n, out=out, force=force, check=check)
        except Exception as e:  # one failed sample must not stop the others; reported by main()
            s = e if isinstance(e, SampleError) else SampleError(f"{n}: {type(e).__name__}: {e}")
        with lock:
            results[n] = s

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(jobs, MAX_PARALLEL))) as pool:
        list(pool.map(one, names))
    return {n: results[n] for n in names}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m samples.build", description=__doc__.split("\n")[0])
    p.add_argument("names", nargs="*", metavar="NAME", help=f"samples to build ({', '.join(SAMPLES)})")
    p.add_argument("--all", action="store_true", help="build every sample")
    p.add_argument("--out", type=Path, help="output directory (default $TRIMCAGE_SAMPLES)")
    p.add_argument("--force", action="store_true", help="rebuild even if the cache is current")
    p.add_argument("--no-check", action="store_true", help="skip starting the entrypoint under bwrap")
    p.add_argument("-j", "--jobs", type=int, default=MAX_PARALLEL, help="parallel builds (at most 2)")
    args = p.parse_args(argv)
    names = list(SAMPLES) if args.all else args.names
    if not names:
        p.error("name samples to build or use --all")
    bad = [n for n in names if n not in SAMPLES]
    if bad:
        print(f"samples.build: unknown sample(s) {', '.join(bad)} (known: {', '.join(SAMPLES)})", file=sys.stderr)
        return 2
    results = ensure_many(names, out=args.out, force=args.force, check=not args.no_check, jobs=args.jobs)
    failed = 0
    for n, r in results.items():
        if isinstance(r, Sample):
            print(f"{n}\t{r.path}\t{r.meta['size']}\t{r.meta['build_seconds']}s\t{r.meta['manifest_digest']}")
        else:
            failed += 1
            print(f"samples.build: {r}", file=sys.stderr)
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
