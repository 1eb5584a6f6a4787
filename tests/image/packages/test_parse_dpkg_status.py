"""The dpkg status parser on fixtures copied from real Debian 12 databases."""

from __future__ import annotations

import pytest

from trimcage.image.interface import ImageError
from trimcage.image.packages import PackageDatabaseError, parse_dpkg_list, parse_dpkg_status

STATUS_D = "var/lib/dpkg/status.d"


def test_single(testdata):
    text = (testdata / STATUS_D / "single").read_text()
    [p] = parse_dpkg_status(text, "/var/lib/dpkg/status.d/single")
    assert (p.name, p.version, p.source, p.arch, p.ecosystem) == (
        "zlib1g", "1:1.2.13.dfsg-1+deb12u1", "zlib", "amd64", "deb")
    assert p.database == "/var/lib/dpkg/status.d/single"
    assert p.raw == text.rstrip("\n")  # the record verbatim, for honest database rewriting
    assert p.files == ()


def test_multiple_in_file_order_and_source_defaults_to_name(testdata):
    pkgs = parse_dpkg_status((testdata / STATUS_D / "multiple").read_bytes())
    assert [(p.name, p.source) for p in pkgs] == [("dash", "dash"), ("libc6", "glibc"), ("nginx-light", "nginx")]
    assert pkgs[2].version == "1.22.1-9+deb12u11"
    # raw paragraphs joined by blank lines give back the file
    assert "\n\n".join(p.raw for p in pkgs) + "\n" == (testdata / STATUS_D / "multiple").read_text()


def test_deinstalled_not_reported_and_source_version_stripped(testdata):
    text = (testdata / STATUS_D / "deinstall").read_text()
    pkgs = parse_dpkg_status(text)
    assert [(p.name, p.source) for p in pkgs] == [("libsystemd0", "systemd")]
    every = parse_dpkg_status(text, include_not_installed=True)
    assert [p.name for p in every] == ["libsystemd0", "cron"]


def test_corrupt_raises_naming_file_and_line(testdata):
    with pytest.raises(PackageDatabaseError, match=r"status\.d/corrupt: line 11: not a 'Field: value'"):
        parse_dpkg_status((testdata / STATUS_D / "corrupt").read_text(), "/var/lib/dpkg/status.d/corrupt")
    assert issubclass(PackageDatabaseError, ImageError)


@pytest.mark.parametrize("text, message", [
    (" leading continuation\n", "continuation line outside a field"),
    ("Version: 1\nStatus: install ok installed\n", "without a valid 'Package:'"),
    ("Package: a\nPackage: b\n", "repeated"),
    (b"Package: a\nVersion: \xff\n", "not UTF-8"),
    ("Package: two words\n", "without a valid 'Package:'"),
])
def test_malformed(text, message):
    with pytest.raises(PackageDatabaseError, match=message):
        parse_dpkg_status(text, "status")


def test_status_states():
    text = "\n\n".join(f"Package: p{i}\nStatus: {s}\nVersion: 1" for i, s in enumerate([
        "install ok installed", "install ok unpacked", "install ok half-configured",
        "purge ok not-installed", "deinstall ok config-files", "install ok triggers-pending"]))
    assert [p.name for p in parse_dpkg_status(text)] == ["p0", "p1", "p2", "p5"]
    # no Status field (distroless status.d) counts as installed; empty text, no packages
    assert [p.name for p in parse_dpkg_status("Package: x\nVersion: 1\n")] == ["x"]
    assert parse_dpkg_status("") == [] and parse_dpkg_status("\n\n") == []


def test_crlf_and_field_case():
    [p] = parse_dpkg_status("package: a\r\nVERSION: 2\r\nStatus: install ok installed\r\n")
    assert (p.name, p.version) == ("a", "2")


def test_list_and_md5sums(testdata):
    assert parse_dpkg_list("/.\n/usr\n/usr/lib//x\n\n/usr/lib/x\n") == ("/usr", "/usr/lib/x")
    files = parse_dpkg_list((testdata / STATUS_D / "single.md5sums").read_text())
    assert "/lib/x86_64-linux-gnu/libz.so.1.2.13" in files and len(files) == 4
    with pytest.raises(PackageDatabaseError, match="md5sums"):
        parse_dpkg_list("garbage line\n", "x.md5sums")
