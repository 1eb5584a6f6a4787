"""Fixtures of the image tests that need real services: the loopback registries,
the Docker daemon and Podman (started by ``bash .ci/services.sh start``).

A fixture whose service does not answer FAILS (never skips) with a message
saying how to start it. Helpers here build small real images straight into a
store (a layer tar made with ``tarfile``, a config, blobs by digest), so the
remote-transport tests do not depend on any other transport.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from trimcage.image.interface import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    Blob,
    Image,
)
from trimcage.util import dumps

SERVICES_DIR = Path("/tmp/trimcage-services")
START_HINT = "run `bash .ci/services.sh start`"


@dataclass(frozen=True)
class RegistryService:
    """A loopback registry: ``host`` (``127.0.0.1:PORT``), its storage root, credentials if any."""

    host: str
    storage: Path
    creds: str | None = None

    def blob_data_path(self, digest: str) -> Path:
        """Where the registry's filesystem driver keeps a blob's bytes."""
        hexd = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"


def _registry_answers(port: int) -> int | None:
    import requests

    try:
        return requests.get(f"http://127.0.0.1:{port}/v2/", timeout=5).status_code
    except requests.RequestException:
        return None


def _registry(port: int, expect_status: int, creds: str | None) -> RegistryService:
    status = _registry_answers(port)
    if status != expect_status:
        pytest.fail(f"the test registry on 127.0.0.1:{port} does not answer as expected "
                    f"(GET /v2/ -> {status}, want {expect_status}); {START_HINT}", pytrace=False)
    config = SERVICES_DIR / f"registry-{port}" / "config.yml"
    try:
        import yaml

        storage = Path(yaml.safe_load(config.read_text())["storage"]["filesystem"]["rootdirectory"])
    except (OSError, KeyError, TypeError) as e:
        pytest.fail(f"cannot read the registry config {config}: {e}; {START_HINT}", pytrace=False)
    return RegistryService(host=f"127.0.0.1:{port}", storage=storage, creds=creds)


@pytest.fixture(scope="session")
def registry_anon() -> RegistryService:
    """The anonymous registry on 127.0.0.1:5100."""
    return _registry(5100, 200, None)


@pytest.fixture(scope="session")
def registry_auth() -> RegistryService:
    """The htpasswd registry on 127.0.0.1:5101 (user trimcage / trimcage-test)."""
    return _registry(5101, 401, "trimcage:trimcage-test")


@pytest.fixture(scope="session")
def registry_token() -> RegistryService:
    """The registry on 127.0.0.1:5102 that wants bearer tokens from the token server on :5103."""
    service = _registry(5102, 401, "trimcage:trimcage-test")
    import requests

    challenge = requests.get(f"http://{service.host}/v2/", timeout=5).headers.get("WWW-Authenticate", "")
    if not challenge.startswith("Bearer "):
        pytest.fail(f"the registry on {service.host} does not ask for a bearer token ({challenge!r}); "
                    f"{START_HINT}", pytrace=False)
    return service


@pytest.fixture(scope="session")
def docker_daemon() -> str:
    """The Docker daemon's socket path, after checking it answers ``/_ping``."""
    from trimcage.image.transports.docker_daemon import socket_path

    path = socket_path()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(path)
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            answer = s.recv(200)
    except OSError as e:
        pytest.fail(f"the Docker daemon at {path} does not answer ({e}); {START_HINT}", pytrace=False)
    if b" 200 " not in answer.split(b"\r\n", 1)[0]:
        pytest.fail(f"the Docker daemon at {path} answered {answer[:60]!r}; {START_HINT}", pytrace=False)
    if shutil.which("docker") is None:
        pytest.fail("the docker CLI is not installed (apt-get install docker.io)", pytrace=False)
    return path


@pytest.fixture(scope="session")
def podman() -> str:
    """The podman executable, after checking ``podman info`` works."""
    exe = shutil.which("podman")
    if exe is None:
        pytest.fail("podman is not installed (apt-get install podman)", pytrace=False)
    cp = subprocess.run([exe, "info", "--format", "{{.Store.GraphRoot}}"], capture_output=True, text=True,
                        timeout=120)
    if cp.returncode != 0:
        pytest.fail(f"`podman info` failed: {cp.stderr.strip()[-300:]}", pytrace=False)
    return exe


