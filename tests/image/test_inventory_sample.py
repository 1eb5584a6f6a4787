"""The inventory of the real nginx sample image, checked against its layer tarballs with tarfile."""

from __future__ import annotations

import json
import posixpath
import tarfile

import pytest

from trimcage.image.inventory import RootfsReader, inventory

pytestmark = [pytest.mark.samples, pytest.mark.slow]


@pytest.fixture
def nginx(request):
    """The nginx sample, through the suite's ``sample`` fixture when it exists, else built by samples.build."""
    try:
        sample = request.getfixturevalue("sample")
    except pytest.FixtureLookupError:
        from samples.build import ensure

        return ensure("nginx")
    return sample("nginx")


def _blob(outer: tarfile.TarFile, digest: str) -> tarfile.ExFileObject:
    algo, hexd = digest.split(":", 1)
    f = outer.extractfile(f"blobs/{algo}/{hexd}")
    assert f is not None
    return f


def _norm(name: str) -> str:
    return posixpath.normpath("/" + name.lstrip("/"))


def tar_tree(archive: str) -> tuple[dict[str, tarfile.TarInfo], set[str]]:
    """Flatten an oci-archive independently of trimcage: every layer in order, whiteouts applied.

    Also return the paths whose content starts with the ELF magic (hardlinks by their target).
    """
    tree: dict[str, tarfile.TarInfo] = {}
    magic: set[str] = set()
    with tarfile.open(archive) as outer:
        index = json.load(outer.extractfile("index.json"))  # type: ignore[arg-type]
        manifest = json.load(_blob(outer, index["manifests"][0]["digest"]))
        for layer in manifest["layers"]:
            members = []
            with tarfile.open(fileobj=_blob(outer, layer["digest"]), mode="r|*") as lt:
                for m in lt:
                    path = _norm(m.name)
                    members.append((path, m))
                    magic.discard(path)
                    if m.isreg() and lt.extractfile(m).read(4) == b"\x7fELF":  # type: ignore[union-attr]
                        magic.add(path)
                    elif m.islnk() and _norm(m.linkname) in magic:
                        magic.add(path)
            for path, m in members:  # deletions of this layer apply to lower layers only
                base, parent = posixpath.basename(path), posixpath.dirname(path)
                if base == ".wh..wh..opq":
                    for p in [p for p in tree if p.startswith(parent.rstrip("/") + "/")]:
                        del tree[p]
                elif base.startswith(".wh."):
                    gone = posixpath.join(parent, base[4:])
                    for p in [p for p in tree if p == gone or p.startswith(gone + "/")]:
                        del tree[p]
            for path, m in members:
                if not posixpath.basename(path).startswith(".wh."):
                    tree[path] = m
    return tree, magic & set(tree)


def test_nginx_inventory_against_the_layer_tarballs(nginx, shared_store):
    from trimcage.image.api import read_image
    from trimcage.image.extract import rootfs
    from trimcage.image.flatten import flatten

    s = nginx
    store = shared_store  # the session's store: the unpacked rootfs is shared with other tests
    image = read_image(f"oci-archive:{s.path}", store)
    index = flatten(image, store)
    inv = inventory(image, index, RootfsReader(rootfs(image, store)))
    j = inv.to_json()

    tree, elf_paths = tar_tree(str(s.path))
    tree.pop("/", None)
    assert j["files"] == sum(m.isreg() for m in tree.values())
    assert j["bytes"] == sum(m.size for m in tree.values() if m.isreg())
    assert j["symlinks"] == sum(m.issym() for m in tree.values())
    assert j["hardlinks"] == sum(m.islnk() for m in tree.values())
    assert j["directories"] - ("/" in index) == sum(m.isdir() for m in tree.values())
    suid = sorted(p for p, m in tree.items() if (m.isreg() or m.islnk()) and m.mode & 0o4000)
    sgid = sorted(p for p, m in tree.items() if (m.isreg() or m.islnk()) and m.mode & 0o2000)
    assert [i["path"] for i in j["setuid"]] == suid
    assert [i["path"] for i in j["setgid"]] == sgid
    assert {"/usr/bin/su", "/usr/bin/passwd", "/usr/bin/chsh", "/usr/bin/chfn", "/usr/bin/newgrp"} <= set(suid)

    assert j["image"]["layers"] == len(image.layers) and j["image"]["manifest_digest"] == image.manifest_digest
    assert j["config"]["entrypoint"] == ["/usr/sbin/nginx"] and j["config"]["stop_signal"] == "SIGQUIT"
    assert j["os"]["ID"] == "debian" and j["os"]["VERSION_ID"] == "12"
    shells = {posixpath.basename(i["path"]) for i in j["shells"]}
    assert {"dash", "bash", "sh"} <= shells
    pms = {posixpath.basename(i["path"]) for i in j["package_managers"]}
    assert {"apt", "apt-get", "dpkg"} <= pms
    pkgs = {p["name"]: p for p in j["packages"]}
    nginx = pkgs.get("nginx-light") or pkgs["nginx"]
    assert nginx["version"].startswith("1.22") and nginx["source"] == "nginx"
    assert pkgs["libc6"]["source"] == "glibc" and pkgs["dash"]["files"] > 0
    elf = {e["path"]: e["kind"] for e in j["elf_files"]}
    assert elf["/usr/sbin/nginx"] == "executable"
    assert elf[index.resolve("/lib/x86_64-linux-gnu/libz.so.1")] == "shared"
    assert set(elf) == elf_paths  # the same files start with the ELF magic in the tarballs
    assert j["elf_executables"] > 50 and j["shared_libraries"] > 50
    assert [a["name"] for a in j["login_accounts"]] == ["root"]
