"""The ``docker://HOST[:PORT]/NAME[:TAG|@DIGEST]`` transport: a registry's HTTP API v2.

Reading resolves the tag (default ``latest``) or digest to a manifest
(OCI or Docker v2 schema 2; an index / manifest list is resolved to the
entry matching ``opts.platform``; schema 1 is refused), then streams the
config and layer blobs into the store, each verified against its digest and
size. Pulled by digest, the manifest's own digest is verified too.

Writing pushes every blob (``HEAD`` first: present blobs are skipped;
monolithic upload up to :attr:`RegistryClient.chunk_size`, chunked above),
then the manifest with its media type; it returns the manifest digest.

Loopback registries (127.0.0.0/8, ``localhost``, ``::1``) are spoken to in
plain HTTP; others in HTTPS, with a fallback to plain HTTP only when
``opts.tls_verify`` is False. A name without a registry host is resolved
the way Docker does (``nginx`` -> ``docker.io/library/nginx``, served by
``registry-1.docker.io``). Every error is one line naming the registry,
repository and, where there is one, the HTTP status.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import time
from typing import Any, Callable, Mapping
from urllib.parse import quote, urljoin, urlsplit

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
    BadReferenceError,
    Blob,
    DigestMismatchError,
    HostileInputError,
    Image,
    ImageError,
    ImageReference,
    StoreLike,
    Transport,
    TransportError,
    TransportOptions,
)
from trimcage.image.transports.registry_auth import RegistryAuth, resolve_credentials
from trimcage.util import dumps, sha256_bytes

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
SCHEMA1_TYPES = ("application/vnd.docker.distribution.manifest.v1+json",
                 "application/vnd.docker.distribution.manifest.v1+prettyjws")
LAYER_TYPES = frozenset({OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, DOCKER_LAYER, DOCKER_LAYER_GZIP,
                         "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                         "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"})
ACCEPT = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))
MAX_MANIFEST = 4 << 20  # containers/image's limit for manifests and configs

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_HOST_RE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
                      r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")


# --- references -------------------------------------------------------------


def split_name(name: str) -> tuple[str, str]:
    """Resolve a reference's name to (registry host, repository) the way Docker does.

    The first component is a host if it contains ``.`` or ``:``, is
    ``localhost`` or a bracketed IPv6 address; otherwise the name is Docker
    Hub's (``docker.io``), and one-component names get ``library/``.
    ``nginx`` -> (``docker.io``, ``library/nginx``).
    """
    first, sep, remainder = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        host, repo = first, remainder
    else:
        host, repo = DOCKER_HUB, name
    if host.lower() in ("index.docker.io", DOCKER_HUB_API):
        host = DOCKER_HUB
    if host == DOCKER_HUB and "/" not in repo:
        repo = "library/" + repo
    return host, repo


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1`` (with or without a port)."""
    h = host
    if h.startswith("["):
        h = h[1:h.index("]")] if "]" in h else h[1:]
    elif h.count(":") == 1:
        h = h.split(":")[0]
    if h.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def parse_docker_reference(rest: str) -> ImageReference:
    """Parse ``//[HOST[:PORT]/]NAME[:TAG][@DIGEST]`` into an unnormalised reference.

    The name is kept as typed (so formatting round-trips); Docker Hub
    defaults and the ``latest`` tag are applied when connecting (see
    :func:`split_name`). Raise ``BadReferenceError`` quoting ``rest``.
    """
    if not rest.startswith("//"):
        raise BadReferenceError(f"{rest!r}: docker references start with // (docker://HOST/NAME:TAG)")
    s = rest[2:]
    if not s:
        raise BadReferenceError(f"{rest!r}: empty image name")
    digest = None
    if "@" in s:
        s, digest = s.split("@", 1)
        if not _DIGEST_RE.match(digest):
            raise BadReferenceError(f"{rest!r}: digest {digest!r} is not sha256:<64 hex>")
    tag = None
    slash = s.rfind("/")
    colon = s.rfind(":")
    if colon > slash:
        s, tag = s[:colon], s[colon + 1:]
        if not _TAG_RE.match(tag):
            raise BadReferenceError(f"{rest!r}: bad tag {tag!r}")
    host, repo = split_name(s)
    if host != DOCKER_HUB and not _HOST_RE.match(host):
        raise BadReferenceError(f"{rest!r}: bad registry host {host!r}")
    if not _REPO_RE.match(repo) or len(s) > 255:
        raise BadReferenceError(f"{rest!r}: bad repository name {repo!r} "
                                "(lower-case components separated by '/')")
    return ImageReference(transport="docker", name=s, tag=tag, digest=digest)


