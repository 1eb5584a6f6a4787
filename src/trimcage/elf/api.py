"""The elf stage's entry points: :func:`analyze_root` and :func:`analyze_image`.

Flow: entry points (``entry.py``) -> the objects the loader maps for each
(``closure.py``) plus dlopen targets -> one summary per distinct file
(``summary.py``, cached by content digest, computed in parallel) -> a
reachability walk per program (``program.py``) -> :class:`Analysis`.
Nothing from the image is executed.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import posixpath
import re
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from trimcage.elf.arch import STRUCT_ARGS, TRACKED_ARGS
from trimcage.elf.closure import (LibrarySearch, gconv_modules, nginx_modules, nss_modules,
                                  python_modules)
from trimcage.elf.entry import find_entry_points
from trimcage.elf.fsview import FsView
from trimcage.elf.interface import Analysis, AnalyzeOptions, ElfError, EntryPoint, ObjectInfo
from trimcage.elf.program import UNRESOLVED_POLICY, LoadedObject, Program, merge
from trimcage.elf.summary import SUMMARY_VERSION, summarize
from trimcage.util import sha256_bytes, write_atomic

CACHE_NS = "elf-v1"
Progress = Callable[[str], None]
ALWAYS = ("execve",)
# Strings naming these are glibc's own (static glibc mentions libc.so.6 for NSS);
# taking every export of the C library as a root would make the analysis useless.
CORE_LIBS = re.compile(r"^(libc|ld-linux[\w.-]*|libm|libdl|libpthread|librt|libresolv)\.so(\.\d+)*$")   # the kernel's exec of the entry point happens under the profile


class DirCache:
    """A JSON cache in a directory, with the store's ``cache_get_json``/``cache_put_json``."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def _file(self, ns: str, key: str) -> Path:
        return self.path / ns / key.replace(":", "_")

    def cache_get_json(self, ns: str, key: str) -> Any | None:
        try:
            return json.loads(self._file(ns, key).read_text())
        except (OSError, ValueError):
            return None

    def cache_put_json(self, ns: str, key: str, value: Any) -> None:
        f = self._file(ns, key)
        f.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(f, json.dumps(value, separators=(",", ":")))


def default_cache() -> DirCache:
    home = os.environ.get("TRIMCAGE_HOME") or str(Path.home() / ".cache" / "trimcage")
    return DirCache(Path(home) / "cache")


def _summarize_file(host_path: str, name: str) -> dict[str, Any]:
    """Worker: summary of one file, or ``{"error": message}``."""
    try:
        data = Path(host_path).read_bytes()
        return summarize(data, name)
    except ElfError as e:
        return {"error": str(e)}
    except OSError as e:
        return {"error": f"{name}: cannot read: {e}"}
    except Exception as e:  # noqa: BLE001 - an analyser bug on hostile input: report, do not crash
        return {"error": f"{name}: analysis failed: {type(e).__name__}: {e}"}


class _Objects:
    """Distinct object files: parsed headers and summaries, keyed by resolved path."""

    def __init__(self, fs: FsView, cache: Any, options: AnalyzeOptions):
        self.fs = fs
        self.cache = cache
        self.options = options
        self.summaries: dict[str, dict[str, Any]] = {}
        self.hits: dict[str, bool] = {}
        self.digests: dict[str, str] = {}

    def load(self, paths: list[str], progress: Progress | None) -> None:
        todo = []
        for p in sorted(set(paths) - set(self.summaries)):
            try:
                data = self.fs.read(p)
            except ElfError as e:
                self.summaries[p] = {"error": str(e)}
                continue
            d = sha256_bytes(data)
            self.digests[p] = d
            cached = self.cache.cache_get_json(CACHE_NS, d) if self.options.use_cache else None
            if isinstance(cached, dict) and cached.get("version") == SUMMARY_VERSION:
                self.summaries[p] = cached
                self.hits[p] = True
            else:
                todo.append(p)
        if not todo:
            return
        if progress:
            progress(f"analysing {len(todo)} object(s)")
        results: dict[str, dict[str, Any]] = {}
        if self.options.workers > 1 and len(todo) > 1:
            with concurrent.futures.ProcessPoolExecutor(max_workers=self.options.workers) as ex:
                futs = {p: ex.submit(_summarize_file, str(self.fs.host_path(p)), p) for p in todo}
                for p, fut in futs.items():
                    results[p] = fut.result()
        else:
            for p in todo:
                results[p] = _summarize_file(str(self.fs.host_path(p)), p)
        for p in todo:
            s = results[p]
            self.summaries[p] = s
            self.hits[p] = False
            if "error" not in s and self.options.use_cache:
                self.cache.cache_put_json(CACHE_NS, self.digests[p], s)


_PYTHON = re.compile(r"python3(\.\d+)?$")


