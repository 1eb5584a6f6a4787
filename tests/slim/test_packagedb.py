"""Honest package databases: which packages stay, and what their records say."""

from trimcage.image.interface import DIR, REG, SYMLINK, Entry, Index
from trimcage.image.packages.interface import Package
from trimcage.slim.packagedb import package_is_kept, rewrite_databases

STATUS = ("Package: a\nStatus: install ok installed\nVersion: 1\n\n"
          "Package: b\nStatus: install ok installed\nVersion: 2\n\n")


def index():
    es = [Entry("/lib", SYMLINK, 0o777, link="usr/lib"), Entry("/usr", DIR, 0o755), Entry("/usr/lib", DIR, 0o755),
          Entry("/usr/lib/liba.so", REG, 0o644, size=3), Entry("/usr/bin", DIR, 0o755),
          Entry("/usr/bin/b", REG, 0o755, size=3), Entry("/var", DIR, 0o755), Entry("/var/lib", DIR, 0o755),
          Entry("/var/lib/dpkg", DIR, 0o755), Entry("/var/lib/dpkg/status", REG, 0o644, size=len(STATUS)),
          Entry("/var/lib/dpkg/info", DIR, 0o755),
          Entry("/var/lib/dpkg/info/a.list", REG, 0o644, size=40),
          Entry("/var/lib/dpkg/info/b.list", REG, 0o644, size=40)]
    return Index({e.path: e for e in es})


def pkgs():
    raw_a, raw_b = STATUS.split("\n\n")[:2]
    return [Package("a", "1", "a", "amd64", "deb", ("/lib", "/usr/lib", "/usr/lib/liba.so"), raw_a,
                    "/var/lib/dpkg/status"),
            Package("b", "2", "b", "amd64", "deb", ("/lib", "/usr/bin", "/usr/bin/b"), raw_b,
                    "/var/lib/dpkg/status")]


def test_a_symlinked_directory_does_not_keep_a_package():
    idx = index()
    a, b = pkgs()
    kept = {"/lib", "/usr", "/usr/lib", "/usr/lib/liba.so"}
    assert package_is_kept(a, idx, kept) and not package_is_kept(b, idx, kept)


def test_status_and_lists_are_cut_to_kept_packages_and_files():
    idx = index()
    files = {"/var/lib/dpkg/info/a.list": b"/.\n/lib\n/usr/lib\n/usr/lib/liba.so\n/usr/lib/gone.so\n",
             "/var/lib/dpkg/info/b.list": b"/.\n/lib\n/usr/bin/b\n", "/var/lib/dpkg/status": STATUS.encode()}
    rw = rewrite_databases(pkgs(), idx, files.__getitem__, {"/lib", "/usr", "/usr/lib", "/usr/lib/liba.so"})
    assert [p.name for p in rw.kept] == ["a"] and [p.name for p in rw.removed] == ["b"]
    assert rw.files["/var/lib/dpkg/status"].decode() == STATUS.split("\n\n")[0] + "\n\n"
    assert rw.files["/var/lib/dpkg/info/a.list"] == b"/.\n/lib\n/usr/lib\n/usr/lib/liba.so\n"
    assert "/var/lib/dpkg/info/b.list" not in rw.files
