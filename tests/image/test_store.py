"""The content-addressed store: verified blobs, the JSON cache, locks, two processes at once."""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import time

import pytest

from trimcage.image.interface import DigestMismatchError, HostileInputError, ImageError
from trimcage.image.store import Store, open_store


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def leftovers(store: Store) -> list[str]:
    return sorted(os.listdir(store.home / "tmp"))


def test_put_and_read_blob(store):
    data = b"hello layer"
    b = store.put_blob_bytes(data, digest(data))
    assert (b.digest, b.size, b.media_type) == (digest(data), len(data), "")
    assert store.has_blob(b.digest)
    assert store.read_blob(b.digest) == data
    assert store.blob_path(b.digest) == str(store.home / "blobs" / "sha256" / b.digest[7:])


def test_put_stream_and_file(store, tmp_path):
    data = os.urandom(3 << 20)
    assert store.put_blob_stream(io.BytesIO(data), digest(data), size=len(data)).digest == digest(data)
    src = tmp_path / "blob"
    src.write_bytes(data + b"!")
    b = store.put_blob_file(src)
    assert b.digest == digest(data + b"!") and store.read_blob(b.digest) == data + b"!"
    assert leftovers(store) == []


def test_present_blob_is_verified_not_rewritten(store):
    data = b"x" * 100
    store.put_blob_bytes(data)
    with pytest.raises(DigestMismatchError):
        store.put_blob_stream(io.BytesIO(b"y" * 100), digest(data))
    assert store.read_blob(digest(data)) == data


@pytest.mark.parametrize("data,size", [(b"tampered", None), (b"short", 10), (b"too long!", 3)])
def test_mismatch_leaves_nothing(store, data, size):
    good = digest(b"the real content")
    with pytest.raises(DigestMismatchError) as ei:
        store.put_blob_stream(io.BytesIO(data), good, size=size)
    assert good in str(ei.value) and "\n" not in str(ei.value)
    assert not store.has_blob(good) and not store.has_blob(digest(data))
    assert leftovers(store) == []


def test_stream_is_not_read_past_declared_size(store):
    stream = io.BytesIO(b"a" * 10 + b"b" * 1000)
    with pytest.raises(DigestMismatchError):
        store.put_blob_stream(stream, None, size=10)
    assert stream.tell() == 11


@pytest.mark.parametrize("bad", ["sha256:../../etc/passwd", "sha256:ABC", "md5:" + "0" * 32, "sha256:" + "0" * 63, ""])
def test_bad_digests_are_refused(store, bad):
    with pytest.raises(HostileInputError):
        store.has_blob(bad)
    with pytest.raises(HostileInputError):
        store.put_blob_bytes(b"x", bad)


def test_missing_blob_and_file(store, tmp_path):
    with pytest.raises(ImageError, match="not in the store"):
        store.blob_path(digest(b"absent"))
    with pytest.raises(ImageError, match="cannot read"):
        store.put_blob_file(tmp_path / "nope")


def test_sha512_blobs(store):
    d = "sha512:" + hashlib.sha512(b"x").hexdigest()
    assert store.put_blob_bytes(b"x", d).digest == d and store.read_blob(d) == b"x"


def test_json_cache(store):
    assert store.cache_get_json("index", "k") is None
    store.cache_put_json("index", "k", {"a": [1, "\udcff"]})
    assert store.cache_get_json("index", "k") == {"a": [1, "\udcff"]}
    store.cache_put_json("index", "../../escape/key", 1)
    assert store.cache_get_json("index", "../../escape/key") == 1
    assert sorted(p.parent for p in store.home.rglob("*.json")) == [store.cache_dir("index")] * 2
    (store.cache_dir("index") / "k.json").write_text("{broken")
    assert store.cache_get_json("index", "k") is None
    with pytest.raises(ValueError):
        store.cache_dir("../x")


def test_open_store_home(monkeypatch, tmp_path):
    monkeypatch.setenv("TRIMCAGE_HOME", str(tmp_path / "h"))
    assert open_store().home == tmp_path / "h"
    assert open_store(tmp_path / "other").home == tmp_path / "other"


def _hammer(home: str, n: int) -> None:
    s = Store(home)
    for i in range(n):
        data = str(i % 7).encode() * 100_000
        s.put_blob_bytes(data, digest(data))
        s.put_blob_stream(io.BytesIO(data), digest(data))
        s.cache_put_json("ns", f"k{i % 3}", {"i": i % 3, "pad": "x" * 50_000})
        assert s.cache_get_json("ns", f"k{i % 3}") == {"i": i % 3, "pad": "x" * 50_000}
        with s.lock("critical"):
            marker = s.home / "inside"
            assert not marker.exists()
            marker.touch()
            time.sleep(0.001)
            marker.unlink()


def test_two_processes_share_a_store(tmp_path):
    home = str(tmp_path / "store")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_hammer, args=(home, 40)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    s = Store(home)
    for i in range(7):
        data = str(i).encode() * 100_000
        assert s.read_blob(digest(data)) == data
    assert leftovers(s) == []