def analyze_root(root: Path, index: Mapping[str, Any], config: Mapping[str, Any],
                 options: AnalyzeOptions = AnalyzeOptions(), *, store: Any = None,
                 progress: Progress | None = None) -> Analysis:
    """Analyse the image whose files are ``index`` (names) and ``root`` (bytes).

    ``config`` is the image's runtime config (``Entrypoint``, ``Cmd``, ``Env``,
    ``WorkingDir``). Summaries are cached in ``store`` (anything with
    ``cache_get_json``/``cache_put_json``), else under ``$TRIMCAGE_HOME/cache``.
    Raises ``ElfError`` if an entry point is not a valid ELF file or script.
    """
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    fs = FsView(Path(root), index)
    cache = store if store is not None and hasattr(store, "cache_get_json") else default_cache()
    finder = find_entry_points(fs, config, tuple(options.include_exe), options.all_binaries)
    env = finder.env
    notes = list(finder.notes)
    files: set[str] = set()
    for e in finder.entries:
        _add_chain(fs, e.path, files)
    for s in finder.scripts:
        _add_chain(fs, s, files)
    for e in finder.entries:
        if _PYTHON.match(posixpath.basename(fs.resolve(e.path) or e.path)) and hasattr(index, "resolve"):
            from trimcage.elf.scripts import python_closure

            argv = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])] or [e.path]
            sc = python_closure(Path(root), index, fs.resolve(e.path) or e.path, argv, env,
                                cwd=config.get("WorkingDir") or "/", cache=cache)
            files.update(sc.files)
            notes.extend(f"python: {n}" for n in sc.notes[:20])
            notes.extend(f"python: module {m} not found" for m in sc.unresolved)
    objs = _Objects(fs, cache, options)
    entries = [e.path for e in finder.entries]
    objs.load([fs.resolve(p) or p for p in entries], progress)
    for p in entries:
        s = objs.summaries[fs.resolve(p) or p]
        if "error" in s:
            raise ElfError(s["error"])
    timings["entry_points"] = time.monotonic() - t0

    # --- the objects each program maps ------------------------------------
    t1 = time.monotonic()
    programs: list[list[tuple[str, bool]]] = []   # [(resolved path, dlopened)]
    resolved_needed: dict[str, dict[str, str | None]] = {}
    unresolved_libs: set[tuple[str, str]] = set()
    for exe in entries:
        order = _program_objects(fs, objs, exe, env, files, resolved_needed, unresolved_libs, notes, progress)
        programs.append(order)
    timings["closure"] = time.monotonic() - t1

    # --- reachability ---------------------------------------------------------
    t2 = time.monotonic()
    results = []
    for exe, order in zip(entries, programs):
        loaded = []
        for p, dl in order:
            s = objs.summaries.get(p)
            if s is None or "error" in s:
                continue
            loaded.append(LoadedObject(p, s, dlopened=dl, entry=(p == (fs.resolve(exe) or exe))))
        prog = Program(loaded)
        prog.walk()
        results.append(prog.syscall_facts(TRACKED_ARGS))
    res = merge(results)
    timings["reachability"] = time.monotonic() - t2
    syscalls = set(res.syscalls) | set(ALWAYS) if entries else set(res.syscalls)

    arguments: dict[str, dict[str, tuple[int, ...]]] = {}
    open_args: dict[str, dict[str, str]] = {}
    for sc, idxs in sorted(TRACKED_ARGS.items()):
        if sc not in syscalls:
            continue
        for i in idxs:
            if (sc, i) in STRUCT_ARGS:
                open_args.setdefault(sc, {})[str(i)] = STRUCT_ARGS[(sc, i)]
                continue
            vals, why = res.args.get((sc, i), (set(), "no site with a known number calls it"))
            if why is None and vals:
                arguments.setdefault(sc, {})[str(i)] = tuple(sorted(vals))
            else:
                open_args.setdefault(sc, {})[str(i)] = why or "no value found"

    all_objs = sorted({p for order in programs for p, _ in order})
    infos = []
    for p in all_objs:
        s = objs.summaries.get(p, {"error": f"{p}: not analysed"})
        if "error" in s:
            infos.append(ObjectInfo(path=p, kind="invalid", error=s["error"]))
            continue
        infos.append(ObjectInfo(path=p, kind=s["kind"], needed=tuple(s["needed"]),
                                resolved=resolved_needed.get(p, {}),
                                syscalls=tuple(sorted(res.per_object.get(p, ()))),
                                unresolved_sites=len(res.unresolved.get(p, ())),
                                cache_hit=objs.hits.get(p, False)))
    unres_list = sorted(x for v in res.unresolved.values() for x in v)
    timings["total"] = time.monotonic() - t0
    return Analysis(
        entry_points=tuple(finder.entries),
        files=tuple(sorted(files)),
        objects=tuple(infos),
        unresolved_libraries=tuple({"name": n, "needed_by": b} for n, b in sorted(unresolved_libs)),
        syscalls=tuple(sorted(syscalls)),
        arguments=arguments,
        open_arguments=open_args,
        unresolved_sites={"policy": UNRESOLVED_POLICY, "total": len(unres_list),
                          "per_object": {k: len(v) for k, v in sorted(res.unresolved.items())},
                          "sites": unres_list},
        notes=tuple(sorted(set(notes))),
        timings=timings,
    )