def format_docker_reference(ref: ImageReference) -> str:
    s = "//" + (ref.name or "")
    if ref.tag:
        s += ":" + ref.tag
    if ref.digest:
        s += "@" + ref.digest
    return s


# --- the HTTP client --------------------------------------------------------


class RegistryError(TransportError):
    """A registry request failed; the message names registry, repository and HTTP status."""


def _registry_message(r: Any) -> str:
    try:
        doc = r.json()
        errs = doc.get("errors") if isinstance(doc, dict) else None
        if errs:
            return "; ".join(f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errs[:3]
                             if isinstance(e, dict))
    except ValueError:
        pass
    return ""


class RegistryClient:
    """An HTTP API v2 client for one registry host, with auth, retries and timeouts.

    ``host`` is as in references (``127.0.0.1:5100``, ``docker.io``).
    Public methods name a repository and raise :class:`RegistryError` (or
    ``AuthError``) with one line on failure.
    """

    retries = 3
    timeout = (10.0, 120.0)
    chunk_size = 32 << 20  # blobs above this are uploaded in PATCH chunks of this size

    def __init__(self, host: str, opts: TransportOptions = TransportOptions()):
        import requests

        self.host = host
        self.api_host = DOCKER_HUB_API if host == DOCKER_HUB else host
        self.opts = opts
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "trimcage"
        self.verify = bool(opts.tls_verify)
        self._base: str | None = None
        self.auth = RegistryAuth(self.session, f"docker://{host}", resolve_credentials(host, opts), timeout=self.timeout,
                                 verify=self.verify)

    # -- plumbing --

    def _where(self, repo: str | None) -> str:
        return f"docker://{self.host}/{repo}" if repo else f"docker://{self.host}"

    def base_url(self) -> str:
        """``http://HOST`` or ``https://HOST``, decided once by pinging ``/v2/``."""
        if self._base is None:
            import requests

            if is_loopback(self.api_host):
                candidates = [f"http://{self.api_host}"]
            elif not self.opts.tls_verify:
                candidates = [f"https://{self.api_host}", f"http://{self.api_host}"]
            else:
                candidates = [f"https://{self.api_host}"]
            last: Exception | None = None
            for base in candidates:
                try:
                    self._with_retries(lambda: self.session.get(base + "/v2/", timeout=self.timeout,
                                                                verify=self.verify))
                    self._base = base
                    break
                except requests.exceptions.SSLError as e:
                    last = e
                except requests.RequestException as e:
                    last = e
                    break
            if self._base is None:
                raise RegistryError(f"{self._where(None)}: cannot connect to {self.api_host}: "
                                    f"{_short(last)}") from last
        return self._base

    def _with_retries(self, fn: Callable[[], Any]) -> Any:
        import requests

        for attempt in range(self.retries):
            try:
                return fn()
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as e:
                if isinstance(e, requests.exceptions.SSLError) or attempt == self.retries - 1:
                    raise
                time.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")

    def request(self, method: str, url: str, repo: str, *, push: bool = False, ok: tuple[int, ...] = (200,),
                what: str = "", headers: Mapping[str, str] | None = None,
                body: Callable[[], Any] | None = None, **kw: Any) -> Any:
        """One API call with auth and bounded retries on connection resets.

        ``url`` is a path under the base URL or an absolute URL (upload
        locations); ``body`` is a callable returning fresh request data so a
        retry can resend it. Raise ``RegistryError`` unless the status is in ``ok``.
        """
        import requests

        if not url.startswith(("http://", "https://")):
            url = self.base_url() + url
        # Credentials go only to the registry itself, never to a host an upload Location names.
        same_host = urlsplit(url).netloc == urlsplit(self.base_url()).netloc
        scope = f"repository:{repo}:{'pull,push' if push else 'pull'}"
        for attempt in range(3):
            def send() -> Any:
                h = dict(headers or {})
                if same_host:
                    h.update(self.auth.headers(scope))
                data = body() if body is not None else None
                try:
                    return self.session.request(method, url, headers=h, data=data, timeout=self.timeout,
                                                verify=self.verify, **kw)
                finally:
                    if hasattr(data, "close"):
                        data.close()
            try:
                r = self._with_retries(send)
            except requests.RequestException as e:
                raise RegistryError(f"{self._where(repo)}: {what or method}: {_short(e)}") from e
            if r.status_code == 401 and self.auth.on_unauthorized(r, scope):
                r.close()
                continue
            if r.status_code in (502, 503, 504) and method in ("GET", "HEAD") and attempt < 2:
                r.close()
                time.sleep(1.0 * (attempt + 1))
                continue
            break
        if r.status_code in ok:
            return r
        msg = _registry_message(r)
        r.close()
        hint = ""
        if r.status_code == 401:
            hint = (" (authentication required: use --creds USER:PASS or --authfile)" if not self.auth.creds
                    else " (credentials refused)")
        raise RegistryError(f"{self._where(repo)}: {what or method}: HTTP {r.status_code} {r.reason}"
                            f"{': ' + msg if msg else ''}{hint}")

    # -- pulling --

    def get_manifest(self, repo: str, reference: str) -> tuple[bytes, str]:
        """Fetch a manifest by tag or digest: (raw bytes, media type). Size-capped."""
        r = self.request("GET", f"/v2/{repo}/manifests/{quote(reference, safe=':')}", repo,
                         headers={"Accept": ACCEPT}, what=f"manifest {reference}", stream=True)
        with r:
            data = r.raw.read(MAX_MANIFEST + 1, decode_content=True)
            if len(data) > MAX_MANIFEST:
                raise HostileInputError(f"{self._where(repo)}: manifest {reference} is larger than "
                                        f"{MAX_MANIFEST} bytes")
            ctype = r.headers.get("Content-Type", "").split(";")[0].strip()
            served = r.headers.get("Docker-Content-Digest")
        if served and _DIGEST_RE.match(served) and served != sha256_bytes(data):
            raise DigestMismatchError(f"{self._where(repo)}: manifest {reference}: content is "
                                      f"{sha256_bytes(data)} but the registry says {served}")
        return data, ctype

    def fetch_blob(self, repo: str, digest: str, store: StoreLike, size: int | None) -> Blob:
        """Stream a blob into ``store`` (digest and size verified); skip it if the store has it."""
        import requests
        import urllib3

        if store.has_blob(digest):
            have = os.path.getsize(store.blob_path(digest))
            if size is not None and have != size:
                raise HostileInputError(f"{self._where(repo)}: the manifest gives blob {digest} size {size}, "
                                        f"but its content has {have} bytes")
            return Blob(digest, have, "")
        for attempt in range(self.retries):
            r = self.request("GET", f"/v2/{repo}/blobs/{digest}", repo, what=f"blob {digest}", stream=True)
            try:
                with r:
                    return store.put_blob_stream(_RawReader(r.raw), expected_digest=digest, size=size)
            except DigestMismatchError as e:
                raise DigestMismatchError(f"{self._where(repo)}: blob {digest}: {e}") from e
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as e:
                if attempt == self.retries - 1:
                    raise RegistryError(f"{self._where(repo)}: blob {digest}: {_short(e)}") from e
                time.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")

    # -- pushing --

    def blob_exists(self, repo: str, digest: str) -> bool:
        r = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", repo, push=True, ok=(200, 404),
                         what=f"blob {digest}")
        r.close()
        return r.status_code == 200

    def push_blob(self, repo: str, path: str, digest: str, size: int, mount_from: str | None = None) -> bool:
        """Upload the file ``path`` as ``digest`` unless present; return True if uploaded.

        With ``mount_from`` (another repository of this registry), a cross-repository
        mount is asked for first; registries that refuse it get a normal upload.
        """
        if self.blob_exists(repo, digest):
            return False
        what = f"upload of blob {digest}"
        url = f"/v2/{repo}/blobs/uploads/"
        if mount_from and mount_from != repo:
            url += f"?mount={quote(digest, safe='')}&from={quote(mount_from, safe='/')}"
        r = self.request("POST", url, repo, push=True, ok=(201, 202), what=what)
        if r.status_code == 201:
            r.close()
            return False
        location = urljoin(self.base_url() + "/", r.headers.get("Location", ""))
        r.close()
        if size > self.chunk_size:
            offset = 0
            with open(path, "rb") as f:
                while offset < size:
                    f.seek(offset)
                    chunk = f.read(self.chunk_size)
                    end = offset + len(chunk) - 1
                    r = self.request("PATCH", location, repo, push=True, ok=(202,), what=what,
                                     headers={"Content-Type": "application/octet-stream",
                                              "Content-Range": f"{offset}-{end}",
                                              "Content-Length": str(len(chunk))},
                                     body=lambda c=chunk: c)
                    location = urljoin(location, r.headers.get("Location", location))
                    r.close()
                    offset = end + 1
            body: Callable[[], Any] = lambda: b""
            length = 0
        else:
            body = lambda: open(path, "rb")  # noqa: E731 - reopened on retry
            length = size
        sep = "&" if "?" in location else "?"
        r = self.request("PUT", f"{location}{sep}digest={quote(digest, safe='')}", repo, push=True,
                         ok=(201, 204), what=what, body=body,
                         headers={"Content-Type": "application/octet-stream", "Content-Length": str(length)})
        r.close()
        return True

    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> str:
        """PUT a manifest (or index) under a tag or digest; return its digest."""
        digest = sha256_bytes(data)
        r = self.request("PUT", f"/v2/{repo}/manifests/{quote(reference, safe=':')}", repo, push=True,
                         ok=(201, 200), what=f"manifest {reference}", body=lambda: data,
                         headers={"Content-Type": media_type})
        served = r.headers.get("Docker-Content-Digest")
        r.close()
        if served and served != digest:
            raise RegistryError(f"{self._where(repo)}: manifest {reference}: registry stored it as "
                                f"{served}, expected {digest}")
        return digest


