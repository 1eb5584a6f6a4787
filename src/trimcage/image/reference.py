"""Image references: the transport registry and ``transport:rest`` parsing.

Modelled on containers/image (``transports/transports.go`` and
``alltransports.ParseImageName``): one name -> :class:`Transport` map, filled
from the module list in :mod:`trimcage.image.transports`; one short function
that splits a reference on its first ``:``, looks the transport up and hands
it the rest. Every error quotes the input.

Reference forms::

    oci:DIR[:TAG]                      oci-archive:PATH[:TAG]
    docker-archive:PATH[:NAME[:TAG]]   docker://[HOST[:PORT]/]NAME[:TAG][@DIGEST]
    docker-daemon:NAME[:TAG]|ID        containers-storage:NAME[:TAG]|ID
    PATH   (autodetected: OCI layout directory, OCI archive, docker archive)

Invariant: ``parse_reference(format_reference(r)) == r`` for every reference
``r`` that parsing produced, and ``format_reference(parse_reference(s)) == s``
for every string with an explicit transport.
"""

from __future__ import annotations

import importlib
import os
import re
import tarfile
import threading

from trimcage.image.interface import (
    BadReferenceError,
    Image,
    ImageReference,
    StoreLike,
    Transport,
    TransportError,
    TransportOptions,
)

_TRANSPORTS: dict[str, Transport] = {}
_LOCK = threading.RLock()
_LOADED = False


# --- the registry -------------------------------------------------------------


def register(transport: Transport) -> None:
    """Register ``transport`` under ``transport.name``, replacing any earlier one."""
    name = getattr(transport, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"transport {transport!r} has no name")
    with _LOCK:
        _TRANSPORTS[name] = transport


def _ensure_loaded() -> None:
    """Import every module listed in ``transports.MODULES`` once and register it."""
    global _LOADED
    if _LOADED:
        return
    with _LOCK:
        if _LOADED:
            return
        from trimcage.image import transports as pkg

        for module, tname in pkg.MODULES:
            full = f"{pkg.__name__}.{module}"
            try:
                mod = importlib.import_module(full)
            except ModuleNotFoundError as e:
                # Only the absence of this very module is tolerated; a missing
                # dependency inside it is a real bug and propagates.
                if module not in pkg.OPTIONAL or e.name != full:
                    raise
                if tname not in _TRANSPORTS:
                    _TRANSPORTS[tname] = _StubTransport(tname)
                continue
            transport = getattr(mod, "TRANSPORT", None)
            if not isinstance(transport, Transport):
                raise TypeError(f"{full} defines no TRANSPORT instance")
            _TRANSPORTS.setdefault(transport.name, transport)
        _LOADED = True


def get_transport(name: str) -> Transport:
    """Return the transport registered as ``name``; ``BadReferenceError`` if none is."""
    _ensure_loaded()
    try:
        return _TRANSPORTS[name]
    except KeyError:
        raise BadReferenceError(
            f"unknown transport {name!r} (known: {', '.join(sorted(_TRANSPORTS))})") from None


def all_transports() -> dict[str, Transport]:
    """A copy of the registry: name -> transport, sorted by name."""
    _ensure_loaded()
    return dict(sorted(_TRANSPORTS.items()))


# --- parsing ------------------------------------------------------------------


def parse_reference(s: str) -> ImageReference:
    """Parse ``TRANSPORT:REST`` or an existing image path into an :class:`ImageReference`.

    The string is split on its first ``:``; if the prefix names a registered
    transport, that transport parses the rest. Otherwise the whole string is
    a path, autodetected as an OCI layout directory (has ``oci-layout``), an
    OCI archive (a tar with ``oci-layout`` and ``index.json``) or a docker
    archive (a tar with ``manifest.json``). Anything else raises
    ``BadReferenceError`` quoting ``s``.
    """
    if not isinstance(s, str) or not s:
        raise BadReferenceError(f"empty image reference {s!r}")
    _ensure_loaded()
    prefix, sep, rest = s.partition(":")
    if sep and prefix in _TRANSPORTS:
        try:
            ref = _TRANSPORTS[prefix].parse(rest)
        except BadReferenceError as e:
            raise BadReferenceError(f"invalid image reference {s!r}: {e}") from e
        if ref.transport != prefix:
            raise BadReferenceError(f"invalid image reference {s!r}: transport {prefix} returned {ref.transport}")
        return ref
    kind = detect_path(s)
    if kind is None and os.path.lexists(s):
        raise BadReferenceError(
            f"invalid image reference {s!r}: the path exists but is not an OCI layout directory, "
            "an OCI archive or a docker archive")
    if kind is None:
        raise BadReferenceError(
            f"invalid image reference {s!r}: not TRANSPORT:REST with a known transport "
            f"({', '.join(sorted(_TRANSPORTS))}) and not a path to an OCI layout, OCI archive or docker archive")
    return ImageReference(transport=kind, path=s)


