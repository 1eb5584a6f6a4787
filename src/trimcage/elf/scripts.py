"""Static closure of interpreted entry points: what a Python program can import.

The ELF closure of ``python3`` gives the interpreter and its shared libraries,
not the ``.py`` modules it loads. :func:`python_closure` computes ``sys.path``
as CPython would for that interpreter in that image, then follows imports
with :mod:`ast` (nothing from the image is executed, files are read only
through the image index and :func:`~trimcage.image.writer.open_beneath`).

Soundness rules (over-approximate on purpose):

* every ``import``/``from ... import`` counts, wherever it is (functions,
  ``try``/``except ImportError``, ``if sys.platform == ...``); so do
  ``__import__("x")`` and ``importlib.import_module("x")`` with constant
  strings; other dynamic imports are listed in ``notes``;
* a *third-party* package (its top level found in a site directory:
  ``dist-packages``/``site-packages``, the user site or a ``.pth`` directory)
  is kept **whole** -- its top-level directory, every file in it, and the
  imports of every module in it -- plus its ``*.dist-info``/``*.egg-info``
  metadata, because such packages import submodules by computed names and
  ``importlib.metadata`` reads the metadata;
* the standard library is kept module by module, except the packages in
  :data:`WHOLE_STDLIB` (``encodings`` looks codecs up by name at run time;
  the others import submodules dynamically), which are kept whole when touched;
* ``sysconfig`` brings every ``_sysconfigdata_*.py`` (imported by computed name);
* the startup imports (:data:`STARTUP`) are followed like any other import,
  ``site``/``sitecustomize``/``usercustomize`` unless ``-S``;
* an extension module (``.so``) is kept and listed in ``extensions`` (the ELF
  closure must add its libraries); the NUL-terminated strings in it that name
  an importable module are taken as imports (C code calls
  ``PyImport_ImportModule("name")``);
* ``__pycache__/<name>.cpython-3X*.pyc`` next to a kept ``.py`` is kept too
  (faster start-up when ``PYTHONDONTWRITEBYTECODE`` is set, as in Docker images);
* modules that cannot be found are never dropped silently: they are listed
  in ``unresolved`` (names guarded by ``try``/``except`` are summarised in one
  note, the others get a note naming the importing file); a file that does not
  parse is kept, with a note saying its imports are unknown.
"""

from __future__ import annotations

import ast
import concurrent.futures
import posixpath
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from trimcage.image.interface import DIR, HARDLINK, REG, SYMLINK, Entry, ImageError
from trimcage.image.paths import normalize, resolve_chain
from trimcage.image.writer import open_beneath

#: Standard-library packages kept whole once any part of them is imported.
WHOLE_STDLIB = frozenset({"encodings", "email", "json", "http", "importlib", "logging", "collections",
                          "concurrent", "xml", "urllib"})

#: What CPython imports before ``__main__`` (frozen in 3.11+, but the files are kept
#: anyway: ``os.py`` is the landmark ``getpath`` looks for, and frozen modules fall
#: back to the files with ``-X frozen_modules=off``).
STARTUP = ("encodings", "codecs", "io", "abc", "os", "stat", "posixpath", "genericpath",
           "_collections_abc", "_sitebuiltins", "zipimport", "importlib._bootstrap",
           "importlib._bootstrap_external")

#: Modules built into every CPython even when the binary exports no ``PyInit_<name>``.
CORE_BUILTINS = frozenset({"sys", "builtins", "marshal", "_warnings", "_imp", "_io", "_thread",
                           "_weakref", "_abc", "_codecs", "_signal", "_tracemalloc", "posix",
                           "_frozen_importlib", "_frozen_importlib_external", "_string", "_sre",
                           "_operator", "_functools", "_collections", "itertools", "atexit",
                           "errno", "gc", "pwd", "_stat", "time", "_symtable", "faulthandler",
                           "_typing", "_tokenize", "_ast", "__main__"})

#: Names found in ``sys.modules`` without a file of their own.
ALIASES = {"os.path": "posixpath"}

_MAX_READ = 64 << 20
_NAME_RE = re.compile(rb"(?<![\x21-\x7e])([A-Za-z_][A-Za-z0-9_]{0,63}(?:\.[A-Za-z_][A-Za-z0-9_]{0,63}){0,5})\x00")
_VERSION_RE = re.compile(r"python(3)\.(\d+)")
CACHE_NS = "py-imports-v1"
_PARSE_CACHE: dict[str, tuple[list[tuple[str, bool, int]], list[str]]] = {}
_CACHE_LOCK = threading.Lock()
_TRY = (ast.Try, ast.TryStar) if hasattr(ast, "TryStar") else (ast.Try,)
_BODIES = ("body", "orelse", "finalbody", "handlers", "cases")


@dataclass(frozen=True)
class ScriptClosure:
    """What an interpreted entry point needs, as absolute in-image paths.

    ``files``: every path to keep (regular files, the symlinks traversed to
    reach them, hardlink targets, and directories that must exist: packages,
    ``lib-dynload``), sorted, unique. ``extensions``:
    the extension modules (``.so``) among them, whose shared libraries the ELF
    closure must add. ``unresolved``: module names imported somewhere but not
    found (never silently dropped). ``notes``: dynamic imports not followed,
    syntax errors, unreadable files, guarded misses. ``sys_path``: the path
    computed for the interpreter. ``executables``: (shell closure) the
    resolved programs a script runs, whose ELF closure the caller adds. All
    tuples are sorted except ``sys_path`` and ``notes`` (in discovery order,
    deterministic).
    """

    files: tuple[str, ...]
    extensions: tuple[str, ...]
    unresolved: tuple[str, ...]
    notes: tuple[str, ...]
    sys_path: tuple[str, ...] = ()
    executables: tuple[str, ...] = ()


@dataclass
class _Mod:
    name: str
    kind: str  # "builtin", "source", "bytecode", "extension", "package", "namespace"
    file: str | None  # resolved in-image path of the code file (None: builtin, namespace)
    dirs: tuple[str, ...] = ()  # __path__ of a package (resolved directories)
    origin: str = ""  # the sys.path entry the top-level package came from


