"""The image stage's contract: references, transports, images, file index.

Everything later stages know about images comes from here. An image that has
been *read* lives in the content-addressed :class:`~trimcage.image.store.Store`:
its manifest, config and layer blobs are files there, verified by digest. An
:class:`Image` is the small frozen record that names them.

Flattening turns an image's layers into an :class:`Index` (path -> :class:`Entry`)
without extracting anything; extraction writes a chosen subset of the index into
a directory and never creates or follows anything outside it.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator, Mapping

from trimcage.errors import TrimcageError

# --- errors -----------------------------------------------------------------


class ImageError(TrimcageError):
    """Base error of the image stage; the message names the file, blob or layer."""


class BadReferenceError(ImageError):
    """An image reference string cannot be parsed (``transport:rest``)."""


class HostileInputError(ImageError):
    """A layer, manifest or archive tries something unsafe or is malformed."""


class DigestMismatchError(ImageError):
    """A blob's content does not match the digest that names it."""


class TransportError(ImageError):
    """A transport could not read or write (daemon, registry, file system)."""


# --- media types --------------------------------------------------------------

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"


# --- images -----------------------------------------------------------------


@dataclass(frozen=True)
class Blob:
    """A content-addressed blob: ``digest`` is ``sha256:<hex>`` of its bytes."""

    digest: str
    size: int
    media_type: str

    def to_json(self) -> dict[str, Any]:
        return {"digest": self.digest, "size": self.size, "mediaType": self.media_type}


@dataclass(frozen=True)
class Image:
    """An image whose blobs are all present and verified in the store.

    ``config`` is the parsed image config (OCI/Docker ``config.json``: keys
    ``architecture``, ``os``, ``config``, ``rootfs``, ``history``...).
    ``layers`` are the compressed (or not) layer blobs in order, bottom first;
    ``diff_ids`` the digests of their uncompressed tars, from the config.
    ``manifest_digest`` is the digest of the manifest as the source served it.
    ``name`` is the repository:tag the source named it by, if any.
    """

    config_blob: Blob
    config: Mapping[str, Any]
    layers: tuple[Blob, ...]
    manifest_digest: str
    name: str | None = None

    @property
    def diff_ids(self) -> tuple[str, ...]:
        return tuple(self.config.get("rootfs", {}).get("diff_ids", []))

    @property
    def runtime_config(self) -> Mapping[str, Any]:
        """The ``config`` member of the image config (Entrypoint, Cmd, Env...); ``{}`` if absent."""
        return self.config.get("config") or {}

    @property
    def image_id(self) -> str:
        """The config digest, which Docker calls the image ID."""
        return self.config_blob.digest


# --- references and transports ----------------------------------------------


@dataclass(frozen=True)
class TransportOptions:
    """Options every transport may use; each ignores what it does not need.

    ``creds`` is ``USER:PASS``; ``authfile`` a Docker ``config.json``;
    ``platform`` ``os/arch[/variant]`` for manifest lists; ``tls_verify``
    False allows plain HTTP and unverified TLS (loopback registries).
    """

    creds: str | None = None
    authfile: str | None = None
    platform: str = "linux/amd64"
    tls_verify: bool = True


@dataclass(frozen=True)
class ImageReference:
    """A parsed reference: ``transport`` name plus the transport-specific rest.

    Invariant: ``parse_reference(ref.string())`` gives an equal reference.
    ``path`` is the file or directory for file transports, ``name`` the
    repository (``host/repo`` for registries), ``tag`` and ``digest`` optional.
    """

    transport: str
    path: str | None = None
    name: str | None = None
    tag: str | None = None
    digest: str | None = None

    def string(self) -> str:
        """The reference as the user would type it (round-trips through parse)."""
        from trimcage.image.reference import format_reference

        return format_reference(self)

    def __str__(self) -> str:
        return self.string()


class Transport(abc.ABC):
    """One way of reading and writing images (skopeo's transport names).

    Subclasses live one per module in ``trimcage.image.transports`` and are
    registered by name in ``trimcage.image.reference``.
    """

    name: ClassVar[str]

    @abc.abstractmethod
    def parse(self, rest: str) -> ImageReference:
        """Parse what follows ``NAME:``; raise ``BadReferenceError`` quoting ``rest``."""

    @abc.abstractmethod
    def format(self, ref: ImageReference) -> str:
        """Inverse of :meth:`parse`: the text after ``NAME:``."""

    @abc.abstractmethod
    def read(self, ref: ImageReference, store: "StoreLike", opts: TransportOptions) -> Image:
        """Fetch the image into ``store`` (every blob digest-verified) and return it."""

    def write(self, ref: ImageReference, image: Image, store: "StoreLike", opts: TransportOptions) -> str:
        """Write ``image`` (whose blobs are in ``store``); return the manifest digest written.

        Raise ``TransportError`` if this transport is read-only.
        """
        raise TransportError(f"{self.name}: writing is not supported by this transport")


