"""Compute the keep-set: every in-image path the slim image must hold.

Pure over an :class:`~trimcage.image.interface.Index` and a ``read`` callable;
nothing here touches the host file system.
"""

from __future__ import annotations

import posixpath
import re
from typing import Callable, Iterable, Mapping, Sequence

from trimcage.image.interface import DIR, HARDLINK, SYMLINK, Index
from trimcage.image.packages.interface import Package
from trimcage.image.paths import normalize
from trimcage.slim.accounts import cut_accounts
from trimcage.slim.interface import KeepSet, SlimError, SlimOptions

Reader = Callable[[str], bytes]

#: Files every image keeps when present: identity, name service, OS facts.
BASE_FILES = ("/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/os-release",
              "/usr/lib/os-release", "/etc/host.conf", "/etc/gai.conf")
#: Kept when a TLS library is kept.
TLS_FILES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/openssl.cnf", "/usr/lib/ssl/openssl.cnf",
             "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem")
TLS_LIBS = ("libssl.so", "libgnutls.so", "libcrypto.so", "libnss3.so", "libmbedtls.so", "libwolfssl.so")
#: Kept when the application reads the time zone.
TZ_FILES = ("/etc/localtime", "/etc/timezone")
SHELL = "/bin/sh"
#: Files of the application's own packages that are never needed to run.
DOC_PREFIXES = ("/usr/share/doc/", "/usr/share/man/", "/usr/share/info/", "/usr/share/lintian/",
                "/usr/share/bug/", "/usr/share/doc-base/",
                # host service-manager integration, never used inside a container
                "/etc/init.d/", "/etc/logrotate.d/", "/etc/cron.", "/etc/ufw/", "/etc/systemd/",
                "/lib/systemd/", "/usr/lib/systemd/", "/etc/default/", "/usr/share/apport/")


#: Directories too general to keep whole when a configuration names them.
GENERAL_DIRS = frozenset({"/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/media",
                          "/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr",
                          "/var", "/usr/bin", "/usr/sbin", "/usr/lib", "/usr/lib64", "/usr/libexec",
                          "/usr/local", "/usr/share", "/usr/include", "/usr/src", "/var/lib", "/var/cache",
                          "/var/log", "/var/www", "/var/spool", "/var/tmp", "/usr/lib/x86_64-linux-gnu",
                          "/lib/x86_64-linux-gnu", "/usr/local/lib", "/usr/local/share", "/etc/ssl"})
_PATH_TOKEN = re.compile(r"(?<![\w.$~-])(/[\w.@%+=,:-]+(?:/[\w.@%+=,:-]+)*/?)")
CONFIG_LIMIT = 1 << 20


_BINARY_PATH = re.compile(rb"(?<![\w./-])(/(?:etc|usr|var|opt|srv)/[\w.+@-]+(?:/[\w.+@-]+)*)\x00")
#: The C.UTF-8 locale every glibc image may be started with (LANG, lc_* settings).
LOCALE_DIRS = ("/usr/lib/locale/C.utf8", "/usr/lib/locale/C.UTF-8")


def binary_named_paths(index: Index, read: Reader, programs: Iterable[str], limit: int = 64 << 20) -> set[str]:
    """Existing in-image paths that the programs hold as NUL-terminated string constants.

    Compiled-in defaults (nginx's ``/var/lib/nginx/body``, postgres'
    ``/usr/share/zoneinfo``) are read at run time; static mode must keep them.
    """
    found: set[str] = set()
    for prog in programs:
        real = index.resolve(prog)
        if real is None or index[real].type != "file" or index[real].size > limit:
            continue
        try:
            data = read(real)
        except OSError:
            continue
        for m in _BINARY_PATH.finditer(data):
            path = normalize(m.group(1).decode("utf-8", "replace"))
            if index.resolve(path) is not None:
                found.add(path)
    return found


def config_named_paths(index: Index, read: Reader, configs: Iterable[str]) -> set[str]:
    """In-image absolute paths that the given configuration files name (existing ones only).

    Static analysis cannot see a web server's document root or a database's
    data directory; its configuration names them (``root /var/www/html;``).
    """
    found: set[str] = set()
    for p in configs:
        e = index.get(p)
        if e is None or e.type != "file" or e.size > CONFIG_LIMIT:
            continue
        try:
            text = read(p).decode("utf-8", "replace")
        except OSError:
            continue
        for token in _PATH_TOKEN.findall(text):
            path = normalize(token)
            if index.resolve(path) is not None:
                found.add(path)
    return found


