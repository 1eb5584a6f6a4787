"""``docker-archive:PATH[:NAME[:TAG]]`` — ``docker save`` / ``docker load`` tar files.

Reading understands ``docker save`` output: ``manifest.json`` naming a
config (``<id>.json``, or ``blobs/sha256/<hex>`` in the OCI-layout-inside
form of Docker >= 25) and layer tars (``<id>/layer.tar`` or blobs),
plain or compressed, links between members resolved inside the archive.
The config is verified against its name when that is a digest; every layer
is verified against the config's ``rootfs.diff_ids`` (compressed layers are
decompressed to check). A Docker v2 schema 2 manifest is synthesised and
stored, as containers/image does.

Writing produces what Docker 20.10's ``docker load`` and ``podman load``
accept: ``manifest.json``, ``<config hex>.json`` and one file per layer blob
as stored (``<hex>.tar`` or ``<hex>.tar.gz``), written deterministically
under a temporary name and renamed.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import re
from typing import Any, BinaryIO

from trimcage.image.interface import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    OCI_LAYER_ZSTD,
    Blob,
    BadReferenceError,
    DigestMismatchError,
    HostileInputError,
    Image,
    ImageError,
    ImageReference,
    StoreLike,
    Transport,
    TransportOptions,
)
from trimcage.image.reference import format_docker_name, parse_docker_name, split_path
from trimcage.image.transports import _layout_util as lu
from trimcage.util import CHUNK, atomic_path, dumps, sha256_bytes

_CONFIG_NAME = re.compile(r"^(?:blobs/sha256/)?([0-9a-f]{64})(?:\.json)?$")


class DockerArchiveTransport(Transport):
    name = "docker-archive"

    def parse(self, rest: str) -> ImageReference:
        path, named = split_path(rest, self.name)
        if named is None:
            return ImageReference(self.name, path=path)
        if named.startswith("@"):
            raise BadReferenceError(f"{rest!r}: image indexes (@N) are not supported, name NAME:TAG")
        name, tag, _ = parse_docker_name(named, allow_digest=False)
        return ImageReference(self.name, path=path, name=name, tag=tag)

    def format(self, ref: ImageReference) -> str:
        if ref.name:
            return f"{ref.path}:{format_docker_name(ref)}"
        return str(ref.path)

    def read(self, ref: ImageReference, store: StoreLike, opts: TransportOptions) -> Image:
        with lu.TarSource(str(ref.path)) as src:
            if not src.exists("manifest.json"):
                raise HostileInputError(f"{ref.path}: not a docker archive (no manifest.json)")
            entries = lu.load_json(src.read_small("manifest.json", "manifest.json"), f"{ref.path}: manifest.json")
            if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
                raise HostileInputError(f"{ref.path}: manifest.json is not a non-empty list of objects")
            entry = _choose(entries, ref)
            return _read_entry(src, entry, store)

    def write(self, ref: ImageReference, image: Image, store: StoreLike, opts: TransportOptions) -> str:
        lu.require_blobs(image, store)
        if ref.name:
            tags = [f"{ref.name}:{ref.tag or 'latest'}"]
        else:
            tags = _tags_from_name(image.name)
        write_docker_archive(str(ref.path), image, store, tags)
        return sha256_bytes(lu.manifest_bytes(image, store, "docker"))


def _tags_from_name(name: str | None) -> list[str]:
    """RepoTags for an image's own ``name``: ``[NAME:TAG]`` if it is a valid tag reference, else none."""
    if not name:
        return []
    try:
        repo, tag, digest = parse_docker_name(name)
    except BadReferenceError:
        return []
    return [] if digest else [f"{repo}:{tag or 'latest'}"]


def _short(tag: str) -> str:
    """``docker.io/library/nginx:1`` -> ``nginx:1``: Docker's familiar form, for matching."""
    for prefix in ("docker.io/library/", "docker.io/", "localhost/"):
        if tag.startswith(prefix):
            return tag[len(prefix):]
    return tag


def _choose(entries: list[dict[str, Any]], ref: ImageReference) -> dict[str, Any]:
    if ref.name:
        want = _short(f"{ref.name}:{ref.tag or 'latest'}")
        for e in entries:
            tags = e.get("RepoTags") or []
            if isinstance(tags, list) and any(isinstance(t, str) and _short(t) == want for t in tags):
                return e
        raise ImageError(f"{ref.path}: no image tagged {want!r} in the archive")
    if len(entries) != 1:
        raise ImageError(f"{ref.path}: the archive holds {len(entries)} images; name one with :NAME:TAG")
    return entries[0]


