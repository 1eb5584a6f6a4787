"""The remote transports against real services: the loopback registries
(``docker://``), the Docker daemon (``docker-daemon:``) and Podman
(``containers-storage:``). Start them with ``bash .ci/services.sh start``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from trimcage.image.interface import (
    DOCKER_LIST,
    OCI_INDEX,
    BadReferenceError,
    DigestMismatchError,
    ImageError,
    TransportOptions,
)
from trimcage.image.transports import registry as reg
from trimcage.image.transports.registry_auth import (
    AuthError,
    credentials_from_authfile,
    parse_www_authenticate,
)
from trimcage.util import dumps

ANON = TransportOptions()
SERVICES_LOG_DIR = Path("/tmp/trimcage-services")


def _opts(service, **kw) -> TransportOptions:
    return TransportOptions(creds=service.creds, **kw)


def _flatten(image, store):
    from trimcage.image.flatten import flatten

    return flatten(image, store)


def _read(ref: str, store, opts=ANON):
    from trimcage.image.api import read_image

    return read_image(ref, store, opts)


def _write(ref: str, image, store, opts=ANON) -> str:
    from trimcage.image.api import write_image

    return write_image(ref, image, store, opts)


# --- pure parts: reference syntax, auth headers, platform choice ------------------------


@pytest.mark.parametrize("text,name,tag,digest,host,repo", [
    ("//127.0.0.1:5000/library/nginx:1.0", "127.0.0.1:5000/library/nginx", "1.0", None,
     "127.0.0.1:5000", "library/nginx"),
    ("//localhost/a/b", "localhost/a/b", None, None, "localhost", "a/b"),
    ("//nginx", "nginx", None, None, "docker.io", "library/nginx"),
    ("//user/app:v2", "user/app", "v2", None, "docker.io", "user/app"),
    ("//reg.example:443/x@sha256:" + "a" * 64, "reg.example:443/x", None, "sha256:" + "a" * 64,
     "reg.example:443", "x"),
    ("//[::1]:5000/x:t@sha256:" + "b" * 64, "[::1]:5000/x", "t", "sha256:" + "b" * 64, "[::1]:5000", "x"),
])
def test_docker_reference_parse_and_round_trip(text, name, tag, digest, host, repo):
    ref = reg.TRANSPORT.parse(text)
    assert (ref.name, ref.tag, ref.digest) == (name, tag, digest)
    assert reg.split_name(ref.name) == (host, repo)
    assert reg.TRANSPORT.format(ref) == text
    assert reg.TRANSPORT.parse(reg.TRANSPORT.format(ref)) == ref


@pytest.mark.parametrize("text", ["127.0.0.1/x", "//", "//UPPER/Case", "//h.io/x:bad tag", "//h.io/x@md5:12",
                                  "//h.io/x@sha256:abc", "//h.io//x"])
def test_docker_reference_rejects(text):
    with pytest.raises(BadReferenceError, match="docker|digest|tag|repository|//"):
        reg.TRANSPORT.parse(text)


@pytest.mark.parametrize("host,loop", [("127.0.0.1:5100", True), ("127.8.9.1", True), ("localhost:80", True),
                                       ("[::1]:5000", True), ("10.0.0.1:5000", False), ("example.com", False)])
def test_loopback_detection(host, loop):
    assert reg.is_loopback(host) is loop


def test_www_authenticate_parsing():
    chs = parse_www_authenticate('Bearer realm="https://auth.example/token",service="registry.example",'
                                 'scope="repository:a/b:pull,push", Basic realm="x y"')
    assert [c.scheme for c in chs] == ["bearer", "basic"]
    assert chs[0].params == {"realm": "https://auth.example/token", "service": "registry.example",
                             "scope": "repository:a/b:pull,push"}
    assert chs[1].params == {"realm": "x y"}
    assert parse_www_authenticate("") == []


def test_authfile_lookup(tmp_path):
    import base64

    f = tmp_path / "config.json"
    f.write_text(json.dumps({"auths": {
        "127.0.0.1:5101": {"auth": base64.b64encode(b"u1:p:w").decode()},
        "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:secret").decode()},
        "bad.example": {"auth": "!!!"},
    }}))
    assert credentials_from_authfile(str(f), "127.0.0.1:5101") == ("u1", "p:w")
    assert credentials_from_authfile(str(f), "docker.io") == ("hub", "secret")
    assert credentials_from_authfile(str(f), "other.example") is None
    with pytest.raises(AuthError, match="bad.example"):
        credentials_from_authfile(str(f), "bad.example")
    with pytest.raises(AuthError, match="cannot read"):
        credentials_from_authfile(str(tmp_path / "missing.json"), "x")


def _index(*entries):
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": reg.OCI_MANIFEST, "digest": "sha256:" + c * 64, "size": 10,
         "platform": dict(zip(("os", "architecture", "variant"), p.split("/")))} for c, p in entries]}


def test_select_platform():
    idx = _index(("a", "linux/amd64"), ("b", "linux/arm64/v8"), ("c", "linux/arm/v7"))
    assert reg.select_platform(idx, "linux/arm64", "x")[0] == "sha256:" + "b" * 64
    assert reg.select_platform(idx, "linux/arm/v7", "x")[0] == "sha256:" + "c" * 64
    with pytest.raises(ImageError, match="linux/s390x.*offered: linux/amd64, linux/arm64/v8"):
        reg.select_platform(idx, "linux/s390x", "x")


# --- the registries ---------------------------------------------------------------------


@pytest.mark.registry
def test_anonymous_round_trip_and_pull_by_digest(registry_anon, hello_image, store, tmp_path, unique):
    from trimcage.image.store import Store

    ref = f"docker://{registry_anon.host}/trimcage-test/{unique}:v1"
    digest = _write(ref, hello_image, store)
    assert digest.startswith("sha256:")
    # skopeo, as an independent client, sees what we pushed
    cp = subprocess.run(["skopeo", "inspect", "--tls-verify=false", ref], capture_output=True, text=True,
                        timeout=120)
    assert cp.returncode == 0, cp.stderr
    assert json.loads(cp.stdout)["Digest"] == digest
    for pulled_ref in (ref, f"docker://{registry_anon.host}/trimcage-test/{unique}@{digest}"):
        fresh = Store(tmp_path / f"pull-{len(pulled_ref)}")
        pulled = _read(pulled_ref, fresh)
        assert pulled.manifest_digest == digest
        assert pulled.config_blob.digest == hello_image.config_blob.digest
        assert [b.digest for b in pulled.layers] == [b.digest for b in hello_image.layers]
        assert _flatten(pulled, fresh) == _flatten(hello_image, store)
    # pushing again uploads nothing new and gives the same manifest digest
    assert _write(ref, hello_image, store) == digest


@pytest.mark.registry
def test_auth_registry_push_pull_and_refusal(registry_auth, hello_image, store, tmp_path, unique, cli):
    from trimcage.image.store import Store

    ref = f"docker://{registry_auth.host}/trimcage-test/{unique}:v1"
    with pytest.raises(ImageError, match=rf"{registry_auth.host}/trimcage-test/{unique}.*HTTP 401.*--creds"):
        _write(ref, hello_image, store)
    digest = _write(ref, hello_image, store, _opts(registry_auth))
    pulled = _read(ref, Store(tmp_path / "pull"), _opts(registry_auth))
    assert pulled.manifest_digest == digest
    # credentials from a Docker config.json
    import base64

    authfile = tmp_path / "auth.json"
    authfile.write_text(json.dumps({"auths": {registry_auth.host: {
        "auth": base64.b64encode(registry_auth.creds.encode()).decode()}}}))
    pulled2 = _read(ref, Store(tmp_path / "pull2"), TransportOptions(authfile=str(authfile)))
    assert pulled2.manifest_digest == digest
    with pytest.raises(ImageError, match="HTTP 401.*authentication required"):
        _read(ref, Store(tmp_path / "pull3"))
    with pytest.raises(ImageError, match="HTTP 401.*credentials refused"):
        _read(ref, Store(tmp_path / "pull4"), TransportOptions(creds="trimcage:wrong"))
    # and through the CLI: one line, exit 2
    cp = cli("inspect", ref, env={"TRIMCAGE_HOME": str(tmp_path / "home")})
    assert cp.returncode == 2, cp.stderr
    assert "HTTP 401" in cp.stderr and "Traceback" not in cp.stderr
    assert len(cp.stderr.strip().splitlines()) == 1


@pytest.mark.registry
def test_bearer_token_registry(registry_token, hello_image, store, tmp_path, unique):
    from trimcage.image.store import Store

    ref = f"docker://{registry_token.host}/trimcage-test/{unique}:v1"
    digest = _write(ref, hello_image, store, _opts(registry_token))
    # skopeo, an independent client, pulls it through the same token server
    cp = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--creds", registry_token.creds, ref],
                        capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, cp.stderr
    assert json.loads(cp.stdout)["Digest"] == digest
    fresh = Store(tmp_path / "pull")
    pulled = _read(f"docker://{registry_token.host}/trimcage-test/{unique}@{digest}", fresh, _opts(registry_token))
    assert pulled.manifest_digest == digest
    assert _flatten(pulled, fresh) == _flatten(hello_image, store)
    # anonymous: the token server hands out a token without access, the registry still says 401
    with pytest.raises(ImageError, match=rf"{registry_token.host}/trimcage-test/{unique}.*HTTP 401"):
        _read(ref, Store(tmp_path / "anon"))
    with pytest.raises(ImageError, match="token server .* refused the credentials"):
        _read(ref, Store(tmp_path / "bad"), TransportOptions(creds="trimcage:wrong"))


@pytest.mark.registry
def test_multi_platform_index_pull_picks_platform(kit, registry_anon, store, tmp_path, unique):
    from trimcage.image.store import Store

    host, repo = registry_anon.host, f"trimcage-test/{unique}"
    images, descs = {}, []
    client = reg.RegistryClient(host, ANON)
    for arch in ("amd64", "arm64"):
        raw = kit.layer_tar({"arch": (arch.encode(), 0o644), "id": (unique.encode(), 0o644)})
        img = kit.image_from_layers(store, [raw], arch=arch)
        d = reg.TRANSPORT.write(reg.TRANSPORT.parse(f"//{host}/{repo}:{arch}"), img, store, ANON)
        images[arch] = (img, d)
        size = len(client.get_manifest(repo, d)[0])
        descs.append({"mediaType": reg.OCI_MANIFEST, "digest": d, "size": size,
                      "platform": {"os": "linux", "architecture": arch}})
    index = dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descs})
    index_digest = client.put_manifest(repo, "multi", index, OCI_INDEX)
    for arch in ("arm64", "amd64"):
        opts = TransportOptions(platform=f"linux/{arch}")
        for r in (f"docker://{host}/{repo}:multi", f"docker://{host}/{repo}@{index_digest}"):
            pulled = _read(r, Store(tmp_path / f"{arch}-{len(r)}"), opts)
            assert pulled.config["architecture"] == arch
            assert pulled.manifest_digest == images[arch][1]
    with pytest.raises(ImageError, match="no manifest for platform linux/s390x"):
        _read(f"docker://{host}/{repo}:multi", Store(tmp_path / "s390x"), TransportOptions(platform="linux/s390x"))
    # a Docker manifest list is understood the same way
    dl = dumps({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": descs})
    client.put_manifest(repo, "dlist", dl, DOCKER_LIST)
    pulled = _read(f"docker://{host}/{repo}:dlist", Store(tmp_path / "dl"), TransportOptions(platform="linux/arm64"))
    assert pulled.config["architecture"] == "arm64"


@pytest.mark.registry
@pytest.mark.parametrize("how", ["zstd", "none"])
def test_zstd_and_uncompressed_layers_round_trip(kit, registry_anon, store, tmp_path, unique, how):
    from trimcage.image.store import Store

    raw = kit.layer_tar({"data/blob": (os.urandom(200_000) + unique.encode(), 0o600)}, dirs=("data",))
    img = kit.image_from_layers(store, [raw, kit.layer_tar({"second": (b"2", 0o644)})], how=how)
    ref = f"docker://{registry_anon.host}/trimcage-test/{unique}:{how}"
    digest = _write(ref, img, store)
    fresh = Store(tmp_path / "pull")
    pulled = _read(ref, fresh)
    assert pulled.manifest_digest == digest
    assert [b.media_type for b in pulled.layers] == [b.media_type for b in img.layers]
    assert fresh.read_blob(pulled.layers[0].digest) == store.read_blob(img.layers[0].digest)
    index = _flatten(pulled, fresh)
    assert index["/data/blob"].size == 200_000 + len(unique)
    assert index == _flatten(img, store)


@pytest.mark.registry
def test_cross_repository_mount(registry_anon, hello_image, store, tmp_path, unique):
    from trimcage.image.store import Store

    src = f"docker://{registry_anon.host}/trimcage-test/{unique}-src:v1"
    _write(src, hello_image, store)
    fresh = Store(tmp_path / "pull")
    pulled = _read(src, fresh)  # named host/repo:tag, so pushing elsewhere on this host mounts
    dst = f"docker://{registry_anon.host}/trimcage-test/{unique}-dst:v1"
    digest = _write(dst, pulled, fresh)
    assert _read(dst, Store(tmp_path / "pull2")).manifest_digest == digest
    # the registry's access log shows the blob was mounted (201), not uploaded
    log_path = SERVICES_LOG_DIR / f"registry-{registry_anon.host.rsplit(':', 1)[1]}.log"
    mounted = (f"/v2/trimcage-test/{unique}-dst/blobs/uploads/?mount=sha256%3A{hello_image.layers[0].digest[7:]}"
               f"&from=trimcage-test/{unique}-src HTTP/1.1\" 201")
    assert mounted in log_path.read_text(errors="replace"), f"no mount request in {log_path}"


@pytest.mark.registry
def test_chunked_upload(kit, registry_anon, store, tmp_path, unique, monkeypatch):
    from trimcage.image.store import Store

    monkeypatch.setattr(reg.RegistryClient, "chunk_size", 64 * 1024)  # force PATCH chunks
    img = kit.image_from_layers(store, [kit.layer_tar({"big": (os.urandom(300_000), 0o644)})], how="none")
    ref = f"docker://{registry_anon.host}/trimcage-test/{unique}:chunked"
    digest = _write(ref, img, store)
    blob = img.layers[0]
    assert registry_anon.blob_data_path(blob.digest).read_bytes() == store.read_blob(blob.digest)
    assert _read(ref, Store(tmp_path / "pull")).manifest_digest == digest


@pytest.mark.registry
def test_tampered_blob_is_detected(kit, registry_anon, store, tmp_path, unique):
    from trimcage.image.store import Store

    img = kit.image_from_layers(store, [kit.layer_tar({"victim": (unique.encode() * 100, 0o644)})])
    ref = f"docker://{registry_anon.host}/trimcage-test/{unique}:v1"
    _write(ref, img, store)
    data_path = registry_anon.blob_data_path(img.layers[0].digest)
    original = data_path.read_bytes()
    tampered = bytearray(original)
    tampered[len(tampered) // 2] ^= 0xFF  # same size, one byte flipped
    data_path.write_bytes(bytes(tampered))
    fresh = Store(tmp_path / "pull")
    with pytest.raises(DigestMismatchError, match=img.layers[0].digest.split(":")[1][:12]):
        _read(ref, fresh)
    assert not fresh.has_blob(img.layers[0].digest)


@pytest.mark.registry
def test_missing_image_and_unreachable_registry(kit, registry_anon, tmp_path, unique):
    from trimcage.image.store import Store

    with pytest.raises(ImageError, match=rf"{registry_anon.host}/trimcage-test/{unique}.*HTTP 404"):
        _read(f"docker://{registry_anon.host}/trimcage-test/{unique}:nope", Store(tmp_path / "s"))
    port = kit.free_port()
    with pytest.raises(ImageError, match=rf"cannot connect to 127.0.0.1:{port}"):
        _read(f"docker://127.0.0.1:{port}/x:y", Store(tmp_path / "s"))


# --- the Docker daemon and Podman ---------------------------------------------------------


def _docker(*args, check=True, timeout=300):
    cp = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert cp.returncode == 0, f"docker {' '.join(args)}: {cp.stderr}"
    return cp


PODMAN_RUN = ["podman", "--runtime", "runc", "run", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]


def _podman(*args, check=True, timeout=300):
    cp = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert cp.returncode == 0, f"podman {' '.join(args)}: {cp.stderr}"
    return cp


@pytest.mark.docker
def test_docker_daemon_write_run_read(docker_daemon, hello_image, store, tmp_path, unique):
    from trimcage.image.store import Store

    name = f"trimcage-test/{unique}:v1"
    try:
        _write(f"docker-daemon:{name}", hello_image, store)
        cp = _docker("run", "--rm", "--network", "host", name, "/hello", unique)
        assert cp.stdout == f"hello from {unique}\n"
        fresh = Store(tmp_path / "back")
        back = _read(f"docker-daemon:{name}", fresh)
        assert back.config_blob.digest == hello_image.config_blob.digest  # Docker's image ID
        assert back.runtime_config["Cmd"] == ["/hello"]
        assert _flatten(back, fresh) == _flatten(hello_image, store)
        by_id = _read(f"docker-daemon:{hello_image.config_blob.digest}", Store(tmp_path / "byid"))
        assert by_id.config_blob.digest == hello_image.config_blob.digest
    finally:
        _docker("rmi", "-f", name, check=False)
    with pytest.raises(ImageError, match=rf"docker-daemon:trimcage-test/{unique}:v1.*404"):
        _read(f"docker-daemon:{name}", Store(tmp_path / "gone"))


@pytest.mark.podman
def test_containers_storage_write_run_read(podman, hello_image, store, tmp_path, unique):
    from trimcage.image.store import Store

    name = f"localhost/trimcage-test/{unique}:v1"
    try:
        _write(f"containers-storage:{name}", hello_image, store)
        cp = subprocess.run([*PODMAN_RUN, "--rm", "--network", "host", name, "/hello", unique],
                            capture_output=True, text=True, timeout=300)
        assert cp.returncode == 0, cp.stderr
        assert cp.stdout == f"hello from {unique}\n"
        fresh = Store(tmp_path / "back")
        back = _read(f"containers-storage:{name}", fresh)
        assert back.config_blob.digest == hello_image.config_blob.digest
        assert _flatten(back, fresh) == _flatten(hello_image, store)
    finally:
        _podman("rmi", "-f", name, check=False)
    with pytest.raises(ImageError, match=rf"containers-storage:{name}.*podman save failed"):
        _read(f"containers-storage:{name}", Store(tmp_path / "gone"))


# --- the foundation's done-when: nginx runs under Docker and Podman and answers 200 --------

# Run nginx on a free port of the host network: the image's Debian default site is edited
# to listen on $PORT before nginx starts (entrypoint overridden, works for the sample too).
NGINX_SCRIPT = ("sed -i \"s/listen 80 default_server/listen $PORT default_server/; /listen \\[::\\]:80/d\" "
                "/etc/nginx/sites-enabled/default && exec /usr/sbin/nginx -g 'daemon off;'")


@pytest.fixture
def nginx_image(request, store, kit):
    """The nginx image: the ``sample("nginx")`` image if the samples fixture exists, else one
    built here from an mmdebstrap root file system with nginx-light (one uncompressed layer)."""
    try:
        sample = request.getfixturevalue("sample")
    except pytest.FixtureLookupError:
        rootfs_tar = request.getfixturevalue("nginx_rootfs_tar")
        return kit.image_from_layers(store, [rootfs_tar.read_bytes()], how="none", runtime={
            "Entrypoint": ["/usr/sbin/nginx"], "Cmd": ["-g", "daemon off;"],
            "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "ExposedPorts": {"80/tcp": {}}})
    return _read(sample("nginx").reference, store)


def _probe(port: int, container_alive) -> int:
    import requests

    deadline = time.monotonic() + 60
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return requests.get(f"http://127.0.0.1:{port}/", timeout=5).status_code
        except requests.RequestException as e:
            last = e
            if not container_alive():
                break
            time.sleep(0.3)
    raise AssertionError(f"nginx did not answer on port {port}: {last}")


@pytest.mark.docker
@pytest.mark.podman
@pytest.mark.registry
@pytest.mark.samples
@pytest.mark.slow
def test_nginx_image_runs_under_docker_and_podman(kit, docker_daemon, podman, registry_anon, nginx_image, store,
                                                  tmp_path, unique):
    """The foundation's done-when: the written nginx image answers HTTP 200 under Docker and Podman."""
    from trimcage.image.store import Store

    # through the registry first, so the engines run what a pull gives
    ref = f"docker://{registry_anon.host}/trimcage-test/{unique}-nginx:v1"
    _write(ref, nginx_image, store)
    pulled_store = Store(tmp_path / "pulled")
    img = _read(ref, pulled_store)
    dname, pname = f"trimcage-test/{unique}-nginx:v1", f"localhost/trimcage-test/{unique}-nginx:v1"
    dcont, pcont = f"{unique}-docker", f"{unique}-podman"
    try:
        _write(f"docker-daemon:{dname}", img, pulled_store)
        _write(f"containers-storage:{pname}", img, pulled_store)
        port = kit.free_port()
        _docker("run", "-d", "--rm", "--name", dcont, "--network", "host", "-e", f"PORT={port}",
                "--entrypoint", "/bin/sh", dname, "-c", NGINX_SCRIPT)
        assert _probe(port, lambda: _docker("inspect", dcont, check=False).returncode == 0) == 200
        _docker("rm", "-f", dcont, check=False)
        port = kit.free_port()
        cp = subprocess.run([*PODMAN_RUN, "-d", "--rm", "--name", pcont, "--network", "host", "-e", f"PORT={port}",
                             "--entrypoint", "/bin/sh", pname, "-c", NGINX_SCRIPT],
                            capture_output=True, text=True, timeout=300)
        assert cp.returncode == 0, cp.stderr
        assert _probe(port, lambda: _podman("inspect", pcont, check=False).returncode == 0) == 200
    finally:
        _docker("rm", "-f", dcont, check=False)
        _podman("rm", "-f", "-t", "0", pcont, check=False)
        _docker("rmi", "-f", dname, check=False)
        _podman("rmi", "-f", pname, check=False)


