"""The attack-surface inventory of an image (``trimcage inspect``).

:func:`inventory` is pure over its inputs: the :class:`Image` (config and
manifest facts), its flattened :class:`Index` (types, modes, xattrs, links)
and a ``read(path) -> bytes`` callable for the few contents it needs
(``/etc/os-release``, ``/etc/passwd``, package databases, ELF headers).
:class:`RootfsReader` is that callable over an extracted root file system; it
never follows a symlink on the host.
"""

from __future__ import annotations

import os
import posixpath
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from trimcage.image.interface import BLOCK, CHAR, DIR, FIFO, HARDLINK, REG, SYMLINK, Entry, Image, ImageError, Index
from trimcage.image.packages import Package, catalog

Reader = Callable[[str], bytes]

SHELLS = frozenset("sh bash rbash dash busybox zsh ash ksh ksh93 csh tcsh fish mksh yash".split())
INTERPRETERS = re.compile(
    r"(python[0-9.]*|pypy[0-9.]*|perl[0-9.]*|ruby[0-9.]*|irb|node|nodejs|deno|bun|php[0-9.]*"
    r"|lua[0-9.]*|luajit|java|jshell|jrunscript|tclsh[0-9.]*|wish[0-9.]*|expect|Rscript|guile[0-9.]*"
    r"|pwsh|awk|gawk|mawk|nawk|busybox)\Z")
PACKAGE_MANAGERS = frozenset(
    "apt apt-get apt-cache aptitude dpkg dpkg-deb dpkg-query apk pip pip2 pip3 easy_install npm npx "
    "yarn pnpm yum dnf microdnf rpm zypper pacman gem bundle composer cargo conda mamba".split())
_PIP = re.compile(r"pip[0-9.]*\Z")
NETWORK_TOOLS = frozenset(
    "curl wget nc netcat ncat nc.openbsd nc.traditional socat telnet ssh scp sftp ftp tftp openssl "
    "rsync ssh-keyscan dig nslookup host ip ping ping6 nmap tcpdump busybox".split())
NOLOGIN = frozenset({"nologin", "false", "sync", "halt", "shutdown"})

# ELF e_type values.
_ET = {1: "relocatable", 2: "executable", 3: "shared", 4: "core"}
_PT_INTERP = 3
_ELF_HEAD = 4096

# Linux capability numbers (linux/capability.h) for decoding security.capability.
CAPS = ("chown dac_override dac_read_search fowner fsetid kill setgid setuid setpcap "
        "linux_immutable net_bind_service net_broadcast net_admin net_raw ipc_lock ipc_owner "
        "sys_module sys_rawio sys_chroot sys_ptrace sys_pacct sys_admin sys_boot sys_nice "
        "sys_resource sys_time sys_tty_config mknod lease audit_write audit_control setfcap "
        "mac_override mac_admin syslog wake_alarm block_suspend audit_read perfmon bpf "
        "checkpoint_restore").split()


