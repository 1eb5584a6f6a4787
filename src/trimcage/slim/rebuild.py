"""Rebuild: write the keep-set as a new single-layer image with honest metadata."""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Iterable, Mapping

from trimcage import __version__
from trimcage.image.interface import DIR, Image, Index, StoreLike
from trimcage.image.packages.catalog import catalog
from trimcage.slim.interface import KeepSet, PackageChange, SlimOptions, SlimResult
from trimcage.slim.keepset import compute_keepset
from trimcage.slim.packagedb import DPKG_INFO, DPKG_STATUS_D, rewrite_databases

LABEL_SOURCE = "org.trimcage.source-digest"
LABEL_VERSION = "org.trimcage.version"
LABEL_MODE = "org.trimcage.mode"


def reader_for(root: Path, index: Index):
    """Return ``read(path) -> bytes`` over an extracted rootfs.

    ``path`` is resolved through the index's symlinks first, then opened
    without following any link (``writer.open_beneath``), so nothing outside
    ``root`` is read. Raise ``FileNotFoundError`` when it is not a file.
    """
    from trimcage.image.writer import open_beneath

    def read(path: str) -> bytes:
        real = index.resolve(path)
        if real is None or not index[real].is_file:
            raise FileNotFoundError(path)
        with open_beneath(root, real) as f:
            return f.read()

    return read


def _count(index: Index, paths: Iterable[str]) -> tuple[int, int]:
    """(non-directory entries, bytes of regular files; hardlinks counted once)."""
    entries = [index[p] for p in paths]
    return (sum(e.type != DIR for e in entries), sum(e.size for e in entries if e.type == "file"))


def slim_image(image: Image, store: StoreLike, index: Index, root: Path, options: SlimOptions, *,
               static_files: Iterable[str] | None = None, traced_files: Iterable[str] | None = None,
               executed: Iterable[str] = (), extra_uids: Iterable[int] = (),
               entry_points: Iterable[str] = ()) -> SlimResult:
    """Build the slim image of ``image`` (flattened as ``index``, extracted at ``root``).

    The result's image and blobs are in ``store``; nothing is written elsewhere.
    Same inputs give the same manifest digest.
    """
    from trimcage.image.writer import build_image

    read = reader_for(root, index)
    config: Mapping = image.runtime_config
    packages = catalog(index, read)
    keep = compute_keepset(index, read, config, options=options, static_files=static_files,
                           traced_files=traced_files, executed=executed, extra_uids=extra_uids,
                           packages=packages, entry_points=entry_points)
    kept = set(keep.paths)
    rw = rewrite_databases(packages, index, read, kept)
    db_dirs = (DPKG_INFO + "/", DPKG_STATUS_D + "/")
    # Database files: only those rewritten stay; the rest of info/ and status.d/ goes.
    kept = {p for p in kept if not p.startswith(db_dirs) or p in rw.files}
    for p in rw.files:
        kept.add(p)
        parent = posixpath.dirname(p)
        while parent != "/" and parent not in kept:
            kept.add(parent)
            parent = posixpath.dirname(parent)
    overlay = dict(keep.overlay)
    overlay.update(rw.files)

    removed_bits = set(keep.setuid_removed)
    entries = []
    for p in sorted(kept):
        e = index[p]
        if p in removed_bits:
            e = e.replace(mode=e.mode & ~0o6000)
        entries.append(e)

    labels = dict(config.get("Labels") or {})
    labels[LABEL_SOURCE] = image.manifest_digest
    labels[LABEL_VERSION] = __version__
    labels[LABEL_MODE] = options.mode
    new_config = dict(config)
    new_config["Labels"] = labels
    slim = build_image(store, root, entries, new_config, overlay=overlay,
                       history_comment=f"trimcage {__version__} slim ({options.mode})")

    files_before, bytes_before = _count(index, index)
    files_after, bytes_after = _count(index, kept)
    bytes_after += sum(len(v) - index[p].size for p, v in overlay.items() if p in index)
    keep = KeepSet(paths=tuple(sorted(kept)), reasons=keep.reasons, setuid_removed=keep.setuid_removed,
                   setuid_kept=keep.setuid_kept, overlay=overlay)
    change = PackageChange(before=tuple(sorted({p.name for p in packages})),
                           kept=tuple(sorted({p.name for p in rw.kept})),
                           removed=tuple(sorted({p.name for p in rw.removed})))
    return SlimResult(image=slim, keep=keep, packages=change, files_before=files_before,
                      files_after=files_after, bytes_before=bytes_before, bytes_after=bytes_after)