# --- clear errors without a service ---------------------------------------------------------


def test_docker_hub_name_resolves_and_fails_clearly():
    """``docker://nginx`` is Docker Hub's library/nginx; unreachable here, it fails in one clear line."""
    ref = reg.TRANSPORT.parse("//nginx")
    assert reg.split_name(ref.name) == ("docker.io", "library/nginx")
    client = reg.RegistryClient("docker.io")
    assert client.api_host == "registry-1.docker.io"
    client.retries = 1
    client.timeout = (3.0, 3.0)
    with pytest.raises(ImageError, match=r"^docker://docker.io: cannot connect to registry-1.docker.io"):
        client.get_manifest("library/nginx", "latest")


def test_docker_daemon_socket_errors(tmp_path, monkeypatch):
    from trimcage.image.store import Store
    from trimcage.image.transports import docker_daemon

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no.sock")
    assert docker_daemon.socket_path() == f"{tmp_path}/no.sock"
    with pytest.raises(ImageError, match=rf"cannot talk to the Docker daemon at {tmp_path}/no.sock"):
        _read("docker-daemon:busybox:latest", Store(tmp_path / "s"))
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2375")
    with pytest.raises(ImageError, match="only unix:// sockets"):
        _read("docker-daemon:busybox:latest", Store(tmp_path / "s"))
    with pytest.raises(ImageError, match="cannot write to an image ID"):
        _write("docker-daemon:sha256:" + "a" * 64, None, Store(tmp_path / "s"))


@pytest.mark.parametrize("transport", ["docker-daemon", "containers-storage"])
@pytest.mark.parametrize("rest", ["nginx:1.25", "127.0.0.1:5000/a/b:t", "sha256:" + "c" * 64, "nginx"])
def test_local_engine_references_round_trip(transport, rest):
    from trimcage.image.reference import format_reference, parse_reference

    assert format_reference(parse_reference(f"{transport}:{rest}")) == f"{transport}:{rest}"
    with pytest.raises(BadReferenceError):
        parse_reference(f"{transport}:Bad Name")
