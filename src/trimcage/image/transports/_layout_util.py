"""Shared code of the file transports (``oci``, ``oci-archive``, ``docker-archive``).

Archive members are hostile: their names are only ever used as keys of an
in-memory table, never as host paths. Nothing is extracted to disk except
blobs, which go into the store under the digest that names them, verified.
Links inside an archive are resolved within the archive (``docker save``
uses them for repeated layers); a link that leaves it is "missing".

Also here: the choice of a manifest from an index by tag and platform, and
the conversion between Docker v2 schema 2 and OCI manifests.
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
import posixpath
import re
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from trimcage.image.interface import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_LAYER_GZIP,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    Blob,
    DigestMismatchError,
    HostileInputError,
    Image,
    ImageError,
    StoreLike,
    TransportError,
)
from trimcage.util import dumps, sha256_bytes

MAX_JSON = 16 << 20  # manifests, indexes and configs larger than this are refused
MAX_MEMBERS = 100_000  # an image archive holds a few files per blob; far more is an attack
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
LAYOUT_JSON = b'{"imageLayoutVersion":"1.0.0"}'

_TO_OCI = {DOCKER_LAYER_GZIP: OCI_LAYER_GZIP, DOCKER_LAYER: OCI_LAYER, DOCKER_CONFIG: OCI_CONFIG,
           "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip":
           "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"}
_TO_DOCKER = {v: k for k, v in _TO_OCI.items()}


# --- sources: where the members come from ---------------------------------------


class Source(abc.ABC):
    """Read-only access to the named members of a layout directory or an archive."""

    label: str

    @abc.abstractmethod
    def exists(self, name: str) -> bool:
        """True if ``name`` is a regular file member (after resolving in-archive links)."""

    @abc.abstractmethod
    def open(self, name: str) -> tuple[BinaryIO, int]:
        """Open member ``name``; return ``(stream, size)``; ``HostileInputError`` if missing."""

    def read_small(self, name: str, what: str) -> bytes:
        """Read a JSON-sized member (at most :data:`MAX_JSON` bytes)."""
        stream, size = self.open(name)
        with contextlib.closing(stream):
            if size > MAX_JSON:
                raise HostileInputError(f"{self.label}: {what} {name!r} is {size} bytes, larger than allowed")
            return stream.read(MAX_JSON + 1)

    def close(self) -> None:
        pass

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def norm_member(name: str) -> str | None:
    """Normalise an archive member name; None if it climbs out (``..``) or is empty."""
    parts: list[str] = []
    for part in name.replace("\\", "/").split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            return None
        parts.append(part)
    return "/".join(parts) or None


class TarSource(Source):
    """Members of a tar file, looked up by normalised name; nothing is extracted."""

    def __init__(self, path: str | os.PathLike[str]):
        self.label = str(path)
        self._tf: tarfile.TarFile | None = None
        try:
            if os.path.getsize(path) == 0:
                raise HostileInputError(f"{path}: empty file, not an image archive")
            self._tf = tarfile.open(path, "r:")
            members = []
            for m in self._tf:
                members.append(m)
                if len(members) > MAX_MEMBERS:
                    raise HostileInputError(f"{path}: more than {MAX_MEMBERS} archive members")
        except BaseException as e:
            if self._tf is not None:
                self._tf.close()
            if isinstance(e, FileNotFoundError):
                raise TransportError(f"{path}: no such file") from e
            if isinstance(e, (tarfile.TarError, EOFError, OSError)):
                raise HostileInputError(f"{path}: not a readable tar archive ({e})") from e
            raise
        self._members: dict[str, tarfile.TarInfo] = {}
        for m in members:
            name = norm_member(m.name)
            if name is not None:
                self._members[name] = m  # later members win, as with tar

    def names(self) -> set[str]:
        return set(self._members)

    def _resolve(self, name: str) -> tarfile.TarInfo | None:
        name_n = norm_member(name)
        for _ in range(16):
            if name_n is None:
                return None
            m = self._members.get(name_n)
            if m is None:
                return None
            if m.isreg():
                return m
            if m.issym():
                name_n = norm_member(posixpath.join(posixpath.dirname(name_n), m.linkname))
            elif m.islnk():
                name_n = norm_member(m.linkname)
            else:
                return None
        return None

    def exists(self, name: str) -> bool:
        return self._resolve(name) is not None

    def open(self, name: str) -> tuple[BinaryIO, int]:
        m = self._resolve(name)
        if m is None:
            raise HostileInputError(f"{self.label}: member {name!r} is missing or not a regular file")
        assert self._tf is not None
        f = self._tf.extractfile(m)
        if f is None:  # pragma: no cover - isreg() members always have a file
            raise HostileInputError(f"{self.label}: member {name!r} cannot be read")
        return f, m.size  # type: ignore[return-value]

    def close(self) -> None:
        if self._tf is not None:
            self._tf.close()


class DirSource(Source):
    """Files of a layout directory; names are normalised and symlinks are not followed."""

    def __init__(self, root: str | os.PathLike[str]):
        self.label = str(root)
        self.root = Path(root)
        if not self.root.is_dir():
            raise TransportError(f"{root}: not a directory")

    def _open_fd(self, name: str) -> int | None:
        name_n = norm_member(name)
        if name_n is None:
            return None
        parts = name_n.split("/")
        try:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return None
        try:
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                flags = os.O_RDONLY | os.O_NOFOLLOW | (0 if last else os.O_DIRECTORY)
                nfd = os.open(part, flags, dir_fd=fd)
                os.close(fd)
                fd = nfd
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                return None
            return fd
        except OSError:
            os.close(fd)
            return None

    def exists(self, name: str) -> bool:
        fd = self._open_fd(name)
        if fd is None:
            return False
        os.close(fd)
        return True

    def open(self, name: str) -> tuple[BinaryIO, int]:
        fd = self._open_fd(name)
        if fd is None:
            raise HostileInputError(f"{self.label}: {name!r} is missing or not a regular file")
        f = os.fdopen(fd, "rb")
        return f, os.fstat(fd).st_size


# --- JSON and descriptors ------------------------------------------------------


def load_json(data: bytes, what: str) -> Any:
    """Parse JSON bytes; ``HostileInputError`` naming ``what`` if they are not JSON."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise HostileInputError(f"{what} is not valid JSON ({e})") from e


