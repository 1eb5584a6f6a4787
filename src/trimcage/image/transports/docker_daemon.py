"""The ``docker-daemon:NAME[:TAG]`` transport: the local Docker Engine over its unix socket.

The socket is ``/var/run/docker.sock``, or the path of
``DOCKER_HOST=unix://PATH``. Reading is ``GET /images/{name}/get`` (a
``docker save`` stream, spooled to a temporary file and read by the
``docker-archive`` transport, so there is one archive parser); writing
produces a docker archive with the same transport and sends it to
``POST /images/load``. An image ID (``sha256:<hex>``) may be read but not
written. The tag defaults to ``latest``.
"""

from __future__ import annotations

import http.client
import dataclasses
import json
import os
import socket
import tempfile
from typing import Any
from urllib.parse import quote

from trimcage.image.interface import (
    Image,
    ImageError,
    ImageReference,
    StoreLike,
    Transport,
    TransportError,
    TransportOptions,
)
from trimcage.util import CHUNK

DEFAULT_SOCKET = "/var/run/docker.sock"


class DockerDaemonError(TransportError):
    """The Docker daemon is unreachable or refused a request."""


def socket_path() -> str:
    """The daemon's socket: ``DOCKER_HOST=unix://PATH`` if set, else ``/var/run/docker.sock``.

    Raise ``DockerDaemonError`` for a non-unix ``DOCKER_HOST`` (tcp is not supported).
    """
    host = os.environ.get("DOCKER_HOST", "")
    if not host:
        return DEFAULT_SOCKET
    if host.startswith("unix://"):
        return host[len("unix://"):]
    raise DockerDaemonError(f"DOCKER_HOST={host}: only unix:// sockets are supported")


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.path)
        except OSError:
            s.close()
            raise
        self.sock = s


class DockerClient:
    """A minimal Docker Engine API client (HTTP/1.1 over the unix socket)."""

    def __init__(self, path: str | None = None, timeout: float = 600.0):
        self.path = path or socket_path()
        self.timeout = timeout

    def request(self, method: str, url: str, *, body: Any = None, headers: dict[str, str] | None = None,
                what: str) -> tuple[_UnixConnection, http.client.HTTPResponse]:
        """Send a request; return (connection, response) — the caller reads and closes both.

        Raise ``DockerDaemonError`` naming the socket if it cannot be reached.
        """
        conn = _UnixConnection(self.path, self.timeout)
        try:
            conn.request(method, url, body=body, headers=headers or {})
            return conn, conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise DockerDaemonError(f"docker-daemon: {what}: cannot talk to the Docker daemon at "
                                    f"{self.path}: {e}") from e

    def error_text(self, resp: http.client.HTTPResponse) -> str:
        data = resp.read(1 << 16)
        try:
            return str(json.loads(data).get("message", "")).strip() or data.decode(errors="replace").strip()
        except (ValueError, AttributeError):
            return data.decode(errors="replace").strip()

    def save(self, name: str, dest: str, what: str) -> None:
        """``docker save NAME`` into the file ``dest``."""
        conn, resp = self.request("GET", f"/images/{quote(name, safe='')}/get", what=what)
        try:
            if resp.status != 200:
                hint = " (no such image)" if resp.status == 404 else ""
                raise DockerDaemonError(f"{what}: HTTP {resp.status}: {self.error_text(resp)}{hint}")
            with open(dest, "wb") as f:
                while chunk := resp.read(CHUNK):
                    f.write(chunk)
        except (OSError, http.client.HTTPException) as e:
            raise DockerDaemonError(f"{what}: reading the image stream failed: {e}") from e
        finally:
            conn.close()

    def load(self, archive: str, what: str) -> list[str]:
        """``docker load`` the file ``archive``; return the daemon's "Loaded image" lines."""
        size = os.path.getsize(archive)
        with open(archive, "rb") as f:
            conn, resp = self.request("POST", "/images/load?quiet=1", body=f, what=what,
                                      headers={"Content-Type": "application/x-tar", "Content-Length": str(size)})
        try:
            if resp.status != 200:
                raise DockerDaemonError(f"{what}: HTTP {resp.status}: {self.error_text(resp)}")
            out = resp.read().decode(errors="replace")
        except (OSError, http.client.HTTPException) as e:
            raise DockerDaemonError(f"{what}: reading the daemon's answer failed: {e}") from e
        finally:
            conn.close()
        loaded: list[str] = []
        for line in out.splitlines():
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if not isinstance(msg, dict):
                continue
            if msg.get("error") or msg.get("errorDetail"):
                detail = msg.get("error") or (msg.get("errorDetail") or {}).get("message")
                raise DockerDaemonError(f"{what}: the daemon refused the image: {detail}")
            if isinstance(msg.get("stream"), str) and msg["stream"].strip():
                loaded.append(msg["stream"].strip())
        return loaded