def analyze_image(image: Any, store: Any, options: AnalyzeOptions = AnalyzeOptions(), *,
                  progress: Progress | None = None) -> Analysis:
    """Analyse an :class:`~trimcage.image.interface.Image` already read into ``store``."""
    from trimcage.image.extract import rootfs
    from trimcage.image.flatten import flatten

    index = flatten(image, store)
    root = rootfs(image, store)
    return analyze_root(Path(root), index, image.runtime_config, options, store=store, progress=progress)


# --- helpers --------------------------------------------------------------------


def _add_chain(fs: FsView, path: str, files: set[str]) -> str | None:
    """Add ``path``, the symlinks passed resolving it and the final file to ``files``."""
    final, links = fs.resolve_chain(path)
    files.update(links)
    if final:
        files.add(final)
    return final


def _program_objects(fs: FsView, objs: _Objects, exe: str, env: dict[str, str], files: set[str],
                     resolved_needed: dict[str, dict[str, str | None]],
                     unresolved_libs: set[tuple[str, str]], notes: list[str],
                     progress: Progress | None) -> list[tuple[str, bool]]:
    """Resolved paths of the objects mapped for ``exe``, in symbol lookup order."""
    exe_r = fs.resolve(exe) or exe
    s0 = objs.summaries[exe_r]
    search = LibrarySearch(fs, env, s0.get("interp"))
    order: list[tuple[str, bool]] = []
    seen: set[str] = set()
    exe_rpath = [s0["rpath"]] if s0.get("rpath") else []

    def closure(start: list[str], dlopened: bool) -> None:
        queue = list(start)
        while queue:
            objs.load(queue, progress)
            nxt: list[str] = []
            for p in queue:
                if p in seen:
                    continue
                seen.add(p)
                order.append((p, dlopened))
                s = objs.summaries[p]
                if "error" in s:
                    notes.append(f"{p}: {s['error']}; its code is not analysed")
                    continue
                origin = posixpath.dirname(p)
                rpath = ([s["rpath"]] if s.get("rpath") else []) + exe_rpath
                res = resolved_needed.setdefault(p, {})
                for name in s["needed"]:
                    found = search.find(name, origin, rpath, s.get("runpath"))
                    if not found:
                        res[name] = None
                        unresolved_libs.add((name, p))
                        continue
                    for cand in found:
                        r = _add_chain(fs, cand, files)
                        if r and r not in seen:
                            nxt.append(r)
                    res[name] = fs.resolve(found[-1])
            queue = nxt

    closure([exe_r], False)
    if s0.get("interp"):
        r = _add_chain(fs, s0["interp"], files)
        if r:
            closure([r], False)
        else:
            unresolved_libs.add((s0["interp"], exe_r))
    # dlopen targets
    dl: list[str] = []
    loaded = [objs.summaries[p] for p, _ in order if "error" not in objs.summaries[p]]
    if any(s.get("soname") == "libc.so.6" for s in loaded):
        for name in nss_modules(fs):
            for cand in search.find(name, "/", [], None):
                dl.append(cand)
        for f in ("/etc/nsswitch.conf", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/host.conf",
                  "/etc/resolv.conf", "/etc/hosts", "/etc/passwd", "/etc/group"):
            if fs.is_file(f):
                _add_chain(fs, f, files)
    if any("iconv_open" in s.get("undefined", ()) for s in loaded):
        for g in gconv_modules(fs):
            _add_chain(fs, g, files)
            if g.endswith(".so"):
                dl.append(g)
    for s in loaded:
        for name in s.get("strings", ()):
            if CORE_LIBS.match(name):
                continue
            for cand in search.find(name, "/", [], None):
                dl.append(cand)
    base = posixpath.basename(exe_r)
    if base.startswith("nginx") or posixpath.basename(exe).startswith("nginx"):
        dl.extend(nginx_modules(fs))
        for c in fs.glob_files("/etc/nginx"):
            _add_chain(fs, c, files)
    if base.startswith("python"):
        notes.append(f"{exe}: Python extension modules: every .so under lib-dynload and "
                     "site/dist-packages is taken as loadable (best effort, over-approximate)")
        dl.extend(python_modules(fs, exe_r))
    targets = []
    for c in sorted(set(dl)):
        r = _add_chain(fs, c, files)
        if r and r not in seen:
            targets.append(r)
    if targets:
        closure(sorted(set(targets)), True)
    return order


__all__ = ["analyze_root", "analyze_image", "DirCache", "EntryPoint"]
