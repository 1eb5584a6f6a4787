"""Entry points: what the image starts, found from its config and scripts.

``Entrypoint`` + ``Cmd`` are resolved against the image's ``PATH`` (from
``Env``) and ``WorkingDir``; a script's ``#!`` interpreter is an entry point
too (``/usr/bin/env NAME`` resolved through PATH); shell scripts and
``sh -c`` strings are scanned best effort for command words and ``exec``
lines. Nothing is executed.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from typing import Any, Mapping

from trimcage.elf.fsview import FsView
from trimcage.elf.interface import EntryPoint

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SHELLS = {"sh", "bash", "dash", "ash", "busybox", "zsh", "ksh", "mksh"}
SHELL_WORDS = {
    "if", "then", "else", "elif", "fi", "for", "in", "do", "done", "while", "until", "case", "esac",
    "function", "{", "}", "(", ")", "!", "[[", "]]", "[", "test", "echo", "printf", "set", "export",
    "unset", "cd", "pwd", ":", "true", "false", "shift", "read", "local", "return", "exit", "trap",
    "eval", "source", ".", "exec", "wait", "umask", "ulimit", "declare", "readonly", "type", "command",
    "let", "getopts", "break", "continue", "alias", "hash", "jobs", "kill", "times", "builtin", "then;",
}


def image_env(config: Mapping[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for kv in config.get("Env") or []:
        if isinstance(kv, str) and "=" in kv:
            k, v = kv.split("=", 1)
            env[k] = v
    return env


class EntryFinder:
    """Collects entry points and script files of one image."""

    def __init__(self, fs: FsView, config: Mapping[str, Any]):
        self.fs = fs
        self.config = config
        self.env = image_env(config)
        self.path = [p for p in self.env.get("PATH", DEFAULT_PATH).split(":") if p]
        self.workdir = config.get("WorkingDir") or "/"
        self.entries: list[EntryPoint] = []
        self.scripts: list[str] = []       # in-image script files (go into ``files``)
        self.notes: list[str] = []
        self._seen: set[str] = set()

    def which(self, word: str) -> str | None:
        """The in-image path ``word`` runs (PATH lookup without a slash); None if absent."""
        if not word:
            return None
        if "/" in word:
            p = word if word.startswith("/") else posixpath.join(self.workdir, word)
            return posixpath.normpath(p) if self.fs.is_file(p) else None
        for d in self.path:
            p = posixpath.join(d if d.startswith("/") else posixpath.join(self.workdir, d), word)
            if self.fs.is_file(p):
                return p
        return None

    def from_config(self) -> None:
        argv = list(self.config.get("Entrypoint") or []) + list(self.config.get("Cmd") or [])
        argv = [a for a in argv if isinstance(a, str)]
        if not argv:
            self.notes.append("image config has no Entrypoint or Cmd")
            return
        self.add_command(argv, "config", depth=0)

    def add_command(self, argv: list[str], how: str, depth: int) -> None:
        if not argv or depth > 4:
            return
        p = self.which(argv[0])
        if p is None:
            self.notes.append(f"{how}: command {argv[0]!r} not found in the image")
            return
        self.add_file(p, how, depth)
        base = posixpath.basename(p)
        if base in SHELLS or re.fullmatch(r"(ba|da|a|z|k|mk)?sh", base):
            if "-c" in argv[1:]:
                i = argv.index("-c", 1)
                if i + 1 < len(argv):
                    self.scan_shell(argv[i + 1], f"sh -c ({how})", depth + 1)
            elif len(argv) > 1 and not argv[1].startswith("-"):
                sp = self.which(argv[1]) or None
                if sp:
                    self.add_file(sp, f"script argument ({how})", depth + 1)
        elif re.fullmatch(r"python[0-9.]*|perl[0-9.]*|node|ruby[0-9.]*", base) and len(argv) > 1:
            sp = argv[1] if argv[1].startswith("/") else posixpath.join(self.workdir, argv[1])
            if self.fs.is_file(sp):
                self.scripts.append(sp)

    def add_file(self, p: str, how: str, depth: int) -> None:
        """Add the in-image file ``p``: an ELF entry point or a script with its interpreter."""
        if p in self._seen:
            return
        self._seen.add(p)
        try:
            head = self.fs.read(p, 256)
        except Exception:  # noqa: BLE001 - unreadable file: reported, not fatal
            self.notes.append(f"{p}: cannot read")
            return
        if head[:4] == b"\x7fELF":
            self.entries.append(EntryPoint(p, how))
            return
        if head[:2] == b"#!":
            self.scripts.append(p)
            line = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").strip()
            words = line.split()
            if not words:
                return
            interp = words[0]
            args = words[1:]
            if posixpath.basename(interp) == "env" and args:
                args = [a for a in args if not a.startswith("-")]
                self.add_command(args[:1], f"shebang of {p}", depth + 1)
                interp_base = args[0] if args else ""
            else:
                self.add_command([interp], f"shebang of {p}", depth + 1)
                interp_base = posixpath.basename(interp)
            if re.fullmatch(r"(ba|da|a|z|k|mk)?sh", interp_base):
                text = self.fs.read_text(p) or ""
                self.scan_shell(text, f"script {p}", depth + 1)
            return
        self.scripts.append(p)
        self.notes.append(f"{p}: neither ELF nor #! script ({how})")

    def scan_shell(self, text: str, how: str, depth: int) -> None:
        """Best effort: the first word of every simple command and of ``exec`` lines."""
        if depth > 4:
            return
        for raw in text.splitlines():
            line = raw.split(" #", 1)[0].strip()
            if not line or line.startswith("#"):
                continue
            for cmd in re.split(r"&&|\|\||[;|&`]|\$\(", line):
                try:
                    words = shlex.split(cmd, comments=True)
                except ValueError:
                    words = cmd.split()
                while words and (re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]) or words[0] in
                                 ("exec", "then", "do", "else", "!", "command", "nohup", "time")):
                    words = words[1:]
                if not words or words[0] in SHELL_WORDS or "$" in words[0] or words[0].startswith("-"):
                    continue
                if re.fullmatch(r"[\w./+-]+", words[0]) and self.which(words[0]):
                    self.add_command(words, how, depth)


def find_entry_points(fs: FsView, config: Mapping[str, Any], include_exe: tuple[str, ...] = (),
                      all_binaries: bool = False) -> EntryFinder:
    """Run entry point discovery; the finder holds ``entries``, ``scripts``, ``notes``."""
    f = EntryFinder(fs, config)
    f.from_config()
    for p in include_exe:
        rp = f.which(p) if "/" not in p else (p if fs.is_file(p) else None)
        if rp is None:
            f.notes.append(f"--include-exe {p}: not in the image")
            continue
        f.add_file(rp, "include-exe", 0)
    if all_binaries:
        for path, e in fs.index.items():
            if e.type in ("file",) and path not in f._seen and e.size != 0:
                try:
                    if fs.read(path, 4) == b"\x7fELF":
                        f._seen.add(path)
                        f.entries.append(EntryPoint(path, "all-binaries"))
                except Exception:  # noqa: BLE001
                    continue
    return f