def parse_daemon_reference(transport: str, rest: str) -> ImageReference:
    """``NAME[:TAG]`` or an image ID ``sha256:<hex>`` (shared with containers-storage)."""
    from trimcage.image.reference import DIGEST_RE, parse_docker_name

    if DIGEST_RE.match(rest):
        return ImageReference(transport, digest=rest)
    name, tag, digest = parse_docker_name(rest, allow_digest=False)
    return ImageReference(transport, name=name, tag=tag, digest=digest)


def format_daemon_reference(ref: ImageReference) -> str:
    from trimcage.image.reference import format_docker_name

    if ref.name is None and ref.digest:
        return ref.digest
    return format_docker_name(ref)


def daemon_name(ref: ImageReference) -> str:
    """What the daemon is asked for: ``NAME:TAG`` (tag defaults to latest) or the image ID."""
    if ref.name is None:
        if not ref.digest:
            raise TransportError(f"{ref.transport}: reference without a name or image ID")
        return ref.digest
    return f"{ref.name}:{ref.tag or 'latest'}"


def archive_read(path: str, store: StoreLike, opts: TransportOptions, where: str) -> Image:
    """Read a docker archive with the ``docker-archive`` transport, errors prefixed by ``where``."""
    from trimcage.image.reference import get_transport

    t = get_transport("docker-archive")
    try:
        return t.read(ImageReference("docker-archive", path=path), store, opts)
    except ImageError as e:
        raise type(e)(f"{where}: {e}") from e


def archive_write(path: str, name: str, image: Image, store: StoreLike, opts: TransportOptions) -> str:
    """Write ``image`` as a docker archive tagged ``name`` (``REPO:TAG``) at ``path``."""
    from trimcage.image.reference import get_transport

    repo, _, tag = name.rpartition(":")
    t = get_transport("docker-archive")
    return t.write(ImageReference("docker-archive", path=path, name=repo, tag=tag), image, store, opts)


class LocalEngineTransport(Transport):
    """A local engine's image store, reached through ``docker save``-format archives.

    Subclasses say how an engine saves an image to a docker-archive file
    (:meth:`save`) and loads one (:meth:`load`); reading and writing are
    the docker-archive transport's, so there is one parser for all engines.
    """

    def save(self, name: str, archive: str, where: str) -> None:
        raise NotImplementedError

    def load(self, archive: str, where: str) -> None:
        raise NotImplementedError

    def parse(self, rest: str) -> ImageReference:
        return parse_daemon_reference(self.name, rest)

    def format(self, ref: ImageReference) -> str:
        return format_daemon_reference(ref)

    def read(self, ref: ImageReference, store: StoreLike, opts: TransportOptions) -> Image:
        name = daemon_name(ref)
        where = f"{self.name}:{name}"
        with tempfile.TemporaryDirectory(prefix="trimcage-engine-") as tmp:
            archive = os.path.join(tmp, "image.tar")
            self.save(name, archive, where)
            image = archive_read(archive, store, opts, where)
        if ref.name is not None:
            image = dataclasses.replace(image, name=name)
        return image

    def write(self, ref: ImageReference, image: Image, store: StoreLike, opts: TransportOptions) -> str:
        if ref.name is None:
            raise TransportError(f"{self.name}:{ref.digest}: cannot write to an image ID; give NAME:TAG")
        name = daemon_name(ref)
        where = f"{self.name}:{name}"
        with tempfile.TemporaryDirectory(prefix="trimcage-engine-") as tmp:
            archive = os.path.join(tmp, "image.tar")
            digest = archive_write(archive, name, image, store, opts)
            self.load(archive, where)
        return digest


class DockerDaemonTransport(LocalEngineTransport):
    """``docker-daemon:`` — see the module docstring."""

    name = "docker-daemon"

    def save(self, name: str, archive: str, where: str) -> None:
        DockerClient().save(name, archive, where)

    def load(self, archive: str, where: str) -> None:
        DockerClient().load(archive, where)


TRANSPORT = DockerDaemonTransport()