def application_packages(packages: Sequence[Package], index: Index, entry_points: Iterable[str]) -> list[Package]:
    """The packages built from the same source as those owning the entry points.

    An application reads data and configuration its own packages ship
    (nginx's ``/etc/nginx`` and ``/var/lib/nginx`` come from nginx-common, the
    source sibling of nginx-light); static analysis cannot see those reads, so
    static mode keeps the whole source family, without documentation.
    """
    owners: dict[str, list[Package]] = {}
    for pkg in packages:
        for f in pkg.files:
            owners.setdefault(f, []).append(pkg)
    sources = set()
    for ep in entry_points:
        for p in {ep, index.resolve(ep) or ep}:
            for pkg in owners.get(p, ()):
                sources.add((pkg.ecosystem, pkg.source))
    return [pkg for pkg in packages if (pkg.ecosystem, pkg.source) in sources]


class _Builder:
    def __init__(self, index: Index):
        self.index = index
        self.reasons: dict[str, str] = {}

    def add(self, path: str, reason: str, *, recursive: bool = False) -> bool:
        """Add ``path``, the symlinks on the way to it and their targets; False if absent."""
        final = self._walk(normalize(path), reason)
        if final is None:
            return False
        if recursive and self.index[final].type == DIR:
            prefix = final.rstrip("/") + "/"
            for p in self.index:
                if p.startswith(prefix):
                    self._keep(p, reason)
                    if self.index[p].type == SYMLINK:
                        self.add(p, "symlink")
        return True

    def _keep(self, path: str, reason: str) -> None:
        if path != "/" and path not in self.reasons:
            self.reasons[path] = reason
            entry = self.index[path]
            if entry.type == HARDLINK and entry.link:
                self._keep(entry.link, "hardlink")

    def _walk(self, path: str, reason: str, depth: int = 0) -> str | None:
        # Resolve component by component, keeping every symlink met on the way.
        if depth > 40:
            return None
        parts = [p for p in path.split("/") if p]
        cur = "/"
        for i, part in enumerate(parts):
            nxt = posixpath.join(cur, part)
            entry = self.index.get(nxt)
            if entry is None:
                return None
            if entry.type == SYMLINK:
                self._keep(nxt, reason if i == len(parts) - 1 else "symlink")
                target = entry.link or ""
                base = "/" if target.startswith("/") else cur
                rest = "/".join(parts[i + 1:])
                resolved = self._walk(normalize(posixpath.join(base, target, rest)), reason, depth + 1)
                return resolved
            cur = nxt
        if cur != "/":
            self._keep(cur, reason)
        return cur

    def close_parents(self) -> None:
        for p in list(self.reasons):
            parent = posixpath.dirname(p)
            while parent != "/" and parent not in self.reasons:
                self.reasons[parent] = "parent"
                parent = posixpath.dirname(parent)


