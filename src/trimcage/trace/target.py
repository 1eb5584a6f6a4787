"""From an image reference (or a bare root file system) to a runnable :class:`Target`."""

from __future__ import annotations

import json
import os
from typing import Any

from trimcage.errors import TrimcageError
from trimcage.trace.interface import Target, TraceError


def from_rootfs(rootfs: str, config: dict[str, Any] | None = None, ref: str | None = None) -> Target:
    """A directory holding an extracted root file system, with an optional image config.

    ``config`` is the OCI ``config`` member or a whole image config (with ``config`` inside).
    """
    if not os.path.isdir(rootfs):
        raise TraceError(f"{rootfs}: not a directory")
    cfg = dict(config or {})
    if "config" in cfg and isinstance(cfg["config"], dict):
        cfg = cfg["config"]
    return Target(os.path.realpath(rootfs), cfg, ref or rootfs)


def load_config(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise TraceError(f"{path}: cannot read image config: {e}") from e
    if not isinstance(doc, dict):
        raise TraceError(f"{path}: image config must be a JSON object")
    return doc


def from_image(ref: str, transport_opts: Any = None) -> Target:
    """Read ``ref`` through the image stage and extract (cached) its root file system."""
    try:
        from trimcage.image.api import read_image
        from trimcage.image.store import open_store
        from trimcage.image.extract import rootfs as extract_rootfs  # type: ignore[import-not-found]
    except ImportError as e:
        raise TraceError(f"{ref}: the image stage cannot extract root file systems yet ({e}); "
                         "use --rootfs DIR") from e
    store = open_store()
    try:
        image = read_image(ref, store, transport_opts) if transport_opts else read_image(ref, store)
        root = extract_rootfs(image, store)
    except TrimcageError:
        raise
    except OSError as e:
        raise TraceError(f"{ref}: cannot read image: {e}") from e
    return Target(str(root), dict(image.runtime_config), ref, image)