def _read_entry(src: lu.TarSource, entry: dict[str, Any], store: StoreLike) -> Image:
    label = src.label
    cname, layers = entry.get("Config"), entry.get("Layers")
    if not isinstance(cname, str) or not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
        raise HostileInputError(f"{label}: manifest.json entry lacks Config or Layers")
    cdata = src.read_small(cname, "config")
    cdigest = sha256_bytes(cdata)
    m = _CONFIG_NAME.match(lu.norm_member(cname) or "")
    if m and cdigest != f"sha256:{m.group(1)}":
        raise DigestMismatchError(f"{label}: config {cname!r} does not match its digest sha256:{m.group(1)}")
    config = lu.load_json_object(cdata, f"{label}: config {cname!r}")
    lu.check_config(config, len(layers), f"{label}: config {cname!r}")
    config_blob = store.put_blob_bytes(cdata, expected_digest=cdigest)
    blobs = []
    for i, lname in enumerate(layers):
        blobs.append(_read_layer(src, lname, config["rootfs"]["diff_ids"][i], store, f"layer {i} {lname!r}"))
    config_blob = Blob(cdigest, config_blob.size or len(cdata), DOCKER_CONFIG)
    manifest = dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": config_blob.to_json(),
                      "layers": [b.to_json() for b in blobs]})
    store.put_blob_bytes(manifest)
    tags = entry.get("RepoTags")
    name = tags[0] if isinstance(tags, list) and tags and isinstance(tags[0], str) else None
    return Image(config_blob=config_blob, config=config, layers=tuple(blobs),
                 manifest_digest=sha256_bytes(manifest), name=name)


def _read_layer(src: lu.TarSource, lname: str, diff_id: str, store: StoreLike, what: str) -> Blob:
    stream, size = src.open(lname)
    with contextlib.closing(stream):
        head = stream.read(4)
        stream.seek(0)
        mt = lu.layer_media_type(head, oci=False)
        try:
            if mt == DOCKER_LAYER:
                blob = store.put_blob_stream(stream, expected_digest=diff_id, size=size)
            else:
                blob = store.put_blob_stream(stream, size=size)
        except DigestMismatchError as e:
            raise DigestMismatchError(f"{src.label}: {what} does not match its diff_id {diff_id}") from e
    if mt != DOCKER_LAYER and uncompressed_digest(store.blob_path(blob.digest), mt, what) != diff_id:
        raise DigestMismatchError(f"{src.label}: {what} does not match its diff_id {diff_id}")
    return Blob(blob.digest, blob.size or size, mt)


def uncompressed_digest(path: str, media_type: str, what: str) -> str:
    """``sha256:`` of a compressed layer's uncompressed content; ``HostileInputError`` if corrupt."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as raw:
            stream: BinaryIO
            if media_type == OCI_LAYER_ZSTD:
                import zstandard

                stream = zstandard.ZstdDecompressor().stream_reader(raw)  # type: ignore[assignment]
            else:
                stream = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
            with stream:
                while chunk := stream.read(CHUNK):
                    h.update(chunk)
    except (OSError, EOFError, ValueError) as e:
        raise HostileInputError(f"{what}: corrupt compressed layer ({e})") from e
    except Exception as e:  # zstandard.ZstdError
        if type(e).__name__ == "ZstdError":
            raise HostileInputError(f"{what}: corrupt compressed layer ({e})") from e
        raise
    return "sha256:" + h.hexdigest()


def write_docker_archive(path: str, image: Image, store: StoreLike, repo_tags: list[str]) -> None:
    """Write ``image`` as a ``docker load``-able tar at ``path``, atomically and deterministically."""
    config_name = image.config_blob.digest.split(":", 1)[1] + ".json"
    layer_names = []
    for b in image.layers:
        hexd = b.digest.split(":", 1)[1]
        with open(store.blob_path(b.digest), "rb") as f:
            mt = lu.layer_media_type(f.read(4), oci=False)
        layer_names.append(hexd + (".tar" if mt == DOCKER_LAYER else ".tar.gz" if mt != OCI_LAYER_ZSTD
                                   else ".tar.zst"))
    manifest = dumps([{"Config": config_name, "RepoTags": repo_tags, "Layers": layer_names}])
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        tw = lu.TarWriter(f)
        tw.add_bytes(config_name, store.read_blob(image.config_blob.digest))
        done = set()
        for b, name in zip(image.layers, layer_names):
            if name in done:
                continue
            done.add(name)
            p = store.blob_path(b.digest)
            tw.add_file(name, p, os.path.getsize(p))
        tw.add_bytes("manifest.json", manifest)
        tw.close()


TRANSPORT = DockerArchiveTransport()
