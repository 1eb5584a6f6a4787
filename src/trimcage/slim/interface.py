"""The slim stage's contract: which paths to keep, and the rebuilt image.

The keep-set is computed from what earlier stages found (the static closure
of ``elf``, the files a ``trace`` touched, the user's ``--include`` paths) plus
what any image needs to start. Rebuilding writes one deterministic layer that
holds exactly the keep-set, with package databases rewritten so scanners list
only the packages that still have files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from trimcage.errors import TrimcageError
from trimcage.image.interface import Image

MODES = ("combined", "static", "dynamic")


class SlimError(TrimcageError):
    """The keep-set or the rebuild cannot be made (names the path or package)."""


@dataclass(frozen=True)
class SlimOptions:
    """How to slim.

    ``mode``: ``combined`` keeps static closure ∪ traced files ∪ includes;
    ``static`` the static closure only; ``dynamic`` traced files plus the ELF
    closure of what ran. ``includes`` are in-image paths kept with all they
    contain. ``keep_shell`` keeps /bin/sh and its closure (debugging).
    ``keep_setuid`` keeps setuid/setgid bits on files the trace shows were run.
    """

    mode: str = "combined"
    includes: tuple[str, ...] = ()
    keep_shell: bool = False
    source_name: str | None = None


@dataclass(frozen=True)
class KeepSet:
    """The paths of the slim image and why each is there.

    ``paths`` is sorted and closed: every parent directory and every symlink on
    the way to a kept path is in it. ``reasons`` maps a path to the first
    reason it was added (``static``, ``trace``, ``include``, ``loader``,
    ``parent``, ``symlink``, ``base``...). ``setuid_removed`` lists files whose
    setuid/setgid bits are cleared; ``setuid_kept`` those whose bits stay.
    ``overlay`` holds rewritten file contents (passwd, group, dpkg status...).
    """

    paths: tuple[str, ...]
    reasons: Mapping[str, str]
    setuid_removed: tuple[str, ...] = ()
    setuid_kept: tuple[str, ...] = ()
    overlay: Mapping[str, bytes] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"paths": len(self.paths), "setuid_removed": list(self.setuid_removed),
                "setuid_kept": list(self.setuid_kept), "rewritten": sorted(self.overlay)}


@dataclass(frozen=True)
class PackageChange:
    """Packages before and after slimming (by name, the scanner's view)."""

    before: tuple[str, ...]
    kept: tuple[str, ...]
    removed: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"before": len(self.before), "kept": list(self.kept), "removed": list(self.removed)}


@dataclass(frozen=True)
class SlimResult:
    """The rebuilt image (its blobs in the store) and what went."""

    image: Image
    keep: KeepSet
    packages: PackageChange
    files_before: int
    files_after: int
    bytes_before: int
    bytes_after: int

    def to_json(self) -> dict[str, Any]:
        return {"manifest_digest": self.image.manifest_digest, "keep": self.keep.to_json(),
                "packages": self.packages.to_json(), "files_before": self.files_before,
                "files_after": self.files_after, "bytes_before": self.bytes_before,
                "bytes_after": self.bytes_after}
