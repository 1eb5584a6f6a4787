"""The apk installed-database parser."""

from __future__ import annotations

import pytest

from trimcage.image.packages import PackageDatabaseError, parse_apk_installed


def test_installed(testdata):
    text = (testdata / "lib/apk/db/installed").read_text()
    pkgs = parse_apk_installed(text)
    assert [(p.name, p.version, p.source, p.arch, p.ecosystem) for p in pkgs] == [
        ("musl", "1.2.4-r2", "musl", "x86_64", "apk"),
        ("busybox", "1.36.1-r15", "busybox", "x86_64", "apk"),
        ("alpine-baselayout-data", "3.4.3-r2", "alpine-baselayout", "x86_64", "apk"),
    ]
    assert pkgs[0].files == ("/lib", "/lib/ld-musl-x86_64.so.1", "/lib/libc.musl-x86_64.so.1")
    assert "/usr/share/udhcpc/default.script" in pkgs[1].files and "/bin/busybox" in pkgs[1].files
    assert "\n\n".join(p.raw for p in pkgs) + "\n" == text


@pytest.mark.parametrize("text, message", [
    ("P:a\nnot a line\n", "line 2: not a 'K:value'"),
    ("V:1\n", "without a 'P:'"),
    ("P:a\nR:file\n", "before any 'F:'"),
])
def test_malformed(text, message):
    with pytest.raises(PackageDatabaseError, match=message):
        parse_apk_installed(text, "installed")


def test_paths_cannot_escape_root():
    [p] = parse_apk_installed("P:a\nF:../../etc\nR:../shadow\n")
    assert p.files == ("/etc", "/shadow")
