"""The elf stage's contract: options, the analysis result and its error.

Static analysis answers two questions about an image without running any of
its content: which files the application can load or run (executables, the
loader, libraries, dlopen targets, interpreters, scripts and the symlinks on
the way to them), and which system calls (with which constant arguments) the
code reachable from the entry points can make.

Later stages import only from this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from trimcage.errors import TrimcageError


class ElfError(TrimcageError):
    """Malformed ELF file or unusable analysis input; the message names the file."""


@dataclass(frozen=True)
class AnalyzeOptions:
    """Options of one analysis.

    ``all_binaries``: every ELF file of the image is an entry point.
    ``include_exe``: extra in-image paths taken as entry points.
    ``workers``: processes used to analyse objects (the machine has 2 cores).
    ``use_cache``: read and write per-object summaries in the store's cache.
    """

    all_binaries: bool = False
    include_exe: tuple[str, ...] = ()
    workers: int = 2
    use_cache: bool = True


@dataclass(frozen=True)
class EntryPoint:
    """An in-image path the application starts, and how it was found
    (``config``, ``shebang``, ``script``, ``include-exe``, ``all-binaries``)."""

    path: str
    how: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "how": self.how}


@dataclass(frozen=True)
class ObjectInfo:
    """One analysed ELF object.

    ``kind`` is ``exec``, ``pie``, ``shared``, ``static``, ``static-pie``,
    ``go`` or ``invalid``; ``needed`` its DT_NEEDED names; ``resolved`` maps
    each needed name to the in-image path it resolved to (None: not found);
    ``syscalls`` the names reachable inside this object in this program;
    ``unresolved_sites`` the reachable ``syscall`` sites whose number is
    unknown; ``cache_hit`` whether its summary came from the cache.
    """

    path: str
    kind: str
    needed: tuple[str, ...] = ()
    resolved: Mapping[str, str | None] = field(default_factory=dict)
    syscalls: tuple[str, ...] = ()
    unresolved_sites: int = 0
    cache_hit: bool = False
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.path, "kind": self.kind, "needed": list(self.needed),
                             "resolved": dict(sorted(self.resolved.items())),
                             "syscalls": list(self.syscalls), "unresolved_sites": self.unresolved_sites,
                             "cache_hit": self.cache_hit}
        if self.error:
            d["error"] = self.error
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "ObjectInfo":
        return cls(path=d["path"], kind=d["kind"], needed=tuple(d.get("needed", ())),
                   resolved=dict(d.get("resolved", {})), syscalls=tuple(d.get("syscalls", ())),
                   unresolved_sites=int(d.get("unresolved_sites", 0)),
                   cache_hit=bool(d.get("cache_hit", False)), error=d.get("error"))


@dataclass(frozen=True)
class Analysis:
    """The result of static analysis of one image.

    Invariants: ``files`` and ``syscalls`` are sorted and duplicate-free;
    ``arguments`` holds ``{syscall: {arg_index_str: sorted values}}`` only for
    arguments whose value is known at every reachable site; ``open_arguments``
    says for the tracked arguments that are not restricted why not (the first
    blocking site ``object+0xaddr``). ``unresolved_libraries`` lists
    ``{"name", "needed_by"}`` for DT_NEEDED names not found in the image.
    ``unresolved_sites`` is ``{"policy": str, "total": int, "per_object": {path: n},
    "sites": [str]}``. ``timings`` are seconds per phase (not deterministic,
    and left out of :meth:`to_json` when ``timings=False``).
    """

    entry_points: tuple[EntryPoint, ...]
    files: tuple[str, ...]
    objects: tuple[ObjectInfo, ...]
    unresolved_libraries: tuple[Mapping[str, str], ...]
    syscalls: tuple[str, ...]
    arguments: Mapping[str, Mapping[str, tuple[int, ...]]]
    open_arguments: Mapping[str, Mapping[str, str]]
    unresolved_sites: Mapping[str, Any]
    notes: tuple[str, ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)

    def to_json(self, *, timings: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "entry_points": [e.to_json() for e in self.entry_points],
            "files": list(self.files),
            "objects": [o.to_json() for o in self.objects],
            "unresolved_libraries": [dict(u) for u in self.unresolved_libraries],
            "syscalls": list(self.syscalls),
            "arguments": {s: {i: list(v) for i, v in sorted(a.items())}
                          for s, a in sorted(self.arguments.items())},
            "open_arguments": {s: dict(sorted(a.items())) for s, a in sorted(self.open_arguments.items())},
            "unresolved_sites": dict(self.unresolved_sites),
            "notes": list(self.notes),
        }
        if timings:
            d["timings"] = {k: round(v, 3) for k, v in sorted(self.timings.items())}
        return d

    def dumps(self, *, timings: bool = True) -> str:
        return json.dumps(self.to_json(timings=timings), sort_keys=True, indent=2) + "\n"

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Analysis":
        """Inverse of :meth:`to_json`; raise ``ElfError`` on a malformed document."""
        try:
            return cls(
                entry_points=tuple(EntryPoint(e["path"], e["how"]) for e in d["entry_points"]),
                files=tuple(d["files"]),
                objects=tuple(ObjectInfo.from_json(o) for o in d["objects"]),
                unresolved_libraries=tuple(dict(u) for u in d.get("unresolved_libraries", ())),
                syscalls=tuple(d["syscalls"]),
                arguments={s: {i: tuple(int(x) for x in v) for i, v in a.items()}
                           for s, a in d.get("arguments", {}).items()},
                open_arguments={s: dict(a) for s, a in d.get("open_arguments", {}).items()},
                unresolved_sites=dict(d.get("unresolved_sites", {})),
                notes=tuple(d.get("notes", ())),
                timings=dict(d.get("timings", {})),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ElfError(f"analysis.json: malformed analysis document: {e}") from e