def load_json_object(data: bytes, what: str) -> dict[str, Any]:
    obj = load_json(data, what)
    if not isinstance(obj, dict):
        raise HostileInputError(f"{what} is not a JSON object")
    return obj


def descriptor(d: Any, what: str) -> Blob:
    """Validate an OCI/Docker descriptor (``mediaType``, ``digest``, ``size``) into a :class:`Blob`."""
    if not isinstance(d, dict):
        raise HostileInputError(f"{what}: descriptor is not an object")
    digest, size, mt = d.get("digest"), d.get("size"), d.get("mediaType", "")
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise HostileInputError(f"{what}: invalid or unsupported digest {digest!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise HostileInputError(f"{what}: invalid size {size!r} for {digest}")
    if not isinstance(mt, str):
        raise HostileInputError(f"{what}: invalid mediaType for {digest}")
    return Blob(digest, size, mt)


def blob_member(digest: str) -> str:
    """``blobs/sha256/<hex>``: the layout path of a (validated) digest."""
    algo, _, hexd = digest.partition(":")
    return f"blobs/{algo}/{hexd}"


@dataclass(frozen=True)
class Manifest:
    """A parsed image manifest (OCI or Docker v2 schema 2)."""

    media_type: str
    config: Blob
    layers: tuple[Blob, ...]


def is_index(obj: dict[str, Any]) -> bool:
    return obj.get("mediaType") in (OCI_INDEX, DOCKER_LIST) or (
        "manifests" in obj and "layers" not in obj and "config" not in obj)


def parse_manifest(obj: dict[str, Any], what: str) -> Manifest:
    """Validate a manifest object; ``HostileInputError`` naming ``what`` if it is malformed."""
    mt = obj.get("mediaType") or OCI_MANIFEST
    if mt not in (OCI_MANIFEST, DOCKER_MANIFEST):
        raise HostileInputError(f"{what}: unsupported manifest type {mt!r}")
    if obj.get("schemaVersion") != 2:
        raise HostileInputError(f"{what}: unsupported schemaVersion {obj.get('schemaVersion')!r}")
    layers = obj.get("layers")
    if not isinstance(layers, list):
        raise HostileInputError(f"{what}: 'layers' is not a list")
    return Manifest(mt, descriptor(obj.get("config"), f"{what} config"),
                    tuple(descriptor(layer, f"{what} layer {i}") for i, layer in enumerate(layers)))


def parse_platform(platform: str) -> tuple[str, str, str | None]:
    parts = platform.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ImageError(f"invalid platform {platform!r} (want os/arch[/variant])")
    return parts[0], parts[1], (parts[2] if len(parts) == 3 else None)


def select_platform(index: dict[str, Any], platform: str, what: str) -> Blob:
    """Choose the manifest for ``platform`` from an index / manifest list.

    An index holding a single entry without a platform is taken as is.
    Raise ``ImageError`` listing what is available when nothing matches.
    """
    entries = index.get("manifests")
    if not isinstance(entries, list) or not entries:
        raise HostileInputError(f"{what}: index lists no manifests")
    want_os, want_arch, want_var = parse_platform(platform)
    seen = []
    for i, e in enumerate(entries):
        d = descriptor(e, f"{what} manifests[{i}]")
        p = e.get("platform")
        if not isinstance(p, dict):
            if len(entries) == 1:
                return d
            continue
        seen.append("/".join(str(x) for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x))
        if p.get("os") == want_os and p.get("architecture") == want_arch and (
                want_var is None or p.get("variant") == want_var):
            return d
    raise ImageError(f"{what}: no manifest for platform {platform} (available: {', '.join(seen) or 'none'})")


# --- fetching into the store ---------------------------------------------------


def fetch_blob(src: Source, name: str, blob: Blob, store: StoreLike, what: str) -> None:
    """Copy member ``name`` into the store, verifying ``blob.digest`` and ``blob.size``."""
    if store.has_blob(blob.digest):
        return
    stream, size = src.open(name)
    with contextlib.closing(stream):
        if size != blob.size:
            raise DigestMismatchError(
                f"{src.label}: {what} {blob.digest} is {size} bytes, the manifest says {blob.size}")
        try:
            store.put_blob_stream(stream, expected_digest=blob.digest, size=blob.size)
        except DigestMismatchError as e:
            raise DigestMismatchError(f"{src.label}: {what} {name!r} does not match its digest {blob.digest}") from e


def fetch_small(src: Source, name: str, blob: Blob, store: StoreLike, what: str) -> bytes:
    """Read a JSON-sized member, verify it against ``blob`` and put it into the store."""
    data = src.read_small(name, what)
    if sha256_bytes(data) != blob.digest or len(data) != blob.size:
        raise DigestMismatchError(f"{src.label}: {what} {name!r} does not match its digest {blob.digest}")
    store.put_blob_bytes(data, expected_digest=blob.digest)
    return data


def check_config(config: dict[str, Any], n_layers: int, what: str) -> None:
    """The config's ``rootfs.diff_ids`` must be a list of digests, one per layer."""
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) and DIGEST_RE.match(d) for d in diff_ids):
        raise HostileInputError(f"{what}: rootfs.diff_ids is missing or invalid")
    if len(diff_ids) != n_layers:
        raise HostileInputError(f"{what}: {len(diff_ids)} diff_ids for {n_layers} layers")


