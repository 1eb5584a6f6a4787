"""``oci:DIR[:TAG]`` — an OCI image layout directory.

Reading selects the ``index.json`` entry annotated with ``TAG`` (or the only
entry) and copies its blobs into the store, verified. Writing adds the image
to the layout (creating it if needed): blobs are written under temporary
names and renamed, and ``index.json`` is replaced atomically last, so a
reader never sees a manifest whose blobs are missing. An entry with the same
tag (or, untagged, the same digest) is replaced.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from trimcage.image.interface import (
    Image,
    ImageError,
    ImageReference,
    StoreLike,
    Transport,
    TransportError,
    TransportOptions,
)
from trimcage.image.reference import split_path
from trimcage.image.transports import _layout_util as lu
from trimcage.util import atomic_path, sha256_bytes, write_atomic


class OciLayoutTransport(Transport):
    name = "oci"

    def parse(self, rest: str) -> ImageReference:
        path, tag = split_path(rest, self.name)
        return ImageReference(self.name, path=path, tag=tag)

    def format(self, ref: ImageReference) -> str:
        return f"{ref.path}:{ref.tag}" if ref.tag else str(ref.path)

    def read(self, ref: ImageReference, store: StoreLike, opts: TransportOptions) -> Image:
        if not os.path.isdir(str(ref.path)):
            raise TransportError(f"{ref}: {ref.path} is not a directory")
        if not os.path.isfile(os.path.join(str(ref.path), "oci-layout")):
            raise TransportError(f"{ref}: {ref.path} is not an OCI layout (no oci-layout file)")
        with lu.DirSource(str(ref.path)) as src:
            return lu.read_oci(src, ref.tag, store, opts.platform)

    def write(self, ref: ImageReference, image: Image, store: StoreLike, opts: TransportOptions) -> str:
        lu.require_blobs(image, store)
        manifest = lu.manifest_bytes(image, store, "oci")
        dest = Path(str(ref.path))
        if dest.exists() and not dest.is_dir():
            raise TransportError(f"{ref}: {dest} exists and is not a directory")
        if dest.is_dir() and any(dest.iterdir()):
            if not (dest / "oci-layout").is_file() or not (dest / "index.json").is_file():
                raise TransportError(f"{ref}: {dest} is a non-empty directory that is not an OCI layout")
            entries = _existing_entries(dest)
            write_layout(dest, image, manifest, store)
        else:
            entries = []
            with atomic_path(dest, is_dir=True) as tmp:
                write_atomic(tmp / "oci-layout", lu.LAYOUT_JSON)
                write_layout(tmp, image, manifest, store)
                write_atomic(tmp / "index.json", lu.index_json([lu.index_entry(manifest, ref.tag)]))
            return sha256_bytes(manifest)
        new = lu.index_entry(manifest, ref.tag)
        kept = [e for e in entries if not _same_slot(e, new, ref.tag)]
        write_atomic(dest / "index.json", lu.index_json(kept + [new]))
        return str(new["digest"])


def _existing_entries(dest: Path) -> list[dict]:
    obj = lu.load_json_object((dest / "index.json").read_bytes(), f"{dest}/index.json")
    entries = obj.get("manifests")
    if not isinstance(entries, list):
        raise ImageError(f"{dest}/index.json: 'manifests' is not a list")
    return [e for e in entries if isinstance(e, dict)]


def _same_slot(old: dict, new: dict, tag: str | None) -> bool:
    old_tag = (old.get("annotations") or {}).get(lu.REF_NAME)
    if tag:
        return old_tag == tag
    return old_tag is None and old.get("digest") == new["digest"]


def write_layout(root: Path, image: Image, manifest: bytes, store: StoreLike) -> None:
    """Put config, layers and ``manifest`` under ``root/blobs/sha256/`` (each write atomic)."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for digest, _what in lu.layout_blobs(image):
        target = root / lu.blob_member(digest)
        if target.is_file() and not target.is_symlink():
            continue
        with atomic_path(target) as tmp:
            shutil.copyfile(store.blob_path(digest), tmp)
    write_atomic(root / lu.blob_member(sha256_bytes(manifest)), manifest)


TRANSPORT = OciLayoutTransport()