@dataclass(frozen=True)
class Inventory:
    """What an image carries that an attacker could use; see :meth:`to_json` for the keys.

    Lists of paths are sorted; ``None`` for ``os`` means no ``os-release``.
    """

    image: Mapping[str, Any]
    config: Mapping[str, Any]
    os: Mapping[str, str] | None
    files: int
    directories: int
    symlinks: int
    hardlinks: int
    other: int
    bytes: int
    elf_files: tuple[Mapping[str, str], ...]
    shells: tuple[Mapping[str, str], ...]
    interpreters: tuple[Mapping[str, str], ...]
    package_managers: tuple[Mapping[str, str], ...]
    network_tools: tuple[Mapping[str, str], ...]
    setuid: tuple[Mapping[str, Any], ...]
    setgid: tuple[Mapping[str, Any], ...]
    file_capabilities: tuple[Mapping[str, Any], ...]
    world_writable: tuple[Mapping[str, Any], ...]
    login_accounts: tuple[Mapping[str, Any], ...]
    packages: tuple[Package, ...] = field(default=())

    @property
    def elf_executables(self) -> int:
        return sum(1 for e in self.elf_files if e["kind"] == "executable")

    @property
    def shared_libraries(self) -> int:
        return sum(1 for e in self.elf_files if e["kind"] == "shared")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict with sorted content; same inventory, same dict."""
        return {
            "image": dict(self.image), "config": dict(self.config),
            "os": dict(self.os) if self.os is not None else None,
            "files": self.files, "directories": self.directories, "symlinks": self.symlinks,
            "hardlinks": self.hardlinks, "other": self.other, "bytes": self.bytes,
            "elf_executables": self.elf_executables, "shared_libraries": self.shared_libraries,
            "elf_files": [dict(e) for e in self.elf_files],
            "shells": [dict(e) for e in self.shells],
            "interpreters": [dict(e) for e in self.interpreters],
            "package_managers": [dict(e) for e in self.package_managers],
            "network_tools": [dict(e) for e in self.network_tools],
            "setuid": [dict(e) for e in self.setuid], "setgid": [dict(e) for e in self.setgid],
            "file_capabilities": [dict(e) for e in self.file_capabilities],
            "world_writable": [dict(e) for e in self.world_writable],
            "login_accounts": [dict(e) for e in self.login_accounts],
            "packages": [p.to_json() for p in self.packages],
        }


# --- reading the extracted root file system ----------------------------------


class RootfsReader:
    """``read(path) -> bytes`` over an extracted root file system, never leaving it.

    Each path component is opened relative to its parent with ``O_NOFOLLOW``,
    so a symlink in the tree (which may point anywhere on the host) raises
    ``OSError`` instead of being followed; callers resolve symlinks in the
    index first. :meth:`head` reads only the first ``n`` bytes.
    """

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def _open(self, path: str) -> int:
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if any(p == ".." for p in parts):
            raise OSError(f"'..' in {path!r}")
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | (0 if last else os.O_DIRECTORY)
                if last:
                    flags |= os.O_NONBLOCK  # a fifo must not block us
                nfd = os.open(part, flags, dir_fd=fd)
                os.close(fd)
                fd = nfd
            return fd
        except BaseException:
            os.close(fd)
            raise

    def head(self, path: str, n: int) -> bytes:
        fd = self._open(path)
        try:
            return os.read(fd, n)
        finally:
            os.close(fd)

    def __call__(self, path: str) -> bytes:
        fd = self._open(path)
        try:
            with os.fdopen(fd, "rb", closefd=False) as f:
                return f.read()
        finally:
            os.close(fd)


# --- pure helpers -------------------------------------------------------------


def parse_os_release(text: str) -> dict[str, str]:
    """Parse ``os-release`` (``KEY=value``, shell quoting) into a dict; bad lines are ignored.

    os-release is advisory text, so a malformed line is skipped rather than fatal.
    """
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
            value = re.sub(r"\\([\\$\"`])", r"\1", value)
        out[key] = value
    return out


def elf_kind(head: bytes) -> str | None:
    """Classify an ELF file from its first bytes; None if it is not ELF.

    ``"executable"`` for ET_EXEC and for ET_DYN with a PT_INTERP segment
    (position-independent executables), ``"shared"`` for other ET_DYN,
    else ``"relocatable"``, ``"core"`` or ``"other"``. Truncated headers
    give ``"other"``. Program headers beyond ``head`` are not consulted.
    """
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    cls, data = head[4], head[5]
    end = "<" if data == 1 else ">" if data == 2 else None
    if end is None or cls not in (1, 2):
        return "other"
    (etype,) = struct.unpack_from(end + "H", head, 16)
    kind = _ET.get(etype, "other")
    if kind != "shared":
        return kind
    try:
        if cls == 2:
            phoff, = struct.unpack_from(end + "Q", head, 32)
            phentsize, phnum = struct.unpack_from(end + "HH", head, 54)
        else:
            phoff, = struct.unpack_from(end + "I", head, 28)
            phentsize, phnum = struct.unpack_from(end + "HH", head, 42)
        for i in range(min(phnum, 256)):
            off = phoff + i * phentsize
            if off + 4 > len(head):
                break
            if struct.unpack_from(end + "I", head, off)[0] == _PT_INTERP:
                return "executable"
    except struct.error:
        return "other"
    return "shared"


def decode_capabilities(raw: bytes) -> dict[str, Any]:
    """Decode a ``security.capability`` xattr (vfs_cap_data v1/v2/v3).

    Return ``{"permitted": [...], "inheritable": [...], "effective": bool}``
    (names like ``cap_net_raw``, unknown bits as ``cap_<n>``; v3 adds
    ``rootid``); ``{"raw": hex}`` if the value is malformed.
    """
    if len(raw) < 4:
        return {"raw": raw.hex()}
    magic = struct.unpack_from("<I", raw, 0)[0]
    version = magic & 0xFF000000
    words = {0x01000000: 1, 0x02000000: 2, 0x03000000: 2}.get(version)
    if words is None or len(raw) < 4 + 8 * words:
        return {"raw": raw.hex()}
    perm = inh = 0
    for i in range(words):
        p, h = struct.unpack_from("<II", raw, 4 + 8 * i)
        perm |= p << (32 * i)
        inh |= h << (32 * i)

    def names(bits: int) -> list[str]:
        return [f"cap_{CAPS[n]}" if n < len(CAPS) else f"cap_{n}" for n in range(64) if bits >> n & 1]

    d: dict[str, Any] = {"permitted": names(perm), "inheritable": names(inh), "effective": bool(magic & 1)}
    if version == 0x03000000 and len(raw) >= 24:
        d["rootid"] = struct.unpack_from("<I", raw, 20)[0]
    return d


def _is_exec_file(e: Entry) -> bool:
    return e.type in (REG, HARDLINK) and bool(e.mode & 0o111)


def _tool_list(index: Index, match: Callable[[str], bool]) -> tuple[dict[str, str], ...]:
    """Commands whose basename (or, for symlinks, the resolved target's basename) matches.

    A command is an executable regular file, or a symlink resolving to one,
    in a ``bin`` or ``sbin`` directory (``/usr/bin``, ``/usr/local/sbin``,
    ``/opt/x/bin``...); helpers elsewhere (``/etc/cron.daily/dpkg``,
    ``/usr/lib/apt/methods/ftp``) are not reported.
    """
    out: list[dict[str, str]] = []
    for e in index.iter_entries():
        if e.type not in (REG, HARDLINK, SYMLINK):
            continue
        if posixpath.basename(posixpath.dirname(e.path)) not in ("bin", "sbin"):
            continue
        base = posixpath.basename(e.path)
        if e.type == SYMLINK:
            real = index.resolve(e.path)
            if real is None or not _is_exec_file(index[real]):
                continue
            if match(base) or match(posixpath.basename(real)):
                out.append({"path": e.path, "target": real})
        elif _is_exec_file(e) and match(base):
            out.append({"path": e.path})
    return tuple(out)


def _mode_item(e: Entry) -> dict[str, Any]:
    return {"path": e.path, "type": e.type, "mode": f"{e.mode & 0o7777:04o}", "uid": e.uid, "gid": e.gid}


def _read_text(index: Index, read: Reader, path: str) -> str | None:
    real = index.resolve(path)
    if real is None or index[real].type not in (REG, HARDLINK) or index[real].size > (16 << 20):
        return None
    try:
        return read(real).decode("utf-8", "replace")
    except OSError as e:
        raise ImageError(f"{path}: cannot read from the extracted image: {e.strerror or e}") from e


def _config_json(image: Image) -> dict[str, Any]:
    rc = image.runtime_config
    if not isinstance(rc, Mapping):  # a hostile config: report nothing rather than crash
        rc = {}

    def lst(key: str) -> list[str] | None:
        v = rc.get(key)
        return [str(x) for x in v] if isinstance(v, list) else None

    def keys(key: str) -> list[str]:
        v = rc.get(key)
        return sorted(str(k) for k in v) if isinstance(v, Mapping) else []

    labels = rc.get("Labels")
    return {
        "entrypoint": lst("Entrypoint"), "cmd": lst("Cmd"), "user": str(rc.get("User") or ""),
        "env": lst("Env") or [], "workdir": str(rc.get("WorkingDir") or ""),
        "exposed_ports": keys("ExposedPorts"), "volumes": keys("Volumes"),
        "labels": {str(k): str(v) for k, v in sorted(labels.items())} if isinstance(labels, Mapping) else {},
        "stop_signal": str(rc.get("StopSignal") or ""),
    }


def _image_json(image: Image, reference: str | None) -> dict[str, Any]:
    cfg = image.config if isinstance(image.config, Mapping) else {}
    return {
        "reference": reference or image.name or "", "name": image.name or "",
        "manifest_digest": image.manifest_digest, "image_id": image.image_id,
        "layers": len(image.layers), "compressed_size": sum(b.size for b in image.layers),
        "architecture": str(cfg.get("architecture") or ""), "os": str(cfg.get("os") or ""),
        "created": str(cfg.get("created") or ""),
    }


def _login_accounts(text: str | None) -> tuple[dict[str, Any], ...]:
    out = []
    for line in (text or "").splitlines():
        parts = line.split(":")
        if len(parts) < 7 or line.startswith(("#", "+", "-")):
            continue
        shell = parts[6].strip()
        if shell and posixpath.basename(shell) in NOLOGIN:
            continue
        try:
            uid, gid = int(parts[2]), int(parts[3])
        except ValueError:
            continue
        out.append({"name": parts[0], "uid": uid, "gid": gid, "home": parts[5], "shell": shell or "/bin/sh"})
    return tuple(out)


def inventory(image: Image, index: Index, read: Reader, *, reference: str | None = None) -> Inventory:
    """Build the attack-surface inventory of ``image`` from its flattened ``index``.

    ``read(path)`` returns the content of a regular file named by its
    resolved in-image path (:class:`RootfsReader` over ``rootfs()``); if it
    also has ``head(path, n)`` that is used to read ELF headers cheaply.
    Counts: ``files`` regular files (each inode once: hardlink entries are
    counted in ``hardlinks`` instead), ``bytes`` the sum of regular file
    sizes, ``other`` devices and fifos. Raise ``ImageError`` (including
    ``PackageDatabaseError``) when a needed file cannot be read or a package
    database is malformed.
    """
    head: Callable[[str, int], bytes] = getattr(read, "head", None) or (lambda p, n: read(p)[:n])
    counts = {REG: 0, DIR: 0, SYMLINK: 0, HARDLINK: 0}
    other = size = 0
    elf: list[dict[str, str]] = []
    by_digest: dict[str, str | None] = {}
    setuid, setgid, caps, ww = [], [], [], []
    for e in index.iter_entries():
        if e.type in counts:
            counts[e.type] += 1
        elif e.type in (CHAR, BLOCK, FIFO):
            other += 1
        if e.type == REG:
            size += e.size
        if e.is_setuid:
            setuid.append(_mode_item(e))
        if e.is_setgid:
            setgid.append(_mode_item(e))
        if "security.capability" in e.xattrs:
            caps.append({"path": e.path, **decode_capabilities(e.xattrs["security.capability"])})
        if e.type != SYMLINK and e.mode & 0o002:
            item = _mode_item(e)
            item["sticky"] = bool(e.mode & 0o1000)
            ww.append(item)
        if e.type in (REG, HARDLINK) and (e.size >= 20 or e.type == HARDLINK):
            src = e.link if e.type == HARDLINK and e.link in index else e.path
            key = e.digest or src
            if key not in by_digest:
                try:
                    by_digest[key] = elf_kind(head(src, _ELF_HEAD))
                except OSError as err:
                    raise ImageError(f"{e.path}: cannot read from the extracted image: "
                                     f"{err.strerror or err}") from err
            kind = by_digest[key]
            if kind is not None:
                elf.append({"path": e.path, "kind": kind})
    osr = _read_text(index, read, "/etc/os-release") or _read_text(index, read, "/usr/lib/os-release")
    return Inventory(
        image=_image_json(image, reference), config=_config_json(image),
        os=parse_os_release(osr) if osr is not None else None,
        files=counts[REG], directories=counts[DIR], symlinks=counts[SYMLINK], hardlinks=counts[HARDLINK],
        other=other, bytes=size, elf_files=tuple(elf),
        shells=_tool_list(index, lambda b: b in SHELLS),
        interpreters=_tool_list(index, lambda b: bool(INTERPRETERS.match(b))),
        package_managers=_tool_list(index, lambda b: b in PACKAGE_MANAGERS or bool(_PIP.match(b))),
        network_tools=_tool_list(index, lambda b: b in NETWORK_TOOLS),
        setuid=tuple(setuid), setgid=tuple(setgid), file_capabilities=tuple(caps),
        world_writable=tuple(ww), login_accounts=_login_accounts(_read_text(index, read, "/etc/passwd")),
        packages=tuple(catalog(index, read)),
    )