@pytest.fixture(scope="session")
def kit():
    """This module's image-building helpers (``layer_tar``, ``image_from_layers``, ``free_port``)."""
    import types

    return types.SimpleNamespace(layer_tar=layer_tar, compress=compress, image_from_layers=image_from_layers,
                                 free_port=free_port)


@pytest.fixture
def unique() -> str:
    """A short unique lower-case token for repository, image and container names."""
    return "t" + uuid.uuid4().hex[:12]


# --- building small real images --------------------------------------------------------


def layer_tar(files: dict[str, tuple[bytes, int]], *, dirs: tuple[str, ...] = ()) -> bytes:
    """A deterministic PAX layer tar: ``dirs`` (mode 0755) then ``files`` {path: (data, mode)}."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for d in dirs:
            ti = tarfile.TarInfo(d.strip("/"))
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 1_600_000_000
            tf.addfile(ti)
        for name, (data, mode) in sorted(files.items()):
            ti = tarfile.TarInfo(name.strip("/"))
            ti.size, ti.mode, ti.mtime = len(data), mode, 1_600_000_000
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def compress(raw: bytes, how: str) -> tuple[bytes, str]:
    """Compress a layer tar: ``gzip``, ``zstd`` or ``none``; return (bytes, OCI media type)."""
    if how == "gzip":
        return gzip.compress(raw, mtime=0), OCI_LAYER_GZIP
    if how == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=3).compress(raw), OCI_LAYER_ZSTD
    return raw, OCI_LAYER


def image_from_layers(store, raw_layers: list[bytes], *, how: str = "gzip", arch: str = "amd64",
                      runtime: dict | None = None) -> Image:
    """Put the layers, a config and an OCI manifest into ``store``; return the :class:`Image`."""
    blobs, diff_ids = [], []
    for raw in raw_layers:
        data, media_type = compress(raw, how)
        b = store.put_blob_bytes(data)
        blobs.append(Blob(b.digest, b.size, media_type))
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
    config = {"architecture": arch, "os": "linux", "config": runtime or {},
              "rootfs": {"type": "layers", "diff_ids": diff_ids},
              "created": "1970-01-01T00:00:00Z", "history": [{"created_by": "trimcage test"} for _ in raw_layers]}
    cdata = dumps(config)
    cb = store.put_blob_bytes(cdata)
    manifest = dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                      "config": {"mediaType": OCI_CONFIG, "digest": cb.digest, "size": cb.size},
                      "layers": [b.to_json() for b in blobs]})
    mb = store.put_blob_bytes(manifest)
    return Image(config_blob=Blob(cb.digest, cb.size, OCI_CONFIG), config=json.loads(cdata),
                 layers=tuple(blobs), manifest_digest=mb.digest)


HELLO_C = r"""
#include <stdio.h>
int main(int argc, char **argv) { printf("hello from %s\n", argc > 1 ? argv[1] : "trimcage"); return 0; }
"""


@pytest.fixture(scope="session")
def hello_static(tmp_path_factory) -> bytes:
    """A statically linked hello program compiled with gcc for this test session."""
    d = tmp_path_factory.mktemp("hello")
    (d / "hello.c").write_text(HELLO_C)
    cp = subprocess.run(["gcc", "-static", "-O2", "-o", str(d / "hello"), str(d / "hello.c")],
                        capture_output=True, text=True)
    assert cp.returncode == 0, cp.stderr
    return (d / "hello").read_bytes()


@pytest.fixture
def hello_image(store, hello_static, unique):
    """A one-layer image holding ``/hello`` (static) and a unique marker file; Cmd ``/hello``."""
    raw = layer_tar({"hello": (hello_static, 0o755), "etc/marker": (unique.encode() + b"\n", 0o644)},
                    dirs=("etc",))
    return image_from_layers(store, [raw], runtime={"Cmd": ["/hello"], "Env": ["PATH=/"]})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def nginx_rootfs_tar(tmp_path_factory) -> Path:
    """A Debian bookworm root file system with nginx-light, built by mmdebstrap as a tar."""
    out = tmp_path_factory.mktemp("nginx") / "rootfs.tar"
    cp = subprocess.run(["mmdebstrap", "--quiet", "--variant=apt", "--include=nginx-light",
                         "--format=tar", "bookworm", str(out)], capture_output=True, text=True, timeout=900,
                        env={**os.environ, "TMPDIR": str(out.parent)})
    assert cp.returncode == 0, f"mmdebstrap failed: {cp.stderr[-2000:]}"
    return out
