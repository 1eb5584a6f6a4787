"""Helpers that craft layer tars and images -- well-formed and hostile -- for the image tests.

``tar_bytes([M("etc/passwd", data=b"root:x:0:0::/root:/bin/sh\\n"), M("bin", "symlink", link="usr/bin")])``
builds a layer with :mod:`tarfile`, writing member names verbatim (``../x``,
``/abs``, ``.wh.`` tricks included) so the code under test sees exactly what a
hostile image would hold. :func:`make_image` puts layers into a store as a
real image (config with diff_ids, blobs by digest).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import zstandard

from trimcage.image.interface import DOCKER_CONFIG, OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, Blob, Image

MTIME = 1_700_000_000
_TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
          "char": tarfile.CHRTYPE, "block": tarfile.BLKTYPE, "fifo": tarfile.FIFOTYPE}


@dataclass
class M:
    """One tar member: ``name`` as stored, ``type`` an Entry type name (or a raw tar type byte)."""

    name: str
    type: str | bytes = "file"
    data: bytes = b""
    link: str = ""
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    mtime: int = MTIME
    uname: str = "root"
    gname: str = "root"
    xattrs: dict[str, bytes] = field(default_factory=dict)
    dev: tuple[int, int] = (0, 0)


def tar_bytes(members: Sequence[M], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """A tar archive of ``members``, in order, names exactly as given."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, encoding="utf-8", errors="surrogateescape") as tf:
        for m in members:
            ti = tarfile.TarInfo(m.name)
            ti.type = _TYPES[m.type] if isinstance(m.type, str) else m.type
            ti.mode = m.mode if m.mode is not None else (0o755 if m.type == "dir" else 0o644)
            ti.uid, ti.gid, ti.mtime, ti.uname, ti.gname = m.uid, m.gid, m.mtime, m.uname, m.gname
            ti.linkname = m.link
            ti.devmajor, ti.devminor = m.dev
            if m.xattrs:
                ti.pax_headers = {"SCHILY.xattr." + k: v.decode("utf-8", "surrogateescape") for k, v in m.xattrs.items()}
            if ti.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
                ti.size = len(m.data)
                tf.addfile(ti, io.BytesIO(m.data))
            else:
                tf.addfile(ti)
    return buf.getvalue()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def zst(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def uncompressed(blob: bytes) -> bytes:
    """The layer's tar bytes; as much as decompresses for a corrupt blob (to give hostile layers a diff_id)."""
    try:
        if blob[:2] == b"\x1f\x8b":
            return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(blob)
        if blob[:4] == b"\x28\xb5\x2f\xfd":
            return zstandard.ZstdDecompressor().decompressobj().decompress(blob)
    except (zlib.error, zstandard.ZstdError):
        pass
    return blob


def write_layers(directory: Path, layers: Sequence[bytes]) -> list[Path]:
    """Write each layer blob to ``directory/layerN.tar`` (name says nothing about compression)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, data in enumerate(layers):
        p = directory / f"layer{i}.tar"
        p.write_bytes(data)
        paths.append(p)
    return paths


def make_image(store, layers: Sequence[bytes], *, diff_ids: Sequence[str] | None = None) -> Image:
    """An image of ``layers`` (tar, gzip or zstd bytes, bottom first) whose blobs are in ``store``."""
    blobs = []
    for data in layers:
        b = store.put_blob_bytes(data)
        mt = OCI_LAYER_GZIP if data[:2] == b"\x1f\x8b" else OCI_LAYER_ZSTD if data[:4] == b"\x28\xb5\x2f\xfd" else OCI_LAYER
        blobs.append(Blob(b.digest, b.size, mt))
    if diff_ids is None:
        diff_ids = ["sha256:" + hashlib.sha256(uncompressed(d)).hexdigest() for d in layers]
    config = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
              "rootfs": {"type": "layers", "diff_ids": list(diff_ids)}}
    cb = store.put_blob_bytes(json.dumps(config, sort_keys=True).encode())
    return Image(Blob(cb.digest, cb.size, DOCKER_CONFIG), config, tuple(blobs), "sha256:" + "0" * 64, "test:latest")
