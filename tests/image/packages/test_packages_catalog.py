"""The catalog over a fixture tree laid out like a real root file system."""

from __future__ import annotations

import shutil

import pytest

from trimcage.image.inventory import RootfsReader
from trimcage.image.packages import PackageDatabaseError, catalog


def _tree(tmp_path, testdata, *names):
    root = tmp_path / "root"
    (root / "var/lib/dpkg/status.d").mkdir(parents=True)
    for n in names:
        shutil.copy(testdata / "var/lib/dpkg/status.d" / n, root / "var/lib/dpkg/status.d" / n)
    return root


def test_status_d_distroless(index_of, tmp_path, testdata):
    root = _tree(tmp_path, testdata, "single", "single.md5sums", "multiple", "deinstall")
    pkgs = catalog(index_of(root), RootfsReader(root))
    assert [p.name for p in pkgs] == ["dash", "libc6", "libsystemd0", "nginx-light", "zlib1g"]
    zlib = pkgs[-1]
    assert zlib.database == "/var/lib/dpkg/status.d/single"
    assert "/lib/x86_64-linux-gnu/libz.so.1.2.13" in zlib.files


def test_corrupt_database_fails_the_catalog(index_of, tmp_path, testdata):
    root = _tree(tmp_path, testdata, "single", "corrupt")
    with pytest.raises(PackageDatabaseError, match="/var/lib/dpkg/status.d/corrupt: line 11"):
        catalog(index_of(root), RootfsReader(root))


def test_status_with_info_lists_and_symlinked_dir(index_of, tmp_path, testdata):
    root = tmp_path / "root"
    (root / "srv/dpkg/info").mkdir(parents=True)
    (root / "var/lib").mkdir(parents=True)
    (root / "var/lib/dpkg").symlink_to("../../srv/dpkg")
    shutil.copy(testdata / "var/lib/dpkg/status.d/multiple", root / "srv/dpkg/status")
    (root / "srv/dpkg/info/dash.list").write_text("/.\n/bin\n/bin/dash\n")
    (root / "srv/dpkg/info/libc6:amd64.list").write_text("/lib/x86_64-linux-gnu/libc.so.6\n")
    pkgs = catalog(index_of(root), RootfsReader(root))
    assert {p.name: p.files for p in pkgs} == {
        "dash": ("/bin", "/bin/dash"), "libc6": ("/lib/x86_64-linux-gnu/libc.so.6",), "nginx-light": ()}


def test_apk_and_empty(index_of, tmp_path, testdata):
    root = tmp_path / "root"
    (root / "lib/apk/db").mkdir(parents=True)
    assert catalog(index_of(root), RootfsReader(root)) == []
    shutil.copy(testdata / "lib/apk/db/installed", root / "lib/apk/db/installed")
    assert [p.name for p in catalog(index_of(root), RootfsReader(root))] == [
        "alpine-baselayout-data", "busybox", "musl"]


def test_database_symlink_out_of_tree_is_not_followed_on_host(index_of, tmp_path):
    root = tmp_path / "root"
    (root / "lib/apk/db").mkdir(parents=True)
    (root / "lib/apk/db/installed").symlink_to("/etc/passwd")  # resolves in-image to a missing file
    assert catalog(index_of(root), RootfsReader(root)) == []
    reader = RootfsReader(root)
    with pytest.raises(OSError):
        reader("/lib/apk/db/installed")
