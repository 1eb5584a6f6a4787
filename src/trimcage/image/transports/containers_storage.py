"""The ``containers-storage:NAME[:TAG]`` transport: Podman's local image storage.

Driven through the ``podman`` command, never by touching its storage
directly: reading is ``podman save --format docker-archive`` to a temporary
file, read by the ``docker-archive`` transport; writing produces a docker
archive with that transport and runs ``podman load``. Names without a
registry host are Podman's (``localhost/NAME`` after a load). An image ID
(``sha256:<hex>``) may be read but not written. The tag defaults to ``latest``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import tempfile

from trimcage.image.interface import (
    Image,
    ImageReference,
    StoreLike,
    Transport,
    TransportError,
    TransportOptions,
)
from trimcage.image.transports.docker_daemon import (
    archive_read,
    archive_write,
    daemon_name,
    format_daemon_reference,
    parse_daemon_reference,
)

PODMAN_TIMEOUT = 1800


class PodmanError(TransportError):
    """``podman`` is missing or one of its commands failed."""


def run_podman(args: list[str], what: str) -> str:
    """Run ``podman ARGS``; return stdout; raise ``PodmanError`` with podman's last error line."""
    exe = shutil.which("podman")
    if exe is None:
        raise PodmanError(f"{what}: podman is not installed (apt-get install podman)")
    try:
        cp = subprocess.run([exe, *args], capture_output=True, text=True, timeout=PODMAN_TIMEOUT,
                            stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise PodmanError(f"{what}: podman {args[0]}: {e}") from e
    if cp.returncode != 0:
        lines = [ln.strip() for ln in cp.stderr.splitlines() if ln.strip()]
        raise PodmanError(f"{what}: podman {args[0]} failed (exit {cp.returncode}): "
                          f"{lines[-1] if lines else 'no message'}")
    return cp.stdout


class ContainersStorageTransport(Transport):
    """``containers-storage:`` — see the module docstring."""

    name = "containers-storage"

    def parse(self, rest: str) -> ImageReference:
        return parse_daemon_reference(self.name, rest)

    def format(self, ref: ImageReference) -> str:
        return format_daemon_reference(ref)

    def read(self, ref: ImageReference, store: StoreLike, opts: TransportOptions) -> Image:
        name = daemon_name(ref)
        where = f"containers-storage:{name}"
        with tempfile.TemporaryDirectory(prefix="trimcage-podman-") as tmp:
            archive = os.path.join(tmp, "image.tar")
            run_podman(["save", "--quiet", "--format", "docker-archive", "-o", archive, name], where)
            image = archive_read(archive, store, opts, where)
        if ref.name is not None:
            image = dataclasses.replace(image, name=name)
        return image

    def write(self, ref: ImageReference, image: Image, store: StoreLike, opts: TransportOptions) -> str:
        if ref.name is None:
            raise TransportError(f"containers-storage:{ref.digest}: cannot write to an image ID; give NAME:TAG")
        name = daemon_name(ref)
        where = f"containers-storage:{name}"
        with tempfile.TemporaryDirectory(prefix="trimcage-podman-") as tmp:
            archive = os.path.join(tmp, "image.tar")
            digest = archive_write(archive, name, image, store, opts)
            run_podman(["load", "--quiet", "-i", archive], where)
        return digest


TRANSPORT = ContainersStorageTransport()