class _RawReader:
    """File-like over a urllib3 response that never decodes Content-Encoding."""

    def __init__(self, raw: Any):
        self.raw = raw

    def read(self, n: int = -1) -> bytes:
        return self.raw.read(n if n is not None and n >= 0 else None, decode_content=False)


def _short(e: BaseException | None) -> str:
    text = str(e) if e is not None else "unknown error"
    text = re.sub(r"\s+", " ", text)
    return text if len(text) <= 300 else text[:297] + "..."


# --- manifests ----------------------------------------------------------------


def _json(data: bytes, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise HostileInputError(f"{where}: not valid JSON: {e}") from e
    if not isinstance(doc, dict):
        raise HostileInputError(f"{where}: not a JSON object")
    return doc


def _descriptor(d: Any, where: str) -> tuple[str, int, str]:
    if not isinstance(d, dict) or not isinstance(d.get("digest"), str) or not _DIGEST_RE.match(d["digest"]):
        raise HostileInputError(f"{where}: descriptor without a valid sha256 digest: {str(d)[:200]}")
    size = d.get("size")
    if not isinstance(size, int) or size < 0:
        raise HostileInputError(f"{where}: descriptor {d['digest']} has no valid size")
    return d["digest"], size, str(d.get("mediaType", ""))


def parse_platform(text: str) -> tuple[str, str, str | None]:
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ImageError(f"platform {text!r}: expected OS/ARCH[/VARIANT]")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def select_platform(index: Mapping[str, Any], platform: str, where: str) -> tuple[str, int, str]:
    """Pick the manifest descriptor of ``index`` for ``platform`` (``os/arch[/variant]``).

    An exact variant match wins; without a requested variant, the first
    entry of that os/arch does. Raise ``ImageError`` listing what is offered.
    """
    os_, arch, variant = parse_platform(platform)
    manifests = index.get("manifests")
    if not isinstance(manifests, list):
        raise HostileInputError(f"{where}: index without a 'manifests' list")
    offered, fallback = [], None
    for d in manifests:
        p = d.get("platform") if isinstance(d, dict) else None
        if not isinstance(p, dict):
            continue
        offered.append("/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x))
        if p.get("os") != os_ or p.get("architecture") != arch:
            continue
        if variant is None or p.get("variant") == variant:
            return _descriptor(d, where)
        if variant in ("v8",) and not p.get("variant") and fallback is None:
            fallback = d
    if fallback is not None:
        return _descriptor(fallback, where)
    raise ImageError(f"{where}: no manifest for platform {platform} (offered: {', '.join(offered) or 'none'})")


def _detect_layer_type(store: StoreLike, digest: str) -> str:
    with open(store.blob_path(digest), "rb") as f:
        magic = f.read(4)
    if magic[:2] == b"\x1f\x8b":
        return OCI_LAYER_GZIP
    if magic == b"\x28\xb5\x2f\xfd":
        return OCI_LAYER_ZSTD
    return OCI_LAYER


def manifest_for_push(image: Image, store: StoreLike) -> tuple[bytes, str]:
    """The manifest to push for ``image``: the stored original if it still describes it, else a new one.

    A new manifest is Docker v2 schema 2 when config and every layer carry
    Docker media types, OCI otherwise; it is canonical JSON (deterministic).
    """
    if image.manifest_digest and store.has_blob(image.manifest_digest):
        try:
            doc = json.loads(store.read_blob(image.manifest_digest))
            if (isinstance(doc, dict) and doc.get("mediaType", OCI_MANIFEST) in MANIFEST_TYPES
                    and doc.get("schemaVersion") == 2
                    and doc.get("config", {}).get("digest") == image.config_blob.digest
                    and [x.get("digest") for x in doc.get("layers", [])] == [b.digest for b in image.layers]):
                return store.read_blob(image.manifest_digest), doc.get("mediaType", OCI_MANIFEST)
        except (ValueError, AttributeError, TypeError):
            pass
    layer_types = [b.media_type or _detect_layer_type(store, b.digest) for b in image.layers]
    docker = (image.config_blob.media_type == DOCKER_CONFIG
              and all(t in (DOCKER_LAYER, DOCKER_LAYER_GZIP) for t in layer_types))
    if not docker:
        to_oci = {DOCKER_LAYER: OCI_LAYER, DOCKER_LAYER_GZIP: OCI_LAYER_GZIP}
        layer_types = [to_oci.get(t, t) for t in layer_types]
    media_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": DOCKER_CONFIG if docker else OCI_CONFIG,
                   "digest": image.config_blob.digest, "size": image.config_blob.size},
        "layers": [{"mediaType": t, "digest": b.digest, "size": b.size} for b, t in zip(image.layers, layer_types)],
    }
    return dumps(doc), media_type