class StoreLike(abc.ABC):
    """What transports need of the store (implemented by ``store.Store``)."""

    @abc.abstractmethod
    def has_blob(self, digest: str) -> bool: ...

    @abc.abstractmethod
    def blob_path(self, digest: str) -> str:
        """Path of a present blob; raise ``ImageError`` if it is missing."""

    @abc.abstractmethod
    def put_blob_file(self, path: str, expected_digest: str | None = None) -> Blob:
        """Copy a file in, verifying ``expected_digest``; media type left empty."""

    @abc.abstractmethod
    def put_blob_stream(self, stream: Any, expected_digest: str | None = None, size: int | None = None) -> Blob:
        """Stream a blob in, verifying digest and size; media type left empty."""

    @abc.abstractmethod
    def put_blob_bytes(self, data: bytes, expected_digest: str | None = None) -> Blob: ...

    @abc.abstractmethod
    def read_blob(self, digest: str) -> bytes: ...


# --- the flattened file index -----------------------------------------------

# Entry types (tar-like): regular file, directory, symlink, hardlink,
# character device, block device, fifo. Sockets never occur in layers.
REG, DIR, SYMLINK, HARDLINK, CHAR, BLOCK, FIFO = "file", "dir", "symlink", "hardlink", "char", "block", "fifo"


@dataclass(frozen=True)
class Entry:
    """One path of the flattened image.

    ``path`` is absolute and normalised (``/usr/bin/env``; the root is ``/``).
    ``mode`` holds the permission bits including setuid/setgid/sticky
    (``mode & 0o7777``). ``link`` is the symlink target as stored, or for a
    hardlink the absolute path of the regular file it shares content with.
    ``digest`` is ``sha256:<hex>`` of the content for files and hardlinks,
    None otherwise. ``layer`` is the index of the layer that last wrote it.
    ``xattrs`` maps names (``security.capability``...) to raw bytes.
    ``source`` is None except for a regular file whose bytes are stored under
    another member name: a hardlink whose target a later layer replaced or
    deleted keeps the old content, found in layer ``layer`` at ``source``.
    """

    path: str
    type: str
    mode: int
    uid: int = 0
    gid: int = 0
    size: int = 0
    mtime: int = 0
    link: str | None = None
    digest: str | None = None
    layer: int = 0
    devmajor: int = 0
    devminor: int = 0
    uname: str = ""
    gname: str = ""
    xattrs: Mapping[str, bytes] = field(default_factory=dict)
    source: str | None = None

    @property
    def is_file(self) -> bool:
        """True for regular files and hardlinks to them."""
        return self.type in (REG, HARDLINK)

    @property
    def is_setuid(self) -> bool:
        return self.is_file and bool(self.mode & 0o4000)

    @property
    def is_setgid(self) -> bool:
        return self.is_file and bool(self.mode & 0o2000)

    def replace(self, **changes: Any) -> "Entry":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.path, "type": self.type, "mode": f"{self.mode:04o}",
                             "uid": self.uid, "gid": self.gid, "size": self.size, "layer": self.layer}
        if self.link is not None:
            d["link"] = self.link
        if self.digest is not None:
            d["digest"] = self.digest
        if self.type in (CHAR, BLOCK):
            d["dev"] = [self.devmajor, self.devminor]
        if self.xattrs:
            d["xattrs"] = {k: v.hex() for k, v in sorted(self.xattrs.items())}
        return d


class Index(Mapping[str, Entry]):
    """The flattened file tree: an ordered, read-only mapping path -> Entry.

    Invariants (established by flattening, relied on by extraction):
    every path is absolute and normalised; every parent of an entry is a
    ``DIR`` entry (never a symlink); hardlink targets are ``REG`` entries.
    Iteration is in sorted path order.
    """

    def __init__(self, entries: Mapping[str, Entry]):
        self._entries = dict(sorted(entries.items()))

    def __getitem__(self, path: str) -> Entry:
        return self._entries[path]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def iter_entries(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def resolve(self, path: str, *, follow_last: bool = True, max_links: int = 40) -> str | None:
        """Resolve ``path`` inside the image as the kernel would with the image as root.

        Symlinks (absolute ones relative to the image root, ``..`` clamped at
        ``/``) are followed; return the final absolute path if it exists in
        the index, None if it does not or a loop is found.
        """
        from trimcage.image.paths import resolve_in_index

        return resolve_in_index(self, path, follow_last=follow_last, max_links=max_links)

    def to_json(self) -> list[dict[str, Any]]:
        return [e.to_json() for e in self._entries.values()]
