"""``oci-archive:PATH[:TAG]`` — an OCI image layout in a tar file.

Reading never extracts the archive: members are looked up by name and only
blobs are copied, verified, into the store. Writing produces a fresh archive
holding just this image (``oci-layout``, ``index.json``, ``blobs/sha256/*``)
with fixed member metadata, so the same image gives a byte-identical file;
it is written under a temporary name and renamed.
"""

from __future__ import annotations

import os

from trimcage.image.interface import Image, ImageReference, StoreLike, Transport, TransportOptions
from trimcage.image.reference import split_path
from trimcage.image.transports import _layout_util as lu
from trimcage.util import atomic_path, sha256_bytes


class OciArchiveTransport(Transport):
    name = "oci-archive"

    def parse(self, rest: str) -> ImageReference:
        path, tag = split_path(rest, self.name)
        return ImageReference(self.name, path=path, tag=tag)

    def format(self, ref: ImageReference) -> str:
        return f"{ref.path}:{ref.tag}" if ref.tag else str(ref.path)

    def read(self, ref: ImageReference, store: StoreLike, opts: TransportOptions) -> Image:
        with lu.TarSource(str(ref.path)) as src:
            if not src.exists("index.json"):
                raise lu.HostileInputError(f"{ref.path}: not an OCI archive (no index.json)")
            return lu.read_oci(src, ref.tag, store, opts.platform)

    def write(self, ref: ImageReference, image: Image, store: StoreLike, opts: TransportOptions) -> str:
        lu.require_blobs(image, store)
        manifest = lu.manifest_bytes(image, store, "oci")
        write_oci_archive(str(ref.path), image, manifest, store, ref.tag)
        return sha256_bytes(manifest)


def write_oci_archive(path: str, image: Image, manifest: bytes, store: StoreLike, tag: str | None) -> None:
    """Write a one-image OCI archive at ``path`` atomically and deterministically."""
    blobs: dict[str, str] = {}
    for digest, _what in lu.layout_blobs(image):
        blobs[digest] = store.blob_path(digest)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        tw = lu.TarWriter(f)
        tw.add_bytes("oci-layout", lu.LAYOUT_JSON)
        tw.add_bytes("index.json", lu.index_json([lu.index_entry(manifest, tag)]))
        tw.add_bytes(lu.blob_member(sha256_bytes(manifest)), manifest)
        for digest in sorted(blobs):
            tw.add_file(lu.blob_member(digest), blobs[digest], os.path.getsize(blobs[digest]))
        tw.close()


TRANSPORT = OciArchiveTransport()
