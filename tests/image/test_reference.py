"""Reference parsing, the transport registry and path autodetection."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from trimcage.image import reference
from trimcage.image.interface import BadReferenceError, ImageReference, Transport, TransportError
from trimcage.image.reference import (
    all_transports,
    format_reference,
    get_transport,
    parse_reference,
    register,
)

D = "sha256:" + "ab" * 32

ROUND_TRIP = [
    ("oci:/dir", ImageReference("oci", path="/dir")),
    ("oci:/dir:tag", ImageReference("oci", path="/dir", tag="tag")),
    ("oci:rel/dir:v1.2-rc", ImageReference("oci", path="rel/dir", tag="v1.2-rc")),
    ("oci-archive:/x/img.tar", ImageReference("oci-archive", path="/x/img.tar")),
    ("oci-archive:/x/img.tar:latest", ImageReference("oci-archive", path="/x/img.tar", tag="latest")),
    ("docker-archive:/x.tar", ImageReference("docker-archive", path="/x.tar")),
    ("docker-archive:/x.tar:nginx:latest", ImageReference("docker-archive", path="/x.tar", name="nginx", tag="latest")),
    ("docker-archive:/x.tar:nginx", ImageReference("docker-archive", path="/x.tar", name="nginx")),
    ("docker-archive:/x.tar:quay.io/a/b:1", ImageReference("docker-archive", path="/x.tar", name="quay.io/a/b", tag="1")),
    ("docker://127.0.0.1:5000/library/nginx:1.0",
     ImageReference("docker", name="127.0.0.1:5000/library/nginx", tag="1.0")),
    ("docker://127.0.0.1:5000/library/nginx", ImageReference("docker", name="127.0.0.1:5000/library/nginx")),
    (f"docker://host/repo@{D}", ImageReference("docker", name="host/repo", digest=D)),
    (f"docker://host/repo:t@{D}", ImageReference("docker", name="host/repo", tag="t", digest=D)),
    ("docker://nginx", ImageReference("docker", name="nginx")),
    ("docker-daemon:nginx:1.25", ImageReference("docker-daemon", name="nginx", tag="1.25")),
    (f"docker-daemon:{D}", ImageReference("docker-daemon", digest=D)),
    ("containers-storage:localhost/app:slim", ImageReference("containers-storage", name="localhost/app", tag="slim")),
]


@pytest.mark.parametrize("text,expected", ROUND_TRIP, ids=[t for t, _ in ROUND_TRIP])
def test_round_trip(text, expected):
    ref = parse_reference(text)
    assert ref == expected
    assert format_reference(ref) == text
    assert str(ref) == text
    assert parse_reference(ref.string()) == ref


BAD = [
    "",
    "docker:nginx",                       # docker needs //
    "docker://UPPER/Case:x",              # repository path must be lower case
    "docker://host/repo:bad tag",
    "docker://host/repo@sha256:1234",     # short digest
    "oci:",                               # no path
    "oci:/dir:",                          # empty tag
    "docker-archive:/x.tar:Nginx:1",
    "docker-archive:/x.tar:@1",
    "nosuchtransport:foo",
    "/definitely/not/here.tar",
]


@pytest.mark.parametrize("text", BAD)
def test_bad_references_quote_the_input(text):
    with pytest.raises(BadReferenceError) as ei:
        parse_reference(text)
    msg = str(ei.value)
    assert repr(text) in msg or text in msg
    assert "\n" not in msg


def test_registry_holds_every_transport():
    names = set(all_transports())
    assert {"oci", "oci-archive", "docker-archive", "docker", "docker-daemon", "containers-storage"} <= names
    for name, t in all_transports().items():
        assert isinstance(t, Transport) and t.name == name
    with pytest.raises(BadReferenceError, match="nosuch"):
        get_transport("nosuch")


def _tar(path, members: dict[str, bytes]):
    with tarfile.open(path, "w") as tf:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))


def test_autodetect_paths(tmp_path):
    layout = tmp_path / "layout"
    layout.mkdir()
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": []}))
    _tar(tmp_path / "oci.tar", {"oci-layout": b"{}", "index.json": b"{}"})
    _tar(tmp_path / "dock.tar", {"manifest.json": b"[]"})
    _tar(tmp_path / "other.tar", {"hello": b"x"})
    (tmp_path / "empty.tar").write_bytes(b"")
    (tmp_path / "text").write_text("not a tar at all\n" * 100)
    (tmp_path / "plain").mkdir()

    assert parse_reference(str(layout)) == ImageReference("oci", path=str(layout))
    assert parse_reference(str(tmp_path / "oci.tar")) == ImageReference("oci-archive", path=str(tmp_path / "oci.tar"))
    assert parse_reference(str(tmp_path / "dock.tar")) == ImageReference("docker-archive",
                                                                         path=str(tmp_path / "dock.tar"))
    # an autodetected reference formats with its transport and parses back equal
    ref = parse_reference(str(tmp_path / "dock.tar"))
    assert format_reference(ref) == f"docker-archive:{tmp_path / 'dock.tar'}"
    assert parse_reference(format_reference(ref)) == ref
    for bad in ("other.tar", "empty.tar", "text", "plain", "missing"):
        with pytest.raises(BadReferenceError, match=bad):
            parse_reference(str(tmp_path / bad))


class _Dummy(Transport):
    name = "dummy-test"

    def parse(self, rest):
        return ImageReference(self.name, path=rest)

    def format(self, ref):
        return ref.path

    def read(self, ref, store, opts):
        raise TransportError("dummy")


def test_register_adds_a_transport(monkeypatch):
    monkeypatch.setattr(reference, "_TRANSPORTS", dict(all_transports()))
    register(_Dummy())
    assert parse_reference("dummy-test:a:b") == ImageReference("dummy-test", path="a:b")
    assert format_reference(ImageReference("dummy-test", path="a:b")) == "dummy-test:a:b"


def _reload(monkeypatch, modules, optional, importer=None):
    from trimcage.image import transports

    monkeypatch.setattr(reference, "_TRANSPORTS", {})
    monkeypatch.setattr(reference, "_LOADED", False)
    monkeypatch.setattr(transports, "MODULES", modules)
    monkeypatch.setattr(transports, "OPTIONAL", frozenset(optional))
    if importer:
        monkeypatch.setattr(reference.importlib, "import_module", importer)


def test_missing_optional_module_becomes_a_stub(monkeypatch):
    _reload(monkeypatch, (("oci_layout", "oci"), ("not_written_yet", "docker")), {"not_written_yet"})
    t = get_transport("docker")
    ref = parse_reference("docker://127.0.0.1:5000/a/b:1")
    assert ref == ImageReference("docker", name="127.0.0.1:5000/a/b", tag="1")
    with pytest.raises(TransportError, match="not supported here"):
        t.read(ref, None, None)
    assert get_transport("oci").name == "oci"


def test_only_the_module_itself_may_be_missing(monkeypatch):
    real = reference.importlib.import_module

    def importer(name, *a):
        if name.endswith(".broken"):
            raise ModuleNotFoundError("No module named 'some_dependency'", name="some_dependency")
        return real(name, *a)

    _reload(monkeypatch, (("broken", "docker"),), {"broken"}, importer)
    with pytest.raises(ModuleNotFoundError, match="some_dependency"):
        all_transports()
    # a required (non-optional) module that is missing is an error too
    _reload(monkeypatch, (("nope_missing", "docker"),), set())
    with pytest.raises(ModuleNotFoundError):
        all_transports()