class _Tree:
    """Safe access to the image: names and links from the index, bytes from open_beneath."""

    def __init__(self, root: Path, index: Mapping[str, Entry]):
        self.root = Path(root)
        self.index = index
        self.children: dict[str, list[str]] = {}
        self._kinds: dict[str, str | None] = {}
        self._names: dict[str, frozenset[str]] = {}
        for p in index:
            if p != "/":
                self.children.setdefault(posixpath.dirname(p), []).append(posixpath.basename(p))
        for v in self.children.values():
            v.sort()

    def chain(self, path: str) -> tuple[str | None, list[str]]:
        """(resolved path or None, symlinks passed in order); ``..`` clamped at ``/``."""
        return resolve_chain(self.index, normalize(path))

    def kind(self, path: str) -> str | None:
        """REG, DIR, ... of the resolved ``path``; None if it does not resolve."""
        try:
            return self._kinds[path]
        except KeyError:
            k = self._kinds[path] = self._kind(path)
            return k

    def _kind(self, path: str) -> str | None:
        r = self.chain(path)[0]
        if r is None:
            return None
        if r == "/":
            return DIR
        t = self.index[r].type
        return REG if t in (REG, HARDLINK) else t

    def names(self, path: str) -> frozenset[str]:
        """The names in directory ``path`` (resolved), memoised; empty if it is not a directory."""
        try:
            return self._names[path]
        except KeyError:
            r = self.chain(path)[0]
            v = self._names[path] = frozenset(self.children.get(r, ())) if r else frozenset()
            return v

    def listdir(self, path: str) -> list[str]:
        r = self.chain(path)[0]
        return list(self.children.get(r, [])) if r else []

    def read(self, path: str) -> bytes:
        """Bytes of the resolved in-image file; ImageError/HostileInputError if unsafe or missing."""
        r = self.chain(path)[0]
        if r is None:
            raise ImageError(f"{path}: not in the image")
        e = self.index[r]
        if e.type == HARDLINK and e.link:
            r = e.link
        with open_beneath(self.root, r) as f:
            return f.read(_MAX_READ)

    def key(self, path: str) -> str:
        r = self.chain(path)[0] or path
        e = self.index.get(r)
        return e.digest if e is not None and e.digest else f"{r}:{e.size if e else 0}:{e.mtime if e else 0}"


# --- parsing --------------------------------------------------------------------


def _is_main_guard(n: ast.AST) -> bool:
    """True for ``if __name__ == "__main__":`` (either operand order)."""
    if not isinstance(n, ast.If) or not isinstance(n.test, ast.Compare) or len(n.test.ops) != 1 \
            or not isinstance(n.test.ops[0], ast.Eq):
        return False
    sides = [n.test.left, n.test.comparators[0]]
    return any(isinstance(x, ast.Name) and x.id == "__name__" for x in sides) and \
        any(isinstance(x, ast.Constant) and x.value == "__main__" for x in sides)


def _parse_imports(src: bytes, label: str, *, is_main: bool = False) -> tuple[list[tuple[str, bool, int]], list[str]]:
    """Imports in ``src`` as (spec, guarded, line) and notes. Pure: bytes in, lists out.

    Unless ``is_main``, the body of a top-level ``if __name__ == "__main__":``
    is skipped: it runs only when the file is the program, not when imported.

    ``spec`` is ``"abs:a.b.c"`` (``import``: every prefix is required),
    ``"from:<level>:<module>:<name>"`` (name may be a submodule or ``*``), or
    ``"dyn:<name>"`` / ``"rel:<name>"`` for constant ``__import__``/``import_module``.
    """
    try:
        tree = ast.parse(src, filename=label)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        return [], [f"{label}: does not parse ({type(e).__name__}: {getattr(e, 'msg', e)}); "
                    "file kept, its imports are unknown"]
    out: list[tuple[str, bool, int]] = []
    notes: list[str] = []
    calls = b"__import__" in src or b"import_module" in src  # else only statements need a walk

    def visit(node: ast.AST, guarded: bool) -> None:
        stack = [(node, guarded)]
        while stack:
            n, g = stack.pop()
            if isinstance(n, ast.Import):
                out.extend((f"abs:{a.name}", g, n.lineno) for a in n.names)
                continue
            if isinstance(n, ast.ImportFrom):
                for a in n.names:
                    out.append((f"from:{n.level}:{n.module or ''}:{a.name}", g, n.lineno))
                continue
            if calls and isinstance(n, ast.Call):
                f = n.func
                fname = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
                if fname in ("__import__", "import_module") and n.args:
                    a0 = n.args[0]
                    if isinstance(a0, ast.Constant) and isinstance(a0.value, str) and a0.value:
                        kind = "rel" if a0.value.startswith(".") and fname == "import_module" else "dyn"
                        out.append((f"{kind}:{a0.value}", g, n.lineno))
                        if fname == "__import__" and len(n.args) >= 4 and isinstance(n.args[3], (ast.List, ast.Tuple)):
                            for el in n.args[3].elts:
                                if isinstance(el, ast.Constant) and isinstance(el.value, str):
                                    out.append((f"from:0:{a0.value}:{el.value}", g, n.lineno))
                    else:
                        notes.append(f"{label}:{n.lineno}: {fname}() with a computed name is not followed")
            if isinstance(n, _TRY):
                for c in n.body:  # type: ignore[attr-defined]
                    stack.append((c, True))
                for c in list(n.handlers) + list(n.orelse) + list(n.finalbody):  # type: ignore[attr-defined]
                    stack.append((c, g))
                continue
            if calls:
                stack.extend((c, g) for c in ast.iter_child_nodes(n))
            else:
                for fld in _BODIES:
                    sub = getattr(n, fld, None)
                    if isinstance(sub, list):
                        stack.extend((c, g) for c in sub)

    body = tree.body
    if not is_main:
        body = [n for n in body if not _is_main_guard(n)] + [c for n in body if _is_main_guard(n)
                                                             for c in n.orelse]  # type: ignore[attr-defined]
    try:
        for n in body:
            visit(n, False)
    except RecursionError:
        notes.append(f"{label}: too deeply nested; imports found so far kept")
    out.sort(key=lambda t: (t[2], t[0]))
    return out, notes