def read_oci(src: Source, tag: str | None, store: StoreLike, platform: str) -> Image:
    """Read one image from an OCI layout (directory or archive) into the store.

    ``tag`` selects the ``org.opencontainers.image.ref.name`` annotation; with
    no tag the index must hold exactly one entry, or only entries with a
    ``platform`` (then ``platform`` chooses). Nested indexes select
    ``platform``. Every blob is digest-verified.
    """
    label = src.label
    if src.exists("oci-layout"):
        layout = load_json_object(src.read_small("oci-layout", "oci-layout"), f"{label}: oci-layout")
        if layout.get("imageLayoutVersion") != "1.0.0":
            raise HostileInputError(f"{label}: unsupported imageLayoutVersion {layout.get('imageLayoutVersion')!r}")
    index = load_json_object(src.read_small("index.json", "index.json"), f"{label}: index.json")
    entries = index.get("manifests")
    if not isinstance(entries, list) or not entries:
        raise HostileInputError(f"{label}: index.json lists no manifests")
    name = None
    if tag is not None:
        matches = [e for e in entries if isinstance(e, dict)
                   and (e.get("annotations") or {}).get(REF_NAME) == tag]
        if not matches:
            raise ImageError(f"{label}: no image tagged {tag!r}")
        chosen = matches[0]
    elif len(entries) == 1:
        chosen = entries[0]
    elif all(isinstance(e, dict) and isinstance(e.get("platform"), dict) for e in entries):
        # an untagged multi-platform layout: index.json itself acts as the image index
        digest = select_platform(index, platform, f"{label}: index.json").digest
        chosen = next(e for e in entries if e.get("digest") == digest)
    else:
        raise ImageError(f"{label}: index.json holds {len(entries)} images; name one with :TAG")
    desc = descriptor(chosen, f"{label}: index.json")
    annotations = chosen.get("annotations") if isinstance(chosen.get("annotations"), dict) else {}
    if isinstance(annotations.get(CONTAINERD_NAME), str):
        name = annotations[CONTAINERD_NAME]
    for depth in range(4):
        what = f"{label}: manifest {desc.digest}"
        data = fetch_small(src, blob_member(desc.digest), desc, store, "manifest")
        obj = load_json_object(data, what)
        if not is_index(obj):
            break
        desc = select_platform(obj, platform, what)
    else:
        raise HostileInputError(f"{label}: indexes nested too deeply")
    man = parse_manifest(obj, what)
    return _finish(src, man, desc.digest, store, name, what)