# --- the transport ------------------------------------------------------------


class RegistryTransport(Transport):
    """``docker://`` — see the module docstring."""

    name = "docker"

    def parse(self, rest: str) -> ImageReference:
        return parse_docker_reference(rest)

    def format(self, ref: ImageReference) -> str:
        return format_docker_reference(ref)

    def read(self, ref: ImageReference, store: StoreLike, opts: TransportOptions) -> Image:
        host, repo = split_name(ref.name or "")
        client = RegistryClient(host, opts)
        where = f"docker://{host}/{repo}"
        reference = ref.digest or ref.tag or "latest"
        data, ctype = client.get_manifest(repo, reference)
        if ref.digest and sha256_bytes(data) != ref.digest:
            raise DigestMismatchError(f"{where}: manifest pulled by digest {ref.digest} has digest "
                                      f"{sha256_bytes(data)}")
        if ctype in SCHEMA1_TYPES:
            raise ImageError(f"{where}:{reference}: Docker schema 1 manifests are not supported "
                             "(push the image again with a current Docker or skopeo)")
        doc = _json(data, f"{where}: manifest {reference}")
        if doc.get("schemaVersion") == 1:
            raise ImageError(f"{where}:{reference}: Docker schema 1 manifests are not supported "
                             "(push the image again with a current Docker or skopeo)")
        mtype = doc.get("mediaType") or ctype
        if mtype in INDEX_TYPES or (not doc.get("mediaType") and "manifests" in doc and "layers" not in doc):
            child, _, _ = select_platform(doc, opts.platform, f"{where}: index {reference}")
            data, ctype = client.get_manifest(repo, child)
            if sha256_bytes(data) != child:
                raise DigestMismatchError(f"{where}: manifest {child} has digest {sha256_bytes(data)}")
            doc = _json(data, f"{where}: manifest {child}")
            mtype = doc.get("mediaType") or ctype
            if doc.get("schemaVersion") != 2 or "layers" not in doc:
                raise HostileInputError(f"{where}: index entry {child} is not an image manifest")
        if mtype not in MANIFEST_TYPES and not (mtype in ("", "application/json") and "layers" in doc):
            raise ImageError(f"{where}:{reference}: unsupported manifest media type {mtype!r}")
        manifest_digest = sha256_bytes(data)
        store.put_blob_bytes(data, expected_digest=manifest_digest)

        cdigest, csize, ctype_cfg = _descriptor(doc.get("config"), f"{where}: manifest config")
        if csize > MAX_MANIFEST:
            raise HostileInputError(f"{where}: config {cdigest} is larger than {MAX_MANIFEST} bytes")
        client.fetch_blob(repo, cdigest, store, csize)
        config = _json(store.read_blob(cdigest), f"{where}: config {cdigest}")
        layers_doc = doc.get("layers")
        if not isinstance(layers_doc, list):
            raise HostileInputError(f"{where}: manifest {manifest_digest} has no 'layers' list")
        layers = []
        for d in layers_doc:
            ldigest, lsize, ltype = _descriptor(d, f"{where}: layer")
            if ltype and ltype not in LAYER_TYPES:
                raise ImageError(f"{where}: layer {ldigest} has unsupported media type {ltype!r}")
            client.fetch_blob(repo, ldigest, store, lsize)
            layers.append(Blob(ldigest, lsize, ltype))
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") if isinstance(config.get("rootfs"), dict) else None
        if not isinstance(diff_ids, list) or len(diff_ids) != len(layers):
            raise HostileInputError(f"{where}: config {cdigest} lists {len(diff_ids or [])} diff_ids for "
                                    f"{len(layers)} layers")
        name = f"{host}/{repo}:{ref.tag or 'latest'}" if not ref.digest or ref.tag else f"{host}/{repo}"
        return Image(config_blob=Blob(cdigest, csize, ctype_cfg or OCI_CONFIG), config=config,
                     layers=tuple(layers), manifest_digest=manifest_digest, name=name)

    def write(self, ref: ImageReference, image: Image, store: StoreLike, opts: TransportOptions) -> str:
        host, repo = split_name(ref.name or "")
        client = RegistryClient(host, opts)
        mount_from = None
        if image.name:  # pulled from this registry before: blobs can be mounted from there
            try:
                src_host, src_repo = split_name(parse_docker_reference("//" + image.name).name or "")
                mount_from = src_repo if src_host == host else None
            except BadReferenceError:
                pass
        for blob in (*image.layers, image.config_blob):
            client.push_blob(repo, store.blob_path(blob.digest), blob.digest, blob.size, mount_from)
        data, media_type = manifest_for_push(image, store)
        digest = sha256_bytes(data)
        if ref.digest and ref.digest != digest:
            raise DigestMismatchError(f"docker://{host}/{repo}@{ref.digest}: the image's manifest has digest "
                                      f"{digest}; push it by tag instead")
        return client.put_manifest(repo, ref.tag or ref.digest or "latest", data, media_type)


TRANSPORT = RegistryTransport()