def _literal_all(src: bytes) -> list[str]:
    """The names in a literal ``__all__ = [...]`` of a module source ([] if none)."""
    try:
        tree = ast.parse(src)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    names: list[str] = []
    for n in tree.body:
        if isinstance(n, (ast.Assign, ast.AugAssign)):
            targets = n.targets if isinstance(n, ast.Assign) else [n.target]
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets) and \
                    isinstance(n.value, (ast.List, ast.Tuple)):
                names += [e.value for e in n.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return names


def _strings(data: bytes) -> list[str]:
    """NUL-terminated identifier-like strings in binary data (candidate module names)."""
    return sorted({m.group(1).decode() for m in _NAME_RE.finditer(data)})


def parse_argv(argv: Sequence[str]) -> tuple[str, str | None, set[str]]:
    """Split a python command line: (mode, arg, single-letter flags).

    mode is ``"script"`` (arg = path), ``"module"`` (``-m``), ``"code"`` (``-c``)
    or ``"stdin"`` (no program: arg None). Flags are those CPython reads
    before the program (``I``, ``E``, ``s``, ``S``, ``W``, ``X``...).
    """
    flags: set[str] = set()
    i = 1
    while i < len(argv):
        a = argv[i]
        if a == "-" or not a.startswith("-"):
            return ("stdin", None, flags) if a == "-" else ("script", a, flags)
        if a == "--":
            return ("script", argv[i + 1], flags) if i + 1 < len(argv) else ("stdin", None, flags)
        if a.startswith("--"):
            if a == "--check-hash-based-pycs":
                i += 1
            i += 1
            continue
        j = 1
        while j < len(a):
            c = a[j]
            if c in "cmWX":
                rest = a[j + 1:] or (argv[i + 1] if i + 1 < len(argv) else "")
                if not a[j + 1:]:
                    i += 1
                if c == "c":
                    return "code", rest, flags
                if c == "m":
                    return "module", rest, flags
                flags.add(c)
                break
            flags.add(c)
            j += 1
        i += 1
    return "stdin", None, flags


# --- the closure ------------------------------------------------------------------


class _Closure:
    def __init__(self, root: Path, index: Mapping[str, Entry], interpreter: str, argv: Sequence[str],
                 env: Mapping[str, str], cwd: str, cache: Any = None, workers: int = 2):
        self.t = _Tree(root, index)
        self.workers = workers
        self.pool: concurrent.futures.ProcessPoolExecutor | None = None
        self.cache = cache if cache is not None and hasattr(cache, "cache_get_json") else None
        self.env = dict(env)
        self.cwd = normalize(cwd or "/")
        self.interpreter = interpreter
        self.argv = list(argv)
        self.files: set[str] = set()
        self.extensions: set[str] = set()
        self.notes: list[str] = []
        self.missing: dict[str, tuple[bool, str]] = {}  # name -> (all guarded, first importer)
        self.mods: dict[str, _Mod | None] = {}
        self.done_files: set[str] = set()
        self.whole_done: set[str] = set()
        self.queue: list[tuple[str, str, bool]] = []  # (file, module name, is package)
        self.site_dirs: list[str] = []
        self.third_party: set[str] = set()
        self.builtins: set[str] = set(CORE_BUILTINS)
        self.why: dict[str, str] = {}
        self.pth_lines: list[tuple[bytes, str]] = []  # `import` lines of .pth files, run by site

    # -- files ------------------------------------------------------------------

    def keep(self, path: str) -> str | None:
        """Keep ``path``, the symlinks passed and the final entry; return the resolved path."""
        r, links = self.t.chain(path)
        self.files.update(links)
        if r and r != "/":
            self.files.add(r)
            e = self.t.index[r]
            if e.type == HARDLINK and e.link:
                self.files.add(e.link)
        return r

    def read(self, path: str) -> bytes | None:
        try:
            return self.t.read(path)
        except ImageError as e:  # includes HostileInputError (a symlink on the host)
            self.notes.append(f"{path}: not read ({e}); its imports are unknown")
            return None

    # -- interpreter layout --------------------------------------------------------

    def layout(self) -> None:
        exe, links = self.t.chain(self.interpreter)
        self.keep(self.interpreter)
        if exe is None or self.t.kind(exe) != REG:
            self.missing[self.interpreter] = (False, "<argv>")
            self.notes.append(f"{self.interpreter}: the interpreter is not a file in the image")
        names = [posixpath.basename(p) for p in [self.interpreter, *links, exe or ""]]
        ver = next((m.group(2) for n in names if (m := _VERSION_RE.fullmatch(n))), None)
        exe_dir = posixpath.dirname(exe or normalize(self.interpreter))
        self.venv, system_site = self.find_venv()
        if self.venv is not None and self.venv_home:
            exe_dir = self.venv_home
        if ver is None:
            found = sorted({m.group(2) for d in ("/usr/lib", "/usr/local/lib", posixpath.join(posixpath.dirname(exe_dir), "lib"))
                            for n in self.t.listdir(d) if (m := _VERSION_RE.fullmatch(n))
                            and self.t.kind(f"{d}/{n}/os.py") == REG}, key=int)
            if not found:
                self.notes.append(f"{self.interpreter}: no python3.X standard library found in the image")
                ver = "0"
            else:
                ver = found[-1]
                if len(found) > 1:
                    self.notes.append(f"{self.interpreter}: several Python versions (3.{', 3.'.join(found)}); "
                                      f"assuming 3.{ver}")
        self.ver = ver
        self.lib = f"python3.{ver}"
        mode, arg, flags = parse_argv(self.argv)
        self.mode, self.arg, self.flags = mode, arg, flags
        ignore_env = "E" in flags or "I" in flags
        home = None if ignore_env else self.env.get("PYTHONHOME")
        if home:
            prefix, _, exec_prefix = home.partition(":")
            prefix, exec_prefix = normalize(prefix), normalize(exec_prefix or prefix)
        else:
            prefix = exec_prefix = ""
            d = exe_dir
            while True:
                d = posixpath.dirname(d)
                if not prefix and self.t.kind(f"{d}/lib/{self.lib}/os.py") == REG:
                    prefix = d
                if not exec_prefix and self.t.kind(f"{d}/lib/{self.lib}/lib-dynload") == DIR:
                    exec_prefix = d
                if d == "/":
                    break
            if not prefix:
                self.notes.append(f"{self.interpreter}: landmark lib/{self.lib}/os.py not found; assuming /usr")
            prefix = prefix or "/usr"
            exec_prefix = exec_prefix or prefix
        self.stdlib = normalize(f"{prefix}/lib/{self.lib}")
        self.dynload = normalize(f"{exec_prefix}/lib/{self.lib}/lib-dynload")
        multiarch = "x86_64-linux-gnu"
        tags = [m.group(1) for n in self.t.listdir(self.dynload)
                if (m := re.fullmatch(rf"[A-Za-z0-9_]+\.cpython-3{ver}-(.+)\.so", n))]
        if tags:
            multiarch = max(sorted(set(tags)), key=tags.count)
        self.suffixes = (f".cpython-3{ver}-{multiarch}.so", ".abi3.so", ".so", ".py", ".pyc")
        self.keep(f"{self.stdlib}/os.py")
        if self.t.kind(self.dynload) == DIR:
            self.files.add(self.t.chain(self.dynload)[0] or self.dynload)
        self.builtins |= self.exported_builtins(exe)
        # sys.path
        path: list[str] = []
        safe_path = "P" in flags or (not ignore_env and bool(self.env.get("PYTHONSAFEPATH")))
        if "I" not in flags and not safe_path:
            if mode == "script" and arg:
                script = arg if arg.startswith("/") else posixpath.join(self.cwd, arg)
                path.append(posixpath.dirname(self.t.chain(script)[0] or normalize(script)))
            elif mode in ("module", "code", "stdin"):
                path.append(self.cwd)
        if not ignore_env and self.env.get("PYTHONPATH"):
            path += [normalize(p if p.startswith("/") else posixpath.join(self.cwd, p))
                     for p in self.env["PYTHONPATH"].split(":") if p]
        path += [normalize(f"{prefix}/lib/python3{ver}.zip"), self.stdlib, self.dynload]
        if "S" not in flags:
            site_src = self.read(f"{self.stdlib}/site.py") if self.t.kind(f"{self.stdlib}/site.py") == REG else None
            debian = bool(site_src and b"dist-packages" in site_src)
            user_ok = not ({"s", "I"} & flags) and not (not ignore_env and self.env.get("PYTHONNOUSERSITE")) \
                and (self.venv is None or system_site)
            cands: list[str] = []
            if user_ok and self.env.get("HOME"):
                cands.append(normalize(f"{self.env['HOME']}/.local/lib/{self.lib}/site-packages"))
            if self.venv is not None:
                cands.append(f"{self.venv}/lib/{self.lib}/site-packages")
            for pre in dict.fromkeys([prefix, exec_prefix]) if self.venv is None or system_site else ():
                if debian:
                    cands += [normalize(f"{pre}/local/lib/{self.lib}/dist-packages"),
                              normalize(f"{pre}/lib/python3/dist-packages"),
                              normalize(f"{pre}/lib/{self.lib}/dist-packages")]
                else:
                    cands.append(normalize(f"{pre}/lib/{self.lib}/site-packages"))
            for d in dict.fromkeys(cands):
                if self.t.kind(d) == DIR:
                    self.site_dirs.append(d)
                    path.append(d)
                    path += self.pth(d)
        self.sys_path = list(dict.fromkeys(path))
        for entry in self.sys_path:
            if self.t.kind(entry) == REG:  # a zip archive (python3X.zip, eggs): zipimport reads it
                self.keep(entry)
                self.notes.append(f"{entry}: archive on sys.path kept whole; imports inside it are not followed")

    def find_venv(self) -> tuple[str | None, bool]:
        """(venv prefix, include-system-site-packages) if a ``pyvenv.cfg`` sits beside the
        interpreter (as named, not resolved) or one level up; (None, True) otherwise."""
        self.venv_home = ""
        bindir = posixpath.dirname(normalize(self.interpreter))
        for d in (bindir, posixpath.dirname(bindir)):
            cfg = f"{d.rstrip('/')}/pyvenv.cfg"
            if self.t.kind(cfg) != REG:
                continue
            self.keep(cfg)
            values: dict[str, str] = {}
            for line in (self.read(cfg) or b"").decode("utf-8", "replace").splitlines():
                k, eq, v = line.partition("=")
                if eq:
                    values[k.strip().lower()] = v.strip()
            self.venv_home = normalize(values["home"]) if values.get("home") else ""
            self.notes.append(f"{cfg}: virtual environment (home {self.venv_home or '?'})")
            return posixpath.dirname(bindir), values.get("include-system-site-packages", "").lower() == "true"
        return None, True

    def exported_builtins(self, exe: str | None) -> set[str]:
        """Names ``X`` of ``PyInit_X`` exported by the interpreter and its libpython (built-in modules)."""
        out: set[str] = set()
        if not exe:
            return out
        cands = [exe] + [f"{d}/{n}" for d in ("/usr/lib", "/usr/local/lib", "/usr/lib/x86_64-linux-gnu", "/lib")
                         for n in self.t.listdir(d) if n.startswith(f"libpython3.{self.ver}") and ".so" in n]
        for c in cands:
            if self.t.kind(c) != REG:
                continue
            data = self.read(c)
            if data and data[:4] == b"\x7fELF":
                out |= {m.group(1).decode() for m in re.finditer(rb"\x00PyInit_([A-Za-z0-9_]+)(?=\x00)", data)}
        return out

    def pth(self, site: str) -> list[str]:
        """Directories named by the ``.pth`` files of ``site``; their ``import`` lines are followed."""
        added: list[str] = []
        for name in self.t.listdir(site):
            if not name.endswith(".pth") or name.startswith("."):
                continue
            f = f"{site}/{name}"
            if self.t.kind(f) != REG:
                continue
            self.keep(f)
            data = self.read(f)
            if data is None:
                continue
            for n, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
                if not line.strip() or line.startswith("#"):
                    continue
                if line.startswith(("import ", "import\t")):
                    self.notes.append(f"{f}:{n}: executed at start-up; its imports are followed")
                    self.pth_lines.append((line.encode(), f"{f}:{n}"))
                    continue
                d = normalize(posixpath.join(site, line.rstrip()))
                if self.t.kind(d) == DIR:
                    added.append(d)
                    self.third_party.add(d)
                    self.keep(d)
        return added

    # -- module resolution ------------------------------------------------------------

    def find(self, name: str) -> _Mod | None:
        """The module ``name`` as the path-based finder would find it; None if it does not exist."""
        if name in self.mods:
            return self.mods[name]
        self.mods[name] = None  # guards cycles
        parent, _, last = name.rpartition(".")
        mod: _Mod | None = None
        if not parent and name in self.builtins:
            mod = _Mod(name, "builtin", None)
        elif parent:
            pm = self.find(parent)
            if pm is not None and pm.kind in ("package", "namespace"):
                mod = self.search(name, last, pm.dirs, pm.origin)
        else:
            mod = self.search(name, last, tuple(self.sys_path), None)
        self.mods[name] = mod
        return mod

    def search(self, name: str, last: str, dirs: Iterable[str], origin: str | None) -> _Mod | None:
        portions: list[str] = []
        for d in dirs:
            names = self.t.names(d)
            if not names:
                continue
            sub = f"{d}/{last}"
            if last in names and self.t.kind(sub) == DIR:
                inside = self.t.names(sub)
                for suf in self.suffixes:
                    if f"__init__{suf}" in inside and self.t.kind(f"{sub}/__init__{suf}") == REG:
                        rdir = self.t.chain(sub)[0] or sub
                        return _Mod(name, "package", f"{sub}/__init__{suf}", (rdir,), origin or d)
                portions.append(self.t.chain(sub)[0] or sub)
            for suf in self.suffixes:
                if last + suf in names and self.t.kind(f"{d}/{last}{suf}") == REG:
                    kind = "source" if suf == ".py" else "bytecode" if suf == ".pyc" else "extension"
                    return _Mod(name, kind, f"{d}/{last}{suf}", (), origin or d)
        if portions:
            return _Mod(name, "namespace", None, tuple(portions), origin or portions[0].rpartition("/")[0])
        return None

    # -- following ----------------------------------------------------------------------

    def need(self, name: str, guarded: bool, importer: str) -> _Mod | None:
        """Import ``name`` and its parents; record it as missing if it is not found."""
        name = ALIASES.get(name, name)
        self.why.setdefault(name, importer)
        parts = name.split(".")
        mod = None
        for i in range(1, len(parts) + 1):
            n = ".".join(parts[:i])
            mod = self.find(n)
            if mod is None:
                g, first = self.missing.get(n, (True, importer))
                self.missing[n] = (g and guarded, first if not (g and not guarded) else importer)
                return None
            self.use(mod)
        return mod

    def use(self, mod: _Mod) -> None:
        if mod.kind == "builtin" or mod.name in self.whole_done:
            return
        top = mod.name.split(".")[0]
        topmod = self.mods.get(top)
        origin = topmod.origin if topmod else mod.origin
        third = origin in self.site_dirs or origin in self.third_party
        if topmod and topmod.kind in ("package", "namespace") and (
                third or (origin in (self.stdlib,) and top in WHOLE_STDLIB)):
            if top not in self.whole_done:
                self.whole_done.add(top)
                for d in topmod.dirs:
                    self.keep_tree(d, top)
                if third:
                    self.metadata(origin, top)
            return
        if third and top == mod.name:
            self.metadata(origin, top)
        if mod.name == "sysconfig":
            for n in self.t.listdir(self.stdlib):
                if n.startswith("_sysconfigdata_") and n.endswith(".py"):
                    self.module_file(f"{self.stdlib}/{n}", n[:-3], False)
        if mod.kind == "namespace":
            for d in mod.dirs:
                self.keep(d)
        elif mod.file:
            self.module_file(mod.file, mod.name, mod.kind == "package")

    def module_file(self, path: str, name: str, is_pkg: bool) -> None:
        r = self.keep(path)
        if r is None or r in self.done_files:
            return
        self.done_files.add(r)
        base = posixpath.basename(path)
        if base.endswith(".py"):
            stem = base[:-3]
            pyc_dir = posixpath.join(posixpath.dirname(path), "__pycache__")
            for n in self.t.listdir(pyc_dir):
                if n.startswith(f"{stem}.cpython-3{self.ver}") and n.endswith(".pyc"):
                    self.keep(f"{pyc_dir}/{n}")
            self.queue.append((r, name, is_pkg))
        elif base.endswith(".so"):
            self.extensions.add(r)
            data = self.read(path)
            if data:
                for s in _strings(data):
                    if s != name and s.split(".")[0] not in ("PyInit", "") and self.find(s.split(".")[0]):
                        if self.find(s) is not None:
                            self.need(s, True, path)
        elif base.endswith(".pyc"):
            self.notes.append(f"{path}: bytecode without source; its imports are unknown")

    def keep_tree(self, top_dir: str, top: str) -> None:
        """Keep everything under ``top_dir`` (package ``top``) and follow its modules."""
        self.keep(top_dir)
        prefix = top_dir.rstrip("/") + "/"
        for p in [p for p in self.t.index if p.startswith(prefix)]:
            e = self.t.index[p]
            self.files.add(p)
            if e.type in (SYMLINK, HARDLINK):
                r = self.keep(p)
                if r and r != "/" and self.t.index[r].type == DIR and not r.startswith(prefix):
                    self.notes.append(f"{p}: links to the directory {r}; kept whole")
                    self.files.update(q for q in self.t.index if q.startswith(r + "/"))
            rel = p[len(prefix):]
            if e.type not in (REG, HARDLINK, SYMLINK) or "__pycache__" in rel.split("/"):
                continue
            parts = rel.split("/")
            if rel.endswith(".py"):
                parts[-1] = parts[-1][:-3]
                is_pkg = parts[-1] == "__init__"
                if is_pkg:
                    parts.pop()
                self.module_file(p, ".".join([top, *parts]), is_pkg)
            elif rel.endswith(".so"):
                base = parts[-1].split(".")[0]
                self.module_file(p, ".".join([top, *parts[:-1], base]), False)

    def metadata(self, site: str, top: str) -> None:
        """Keep the ``*.dist-info``/``*.egg-info`` of ``site`` that provide ``top``."""
        norm = top.lower().replace("-", "_")
        for n in self.t.listdir(site):
            if not n.endswith((".dist-info", ".egg-info")):
                continue
            d = f"{site}/{n}"
            provides = {n.split("-")[0].lower().replace(".", "_")}
            if self.t.kind(d) == DIR:
                for meta in ("top_level.txt", "RECORD"):
                    if self.t.kind(f"{d}/{meta}") == REG:
                        data = self.read(f"{d}/{meta}") or b""
                        for line in data.decode("utf-8", "replace").splitlines():
                            first = line.split(",")[0].split("/")[0].strip()
                            if first:
                                provides.add(first.removesuffix(".py").lower())
            if norm in provides:
                self.keep(d)
                if self.t.kind(d) == DIR:
                    prefix = (self.t.chain(d)[0] or d) + "/"
                    self.files.update(p for p in self.t.index if p.startswith(prefix))

    def parse_source(self, src: bytes, label: str, name: str, is_pkg: bool) -> None:
        imports, notes = _parse_imports(src, label, is_main=name == "__main__")
        self.notes += notes
        self.follow(imports, label, name, is_pkg)

    def star(self, pm: _Mod) -> list[str]:
        if pm.kind != "package" or not pm.file or not pm.file.endswith(".py"):
            return []
        return _literal_all(self.read(pm.file) or b"")

    def relative(self, package: str, level: int, where: str) -> str | None:
        parts = package.split(".") if package else []
        if level - 1 >= len(parts):
            self.notes.append(f"{where}: relative import beyond the top-level package; not followed")
            return None
        return ".".join(parts[: len(parts) - (level - 1)])

    def drain(self) -> None:
        """Follow the queued module files wave by wave; a wave's uncached files are parsed in parallel."""
        while self.queue:
            wave, self.queue = self.queue, []
            self.prefetch([path for path, _, _ in wave])
            for path, name, is_pkg in wave:
                hit = self.parsed(path)
                if hit is None:
                    continue
                imports, notes = hit
                self.notes += [n.replace("<file>", path) for n in notes]
                self.follow(imports, path, name, is_pkg)

    def prefetch(self, paths: list[str]) -> None:
        """Parse the files of ``paths`` missing from both caches, with ``workers`` processes."""
        if self.workers < 2:
            return
        todo: dict[str, bytes] = {}
        for path in paths:
            key = self.t.key(path)
            if key in todo or key in _PARSE_CACHE or not key.startswith("sha256:"):
                continue
            if self.cache is not None and self.cache.cache_get_json(CACHE_NS, key) is not None:
                continue
            data = self.read(path)
            if data is not None:
                todo[key] = data
        if len(todo) < 16:
            return
        keys = sorted(todo)
        try:
            if self.pool is None:
                self.pool = concurrent.futures.ProcessPoolExecutor(max_workers=self.workers)
            results = list(self.pool.map(_parse_imports, [todo[k] for k in keys], ["<file>"] * len(keys),
                                         chunksize=8))
        except (OSError, concurrent.futures.process.BrokenProcessPool):
            self.workers = 1  # no processes here (no /dev/shm, limits): parse in this process instead
            return
        for key, hit in zip(keys, results):
            self.store_parsed(key, hit)

    def store_parsed(self, key: str, hit: tuple[list[tuple[str, bool, int]], list[str]]) -> None:
        if self.cache is not None and key.startswith("sha256:"):
            self.cache.cache_put_json(CACHE_NS, key, {"imports": [list(i) for i in hit[0]], "notes": hit[1]})
        with _CACHE_LOCK:
            if len(_PARSE_CACHE) > 200_000:
                _PARSE_CACHE.clear()
            _PARSE_CACHE[key] = hit

    def parsed(self, path: str) -> tuple[list[tuple[str, bool, int]], list[str]] | None:
        """Imports of a module file (not the main script), cached by content digest; None if unreadable."""
        key = self.t.key(path)
        with _CACHE_LOCK:
            hit = _PARSE_CACHE.get(key)
        if hit is None and self.cache is not None and key.startswith("sha256:"):
            doc = self.cache.cache_get_json(CACHE_NS, key)
            try:
                hit = ([(str(a), bool(b), int(c)) for a, b, c in doc["imports"]],
                       [str(n) for n in doc["notes"]])
            except (TypeError, KeyError, ValueError):
                hit = None
        if hit is None:
            data = self.read(path)
            if data is None:
                return None
            hit = _parse_imports(data, "<file>")
            self.store_parsed(key, hit)
        else:
            with _CACHE_LOCK:
                _PARSE_CACHE[key] = hit
        return hit

    def follow(self, imports: list[tuple[str, bool, int]], label: str, name: str, is_pkg: bool) -> None:
        package = name if is_pkg else name.rpartition(".")[0]
        for spec, guarded, line in imports:
            where = f"{label}:{line}"
            kind, _, rest = spec.partition(":")
            if kind in ("abs", "dyn"):
                self.need(rest, guarded, where)
                continue
            if kind == "rel":
                level = len(rest) - len(rest.lstrip("."))
                base = self.relative(package, level, where)
                if base is not None:
                    self.need(".".join(x for x in (base, rest.lstrip(".")) if x), guarded, where)
                continue
            lvl, _, rest2 = rest.partition(":")
            module, _, attr = rest2.rpartition(":")
            level = int(lvl)
            if level:
                b = self.relative(package, level, where)
                if b is None:
                    continue
                base = ".".join(x for x in (b, module) if x)
            else:
                base = module
            if not base:
                continue
            pm = self.need(base, guarded, where)
            if pm is None or pm.kind not in ("package", "namespace"):
                continue
            for s in ([attr] if attr != "*" else self.star(pm)):
                if self.find(f"{base}.{s}") is not None:
                    self.need(f"{base}.{s}", guarded, where)

    def run(self) -> ScriptClosure:
        self.layout()
        for src, label in self.pth_lines:
            self.parse_source(src, label, "__pth__", False)
        startup = list(STARTUP)
        if "W" in self.flags or (self.env.get("PYTHONWARNINGS") and not ({"E", "I"} & self.flags)):
            startup.append("warnings")
        for m in startup:
            self.need(m, False, "<startup>")
        if "S" not in self.flags:
            self.need("site", False, "<startup>")
            for m in ("sitecustomize", "usercustomize"):
                if self.find(m) is not None:
                    self.need(m, True, "<startup>")
        self.drain()
        if self.mode == "script" and self.arg:
            script = self.arg if self.arg.startswith("/") else posixpath.join(self.cwd, self.arg)
            if self.t.kind(script) == REG:
                r = self.keep(script)
                data = self.read(script)
                if data is not None and r:
                    self.done_files.add(r)
                    self.parse_source(data, script, "__main__", False)
            else:
                self.missing.setdefault(script, (False, "<argv>"))
                self.notes.append(f"{script}: the script is not a file in the image")
        elif self.mode == "module" and self.arg:
            self.need("runpy", False, "<startup>")
            m = self.need(self.arg, False, "<argv -m>")
            if m is not None and m.kind in ("package", "namespace"):
                self.need(f"{self.arg}.__main__", False, "<argv -m>")
        elif self.mode == "code" and self.arg is not None:
            self.parse_source(self.arg.encode(), "<argv -c>", "__main__", False)
        else:
            self.notes.append("no script, module or code in the command line: stdin/interactive, "
                              "imports unknown")
        self.drain()
        unresolved = sorted(self.missing)
        guarded = [n for n in unresolved if self.missing[n][0]]
        for n in unresolved:
            if not self.missing[n][0]:
                self.notes.append(f"unresolved import {n} (first at {self.missing[n][1]})")
        if guarded:
            self.notes.append(f"{len(guarded)} unresolved imports guarded by try/except (platform or "
                              f"optional modules): {', '.join(guarded)}")
        return ScriptClosure(files=tuple(sorted(self.files)), extensions=tuple(sorted(self.extensions)),
                             unresolved=tuple(unresolved), notes=tuple(self.notes),
                             sys_path=tuple(self.sys_path))


def python_closure(root: Path, index: Mapping[str, Entry], interpreter: str, argv: Sequence[str],
                   env: Mapping[str, str], *, cwd: str = "/", cache: Any = None,
                   workers: int = 2) -> ScriptClosure:
    """The files a Python entry point can import, computed statically.

    ``root`` is the extracted image rootfs, ``index`` its flattened index,
    ``interpreter`` the in-image path of the python executable
    (``/usr/bin/python3``), ``argv`` the whole command (``["python3",
    "/app/app.py"]``, ``[..., "-m", "mod"]``, ``[..., "-c", "code"]``),
    ``env`` the image environment (``PYTHONPATH``, ``PYTHONHOME``,
    ``PYTHONNOUSERSITE``, ``HOME``), ``cwd`` the working directory (``-m``,
    ``-c`` and relative paths). Nothing is executed; files are read only
    through ``index`` and :func:`open_beneath`. Never raises for image
    content: unreadable or unparsable files become notes, missing modules
    ``unresolved``. ``cache`` (the store, or anything with
    ``cache_get_json``/``cache_put_json``) keeps each file's parsed imports by
    content digest across runs (namespace :data:`CACHE_NS`). See the module
    docstring for the keep rules. Files missing from the caches are parsed by
    ``workers`` processes (1: in this process).
    """
    c = _Closure(root, index, interpreter, argv, env, cwd, cache, workers)
    try:
        return c.run()
    finally:
        if c.pool is not None:
            c.pool.shutdown()


# --- shell entry points -----------------------------------------------------------------

SHELLS = frozenset({"sh", "dash", "bash", "ash", "busybox", "ksh", "mksh", "zsh"})
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Words that run their first non-option, non-assignment argument as a command.
WRAPPERS = frozenset({"exec", "command", "env", "nohup", "nice", "time", "timeout", "setpriv", "gosu",
                      "su-exec", "tini", "dumb-init", "chroot", "xargs", "stdbuf", "ionice", "runuser"})
#: Shell keywords: the next word may be a command.
SHELL_KEYWORDS = frozenset("if then else elif fi do done while until { } ! time".split())
#: Built-ins that run their arguments as a command.
SHELL_RUNNERS = frozenset({"exec", "command", "builtin"})
#: Built-ins (dash/bash) that need no file; their arguments are not commands.
SHELL_BUILTINS = frozenset("""for in case esac function select cd echo printf test [ [[ ]] read set export
    unset shift exit return trap wait true false : eval local kill umask ulimit type getopts hash alias
    unalias jobs fg bg pwd readonly break continue let declare typeset shopt""".split())
_PY_RE = re.compile(r"python(3(\.\d+)?)?")
_SEPARATORS = frozenset({";", "&&", "||", "|", "&", "(", ")", ";;", "|&", "\n", "`", "$("})


def shell_words(text: str) -> tuple[list[list[str]], list[str]]:
    """Split shell source into simple commands (lists of words) and notes. Pure.

    Over-approximate and simple: ``;``/``&&``/``||``/``|``/``&``/newlines,
    ``(``/``)``, backquotes and ``$(`` start a new command; heredoc bodies are
    skipped; comments dropped. Unparsable lines become notes.
    """
    import shlex

    cmds: list[list[str]] = []
    notes: list[str] = []
    functions: set[str] = set()
    lines = text.splitlines()
    i = 0
    logical: list[str] = []
    while i < len(lines):
        line = lines[i]
        while line.endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line[:-1] + lines[i]
        m = re.search(r"<<-?\s*['\"]?([A-Za-z_][A-Za-z0-9_]*)", line)
        logical.append(line)
        i += 1
        if m:
            end = m.group(1)
            while i < len(lines) and lines[i].strip() != end:
                i += 1
            i += 1
    for n, line in enumerate(logical, 1):
        line = line.replace("$(", " ( ").replace("`", " ` ")
        lex = shlex.shlex(line, posix=True, punctuation_chars=";&|()")
        lex.whitespace_split = True
        lex.commenters = "#"
        try:
            tokens = list(lex)
        except ValueError as e:
            notes.append(f"line {n}: not parsed ({e}); its commands are unknown")
            continue
        cur: list[str] = []
        prev: list[str] | None = None
        for tok in tokens:
            if tok in _SEPARATORS or set(tok) <= set(";&|()") and tok:
                if cur:
                    cmds.append(cur)
                    prev = cur
                cur = []
                if tok in (")", "()") and cmds and len(cmds[-1]) == 1 and cmds[-1] == prev:
                    name = cmds.pop()[0]  # a case pattern `word)` or a function `name()`, not a command
                    if tok == "()":
                        functions.add(name)
                prev = None
                continue
            cur.append(tok)
        if cur:
            cmds.append(cur)
    if functions:  # calls of functions defined in the script are not programs
        cmds = [c for c in cmds if c[0] not in functions and not (c[0] == "{" and c[1:2] and c[1] in functions)]
    return cmds, notes


def shell_closure(root: Path, index: Mapping[str, Entry], argv: Sequence[str], env: Mapping[str, str], *,
                  cwd: str = "/", cache: Any = None) -> ScriptClosure:
    """The programs and scripts a shell entry point runs, computed statically.

    ``argv`` is the command (``["/bin/sh", "-c", "exec nginx -g ..."]``,
    ``["/bin/sh", "/docker-entrypoint.sh"]`` or ``["/docker-entrypoint.sh"]``
    with a ``#!`` line). Command words are resolved through ``PATH`` (from
    ``env``, else Debian's default) inside the image; scripts they name
    (``#!`` lines, ``.``/``source`` with constant paths) are followed, and a
    ``python3 ...`` command gets :func:`python_closure`. Words built at run
    time (``$CMD``, ``eval``) are listed in ``notes``; names not found in
    ``unresolved``. ``executables`` are the resolved programs, whose ELF
    closure the caller adds. Nothing is executed.
    """
    t = _Tree(root, index)
    path_dirs = [normalize(d) for d in (env.get("PATH") or DEFAULT_PATH).split(":") if d]
    files: set[str] = set()
    exes: set[str] = set()
    missing: set[str] = set()
    notes: list[str] = []
    seen_scripts: set[str] = set()
    parts: list[ScriptClosure] = []

    def keep(p: str) -> str | None:
        r, links = t.chain(p)
        files.update(links)
        if r and r != "/":
            files.add(r)
        return r

    def which(word: str) -> str | None:
        if "/" in word:
            p = normalize(word if word.startswith("/") else posixpath.join(cwd, word))
            return p if t.kind(p) == REG else None
        for d in path_dirs:
            p = f"{d}/{word}"
            r = t.chain(p)[0]
            if r and t.kind(r) == REG and t.index[r].mode & 0o111:
                return p
        return None

    def read(p: str) -> bytes | None:
        try:
            return t.read(p)
        except ImageError as e:
            notes.append(f"{p}: not read ({e})")
            return None

    def run_command(words: list[str], where: str) -> None:
        words = list(words)
        while words:
            while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
                words.pop(0)
            if not words:
                return
            w = words[0]
            if any(c in w for c in "$`*?[") and w not in ("[", "[["):
                notes.append(f"{where}: command word {w!r} is computed at run time; not followed")
                return
            if w in (".", "source") and len(words) > 1:
                target = words[1]
                if "$" in target:
                    notes.append(f"{where}: sources {target!r}, computed at run time; not followed")
                else:
                    p = normalize(target if target.startswith("/") else posixpath.join(cwd, target))
                    if t.kind(p) == REG:
                        script(p, [], run_by_shell=True)
                    else:
                        missing.add(target)
                return
            if w == "eval":
                notes.append(f"{where}: eval; its commands are not followed")
                return
            if w in SHELL_KEYWORDS:
                words.pop(0)
                continue
            if w in SHELL_RUNNERS:
                words.pop(0)
                while words and words[0].startswith("-"):
                    words.pop(0)
                continue
            if w in SHELL_BUILTINS:
                return
            found = which(w)
            if found is None:
                missing.add(w)
                notes.append(f"{where}: command {w!r} not found in PATH")
                return
            program(found, words)
            if posixpath.basename(w) in WRAPPERS:
                words.pop(0)
                while words and (words[0].startswith("-") or "=" in words[0] or words[0].isdigit()):
                    words.pop(0)
                continue
            return

    def program(found: str, words: list[str]) -> None:
        r = keep(found)
        if r is None:
            return
        data = read(r)
        if data is None:
            return
        if data.startswith(b"#!"):
            script(r, words[1:])
            return
        exes.add(r)
        base = posixpath.basename(found)
        if _PY_RE.fullmatch(base) or _PY_RE.fullmatch(posixpath.basename(r)):
            parts.append(python_closure(root, index, found, words, env, cwd=cwd, cache=cache))
        elif posixpath.basename(r) in SHELLS or base in SHELLS:
            mode = words[1:]
            if "-c" in mode and mode.index("-c") + 1 < len(mode):
                text(mode[mode.index("-c") + 1], f"{found} -c")
            else:
                args = [a for a in mode if not a.startswith("-")]
                if args:
                    p = normalize(args[0] if args[0].startswith("/") else posixpath.join(cwd, args[0]))
                    if t.kind(p) == REG:
                        script(p, [], run_by_shell=True)
                    else:
                        missing.add(args[0])

    def script(p: str, args: list[str], *, run_by_shell: bool = False) -> None:
        """A script file: its ``#!`` interpreter runs it, unless a shell was named to run it."""
        r = keep(p)
        if r is None:
            return
        data = read(r)
        if data is None:
            return
        first = data.split(b"\n", 1)[0]
        if first.startswith(b"#!") and not run_by_shell:
            interp = first[2:].decode("utf-8", "replace").split()
            if interp:
                found = which(interp[0]) if interp[0].startswith("/") else None
                if found is None:
                    missing.add(interp[0])
                    notes.append(f"{p}: interpreter {interp[0]!r} not in the image")
                    return
                # `#!/usr/bin/env python3`, `#!/bin/sh -e`: the interpreter line runs with the script
                program(found, interp + [p] + args)
                return
        if r in seen_scripts:
            return
        seen_scripts.add(r)
        text(data.decode("utf-8", "replace"), p)

    def text(src: str, label: str) -> None:
        cmds, ns = shell_words(src)
        notes.extend(f"{label}: {n}" for n in ns)
        for words in cmds:
            run_command(words, label)

    if argv:
        run_command(list(argv), "<argv>")
    for c in parts:
        files.update(c.files)
        missing.update(c.unresolved)
        notes.extend(c.notes)
    return ScriptClosure(files=tuple(sorted(files)),
                         extensions=tuple(sorted({e for c in parts for e in c.extensions})),
                         unresolved=tuple(sorted(missing)), notes=tuple(notes),
                         sys_path=tuple(dict.fromkeys(p for c in parts for p in c.sys_path)),
                         executables=tuple(sorted(exes)))