def _finish(src: Source, man: Manifest, manifest_digest: str, store: StoreLike, name: str | None,
            what: str) -> Image:
    cdata = fetch_small(src, blob_member(man.config.digest), man.config, store, "config")
    config = load_json_object(cdata, f"{src.label}: config {man.config.digest}")
    check_config(config, len(man.layers), f"{src.label}: config {man.config.digest}")
    for i, layer in enumerate(man.layers):
        fetch_blob(src, blob_member(layer.digest), layer, store, f"layer {i}")
    return Image(config_blob=man.config, config=config, layers=man.layers,
                 manifest_digest=manifest_digest, name=name)


# --- manifests for writing ---------------------------------------------------------


def manifest_bytes(image: Image, store: StoreLike, fmt: str) -> bytes:
    """The manifest of ``image`` in ``fmt`` (``"oci"`` or ``"docker"``).

    If the store holds the image's own manifest and it already is of that
    format and names the same blobs, its exact bytes are reused (the digest
    is preserved, as ``skopeo copy`` does); otherwise a canonical manifest is
    built with media types converted.
    """
    want = OCI_MANIFEST if fmt == "oci" else DOCKER_MANIFEST
    if store.has_blob(image.manifest_digest):
        with contextlib.suppress(ImageError):
            obj = load_json_object(store.read_blob(image.manifest_digest), "manifest")
            if not is_index(obj):
                man = parse_manifest(obj, "manifest")
                if (man.media_type == want and man.config.digest == image.config_blob.digest
                        and [b.digest for b in man.layers] == [b.digest for b in image.layers]
                        and (fmt == "docker" or obj.get("mediaType") == want)):
                    return store.read_blob(image.manifest_digest)
    conv = _TO_OCI if fmt == "oci" else _TO_DOCKER
    config_mt = OCI_CONFIG if fmt == "oci" else DOCKER_CONFIG
    layers = []
    for b in image.layers:
        mt = conv.get(b.media_type, b.media_type) or (OCI_LAYER_GZIP if fmt == "oci" else DOCKER_LAYER_GZIP)
        if fmt == "docker" and mt == OCI_LAYER_ZSTD:
            raise TransportError(f"layer {b.digest}: zstd layers cannot be written in Docker format")
        layers.append({"mediaType": mt, "digest": b.digest, "size": b.size})
    obj = {"schemaVersion": 2, "mediaType": want,
           "config": {"mediaType": config_mt, "digest": image.config_blob.digest, "size": image.config_blob.size},
           "layers": layers}
    return dumps(obj)


def layer_media_type(head: bytes, oci: bool) -> str:
    """Media type of a layer from its first bytes: gzip, zstd or plain tar."""
    if head[:2] == b"\x1f\x8b":
        return OCI_LAYER_GZIP if oci else DOCKER_LAYER_GZIP
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return OCI_LAYER_ZSTD
    return OCI_LAYER if oci else DOCKER_LAYER


# --- deterministic tar output --------------------------------------------------


def _info(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.size = size if kind == tarfile.REGTYPE else 0
    ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    ti.mtime = 0
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


class TarWriter:
    """Writes a tar with fixed metadata (mtime 0, root, 0644/0755), directories created on demand."""

    def __init__(self, fileobj: BinaryIO):
        self._tf = tarfile.open(fileobj=fileobj, mode="w", format=tarfile.PAX_FORMAT)
        self._dirs: set[str] = set()

    def _parents(self, name: str) -> None:
        parent = posixpath.dirname(name)
        if parent and parent not in self._dirs:
            self._parents(parent)
            self._tf.addfile(_info(parent + "/", 0, tarfile.DIRTYPE))
            self._dirs.add(parent)

    def add_bytes(self, name: str, data: bytes) -> None:
        import io

        self._parents(name)
        self._tf.addfile(_info(name, len(data)), io.BytesIO(data))

    def add_file(self, name: str, path: str, size: int) -> None:
        self._parents(name)
        with open(path, "rb") as f:
            self._tf.addfile(_info(name, size), f)

    def close(self) -> None:
        if self._tf is not None:
            self._tf.close()


def layout_blobs(image: Image) -> Iterator[tuple[str, str]]:
    """Digests the layout must hold for ``image``, with a role label: config, then layers."""
    yield image.config_blob.digest, "config"
    for i, b in enumerate(image.layers):
        yield b.digest, f"layer {i}"


def require_blobs(image: Image, store: StoreLike) -> None:
    for digest, what in layout_blobs(image):
        if not store.has_blob(digest):
            raise ImageError(f"{what} {digest} of the image is not in the store")


def index_json(entries: list[dict[str, Any]]) -> bytes:
    return dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})


def index_entry(manifest: bytes, tag: str | None) -> dict[str, Any]:
    e: dict[str, Any] = {"mediaType": OCI_MANIFEST, "digest": sha256_bytes(manifest), "size": len(manifest)}
    if tag:
        e["annotations"] = {REF_NAME: tag}
    return e