def format_reference(ref: ImageReference) -> str:
    """The inverse of :func:`parse_reference`: ``TRANSPORT:REST``."""
    return f"{ref.transport}:{get_transport(ref.transport).format(ref)}"


def detect_path(path: str) -> str | None:
    """Return the transport name for an existing image path, None if it is not one.

    Only names are looked at (``oci-layout``, ``index.json``, ``manifest.json``);
    nothing is extracted. A 0-byte or non-tar file is not an image.
    """
    try:
        if os.path.isdir(path):
            return "oci" if os.path.isfile(os.path.join(path, "oci-layout")) else None
        if not os.path.isfile(path) or os.path.getsize(path) == 0:
            return None
        names: set[str] = set()
        with tarfile.open(path, "r:") as tf:
            for member in tf:
                names.add(member.name.lstrip("/").removeprefix("./"))
    except (OSError, tarfile.TarError, EOFError):
        return None
    if "oci-layout" in names and "index.json" in names:
        return "oci-archive"
    if "manifest.json" in names:
        return "docker-archive"
    return None


# --- shared syntax helpers for transports -------------------------------------

_DOMAIN_COMP = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMP}(?:\.{_DOMAIN_COMP})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_PATH_COMP = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"^(?:{_DOMAIN}/)?{_PATH_COMP}(?:/{_PATH_COMP})*$")
TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


def parse_docker_name(s: str, *, allow_digest: bool = True) -> tuple[str, str | None, str | None]:
    """Split ``NAME[:TAG][@DIGEST]`` into ``(name, tag, digest)``, validated, unnormalised.

    The tag is what follows the last ``:`` after the last ``/`` (so
    ``127.0.0.1:5000/nginx`` has no tag). Raise ``BadReferenceError`` quoting ``s``.
    """
    name, digest = s, None
    if "@" in s:
        name, _, digest = s.rpartition("@")
        if not allow_digest:
            raise BadReferenceError(f"{s!r}: digest references are not supported here")
        if not DIGEST_RE.match(digest):
            raise BadReferenceError(f"{s!r}: invalid digest {digest!r} (want sha256:<64 hex>)")
    tag = None
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1:]
        if not TAG_RE.match(tag):
            raise BadReferenceError(f"{s!r}: invalid tag {tag!r}")
    if not NAME_RE.match(name) or len(name) > 255:
        raise BadReferenceError(f"{s!r}: invalid repository name {name!r}")
    return name, tag, digest


def format_docker_name(ref: ImageReference) -> str:
    """Inverse of :func:`parse_docker_name` for ``ref.name/tag/digest``."""
    out = ref.name or ""
    if ref.tag:
        out += f":{ref.tag}"
    if ref.digest:
        out += f"@{ref.digest}"
    return out


def split_path(rest: str, transport: str) -> tuple[str, str | None]:
    """Split ``PATH[:SUFFIX]`` on the first ``:`` (as containers/image does); path must be non-empty."""
    path, sep, suffix = rest.partition(":")
    if not path:
        raise BadReferenceError(f"{rest!r}: {transport} needs a path")
    if sep and not suffix:
        raise BadReferenceError(f"{rest!r}: empty name after ':'")
    return path, (suffix if sep else None)


# --- stubs for transports whose module is missing -----------------------------


class _StubTransport(Transport):
    """Parses a remote transport's syntax but cannot read or write (module missing)."""

    def __init__(self, name: str):
        self.name = name  # type: ignore[misc]

    def parse(self, rest: str) -> ImageReference:
        if self.name == "docker":
            if not rest.startswith("//"):
                raise BadReferenceError(f"{rest!r}: docker references start with //")
            rest = rest[2:]
        elif DIGEST_RE.match(rest):  # an image ID
            return ImageReference(self.name, digest=rest)
        name, tag, digest = parse_docker_name(rest)
        return ImageReference(self.name, name=name, tag=tag, digest=digest)

    def format(self, ref: ImageReference) -> str:
        prefix = "//" if self.name == "docker" else ""
        return prefix + format_docker_name(ref)

    def read(self, ref: ImageReference, store: StoreLike, opts: TransportOptions) -> Image:
        raise TransportError(f"{ref}: the {self.name} transport is not supported here")

    def write(self, ref: ImageReference, image: Image, store: StoreLike, opts: TransportOptions) -> str:
        raise TransportError(f"{ref}: the {self.name} transport is not supported here")

    def __repr__(self) -> str:
        return f"<stub transport {self.name}>"