def compute_keepset(index: Index, read: Reader, config: Mapping, *, options: SlimOptions,
                    static_files: Iterable[str] | None = None,
                    traced_files: Iterable[str] | None = None,
                    executed: Iterable[str] = (), extra_uids: Iterable[int] = (),
                    packages: Sequence[Package] = (), entry_points: Iterable[str] = ()) -> KeepSet:
    """Return the keep-set for ``options.mode``.

    ``static_files`` is the static closure (``Analysis.files``), ``traced_files``
    the in-image paths a trace touched, ``executed`` the paths it executed
    (setuid bits stay only on those), ``extra_uids`` uids the trace switched to.
    ``config`` is the image's runtime config (User, WorkingDir, Volumes).
    ``packages`` and ``entry_points`` give, in static and combined modes, the
    application's own package family (see :func:`application_packages`).
    Raises ``SlimError`` if the mode needs an input that is missing.
    """
    mode = options.mode
    if mode in ("combined", "static") and static_files is None:
        raise SlimError(f"mode {mode} needs the static analysis")
    if mode in ("combined", "dynamic") and traced_files is None:
        raise SlimError(f"mode {mode} needs a trace")
    b = _Builder(index)
    if mode in ("combined", "static"):
        for p in static_files or ():
            b.add(p, "static")
        family = application_packages(packages, index, entry_points)
        for pkg in family:
            for p in pkg.files:
                if p in index and not p.startswith(DOC_PREFIXES):
                    b.add(p, f"package {pkg.name}")
    if mode in ("combined", "static"):
        # the application's own configuration: /etc/<dir> of its packages (nginx: /etc/nginx/)
        config_dirs = tuple(sorted({"/".join(p.split("/")[:3]) + "/" for pkg in family for p in pkg.files
                                    if p.startswith("/etc/") and p.count("/") >= 3
                                    and not p.startswith(DOC_PREFIXES)})) or ("/nonexistent/",)
        for path in sorted(binary_named_paths(index, read, entry_points)):
            real = index.resolve(path) or path
            b.add(path, "binary", recursive=real not in GENERAL_DIRS and real.count("/") >= 3)
        # paths the command line names (postgres -c config_file=/etc/postgresql/15/main/postgresql.conf)
        argv = [str(a) for a in (config.get("Entrypoint") or []) + (config.get("Cmd") or [])]
        named = {normalize(t) for a in argv for t in _PATH_TOKEN.findall(a) if index.resolve(normalize(t))}
        for path in sorted(named):
            real = index.resolve(path) or path
            b.add(path, "argv", recursive=real not in GENERAL_DIRS and real.count("/") >= 2)
            parent = posixpath.dirname(real)  # a named config file: its directory holds its relative includes
            if real.startswith("/etc/") and index[real].type == "file" and parent not in GENERAL_DIRS:
                b.add(parent, "argv", recursive=True)
                named |= {p for p in index if p.startswith(parent + "/")}
        scanned: set[str] = set()
        while True:  # configuration files name more configuration (include lines): to a fixpoint
            configs = {p for p in b.reasons if (p.startswith(config_dirs) or p in named) and p not in scanned
                       and index[p].type == "file"}
            if not configs:
                break
            scanned |= configs
            for path in sorted(config_named_paths(index, read, configs)):
                real = index.resolve(path) or path
                b.add(path, "config", recursive=real not in GENERAL_DIRS and real.count("/") >= 2)
    if mode in ("combined", "dynamic"):
        for p in traced_files or ():
            # A path the app created (or failed to find) needs the directory it lives in.
            while not b.add(p, "trace") and p not in ("", "/"):
                p = posixpath.dirname(normalize(p))
    for p in options.includes:
        if not b.add(p, "include", recursive=True):
            raise SlimError(f"--include {p}: no such path in the image")
    if options.keep_shell:
        b.add(SHELL, "keep-shell")
    for p in BASE_FILES:
        b.add(p, "base")
    for p in LOCALE_DIRS:
        b.add(p, "locale", recursive=True)
    kept_names = {posixpath.basename(p) for p in b.reasons}
    if any(n.startswith(lib) for n in kept_names for lib in TLS_LIBS):
        for p in TLS_FILES:
            b.add(p, "tls")
    if any(p.startswith("/usr/share/zoneinfo") or p in TZ_FILES for p in b.reasons):
        for p in TZ_FILES:
            b.add(p, "timezone")
    workdir = config.get("WorkingDir") or ""
    if workdir:
        b.add(workdir, "workdir")
    for vol in sorted(config.get("Volumes") or {}):
        b.add(vol, "volume")
    if "/tmp" in index:
        b.add("/tmp", "base")
    b.close_parents()

    executed_set = {index.resolve(p) or p for p in executed}
    setuid_removed, setuid_kept = [], []
    for p in sorted(b.reasons):
        e = index[p]
        if e.is_file and e.mode & 0o6000:
            (setuid_kept if p in executed_set else setuid_removed).append(p)

    overlay = cut_accounts(index, read, set(b.reasons), config, extra_uids)
    return KeepSet(paths=tuple(sorted(b.reasons)), reasons=dict(sorted(b.reasons.items())),
                   setuid_removed=tuple(setuid_removed), setuid_kept=tuple(setuid_kept),
                   overlay=overlay)
