"""The ``containers-storage:NAME[:TAG]`` transport: Podman's local image storage.

Driven through the ``podman`` command, never by touching its storage
directly: reading is ``podman save --format docker-archive`` to a temporary
file, read by the ``docker-archive`` transport; writing produces a docker
archive with that transport and runs ``podman load``. Names without a
registry host are Podman's (``localhost/NAME`` after a load). An image ID
(``sha256:<hex>``) may be read but not written. The tag defaults to ``latest``.
"""

from __future__ import annotations

import shutil
import subprocess

from trimcage.image.interface import TransportError
from trimcage.image.transports.docker_daemon import LocalEngineTransport

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


class ContainersStorageTransport(LocalEngineTransport):
    """``containers-storage:`` — see the module docstring."""

    name = "containers-storage"

    def save(self, name: str, archive: str, where: str) -> None:
        run_podman(["save", "--quiet", "--format", "docker-archive", "-o", archive, name], where)

    def load(self, archive: str, where: str) -> None:
        run_podman(["load", "--quiet", "-i", archive], where)


TRANSPORT = ContainersStorageTransport()
