"""The attack-surface inventory: pure helpers on real binaries, a built tree, a real image."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from trimcage.image.interface import DIR, HARDLINK, OCI_CONFIG, OCI_LAYER, REG, SYMLINK, Blob, Entry, Image, Index
from trimcage.image.inventory import RootfsReader, decode_capabilities, elf_kind, inventory, parse_os_release

C_MAIN = "int lib(void); int main(void) { return lib(); }\n"
C_LIB = "int lib(void) { return 0; }\n"


def _gcc(tmp: Path, *args: str) -> None:
    subprocess.run(["gcc", *args], cwd=tmp, check=True, capture_output=True)


@pytest.fixture(scope="module")
def elves(tmp_path_factory) -> dict[str, Path]:
    """ELF files compiled by gcc: PIE and static executables, a shared library, an object."""
    d = tmp_path_factory.mktemp("elves")
    (d / "main.c").write_text(C_MAIN)
    (d / "lib.c").write_text(C_LIB)
    _gcc(d, "-c", "-o", "lib.o", "lib.c")
    _gcc(d, "-shared", "-fPIC", "-o", "liblib.so", "lib.c")
    _gcc(d, "-pie", "-fPIE", "-o", "pie", "main.c", "lib.c")
    _gcc(d, "-no-pie", "-o", "nopie", "main.c", "lib.c")
    _gcc(d, "-static", "-o", "static", "main.c", "lib.c")
    return {n: d / n for n in ("lib.o", "liblib.so", "pie", "nopie", "static")}


def test_elf_kind_on_gcc_output(elves):
    kinds = {n: elf_kind(p.read_bytes()[:4096]) for n, p in elves.items()}
    assert kinds == {"lib.o": "relocatable", "liblib.so": "shared", "pie": "executable",
                     "nopie": "executable", "static": "executable"}
    # readelf agrees on the header type
    out = subprocess.run(["readelf", "-h", str(elves["liblib.so"])], capture_output=True, text=True).stdout
    assert "DYN" in out
    assert elf_kind(b"#!/bin/sh\n" + b"x" * 100) is None
    assert elf_kind(b"\x7fELF\x09") is None  # too short to classify: not counted as ELF
    assert elf_kind(b"\x7fELF\x02\x01" + b"\0" * 14) == "other"


@pytest.mark.root  # setcap needs CAP_SETFCAP
def test_decode_capabilities_matches_getcap(tmp_path):
    f = tmp_path / "ping"
    f.write_bytes(b"x")
    subprocess.run(["setcap", "cap_net_raw,cap_net_bind_service+ep", str(f)], check=True)
    raw = os.getxattr(f, "security.capability")
    caps = decode_capabilities(raw)
    assert caps["permitted"] == ["cap_net_bind_service", "cap_net_raw"] and caps["effective"] is True
    getcap = subprocess.run(["getcap", str(f)], capture_output=True, text=True, check=True).stdout
    assert all(c in getcap for c in caps["permitted"])
    assert decode_capabilities(b"\x01") == {"raw": "01"}


def test_parse_os_release():
    text = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n# c\nbad line\nVERSION_ID=\'12\'\n'
    assert parse_os_release(text) == {"PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)", "ID": "debian",
                                      "VERSION_ID": "12"}


# --- a tree built by the test, indexed as flattening would -----------------------


def _scan(root: Path) -> Index:
    """An Index of ``root`` read with lstat: types, modes, owners, sizes, xattrs, hardlinks."""
    entries = {"/": Entry(path="/", type=DIR, mode=0o755)}
    first: dict[tuple[int, int], str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            path = "/" + os.path.relpath(full, root)
            st = os.lstat(full)
            kw = dict(path=path, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid)
            xattrs = {} if stat.S_ISLNK(st.st_mode) else {
                k: os.getxattr(full, k) for k in os.listxattr(full) if k.startswith("security.")}
            if stat.S_ISDIR(st.st_mode):
                entries[path] = Entry(type=DIR, xattrs=xattrs, **kw)
            elif stat.S_ISLNK(st.st_mode):
                entries[path] = Entry(type=SYMLINK, link=os.readlink(full), **kw)
            elif (st.st_dev, st.st_ino) in first:
                entries[path] = Entry(type=HARDLINK, link=first[(st.st_dev, st.st_ino)], xattrs=xattrs, **kw)
            else:
                first[(st.st_dev, st.st_ino)] = path
                entries[path] = Entry(type=REG, size=st.st_size, xattrs=xattrs, **kw)
    return Index(entries)


def _image(runtime: dict) -> Image:
    cfg = {"architecture": "amd64", "os": "linux", "config": runtime}
    return Image(config_blob=Blob("sha256:" + "c" * 64, 100, OCI_CONFIG), config=cfg,
                 layers=(Blob("sha256:" + "a" * 64, 1234, OCI_LAYER), Blob("sha256:" + "b" * 64, 66, OCI_LAYER)),
                 manifest_digest="sha256:" + "d" * 64, name="example:1")


@pytest.fixture
def tree(tmp_path, elves) -> Path:
    r = tmp_path / "root"
    for d in ("usr/bin", "usr/sbin", "usr/lib", "etc", "tmp", "srv/drop", "var/lib/dpkg/info", "usr/share/x"):
        (r / d).mkdir(parents=True)
    (r / "bin").symlink_to("usr/bin")
    shutil.copy("/usr/bin/dash", r / "usr/bin/dash")
    (r / "usr/bin/sh").symlink_to("dash")
    (r / "usr/bin/myshell").symlink_to("/bin/dash")          # a shell by its target's name
    shutil.copy(elves["pie"], r / "usr/bin/app")
    shutil.copy(elves["liblib.so"], r / "usr/lib/liblib.so")
    os.link(r / "usr/lib/liblib.so", r / "usr/lib/liblib.so.1")  # a hardlink: content counted once
    for name in ("python3.11", "curl", "apt-get", "pip3"):
        (r / "usr/bin" / name).write_text("#!/bin/sh\nexit 0\n")
        (r / "usr/bin" / name).chmod(0o755)
    (r / "usr/share/x/bash").write_text("not a command\n")       # shell name, not executable
    (r / "usr/bin/su").write_bytes(elves["static"].read_bytes())
    (r / "usr/bin/su").chmod(0o4755)
    (r / "usr/sbin/unix_chkpwd").write_text("x")
    (r / "usr/sbin/unix_chkpwd").chmod(0o2755)
    (r / "usr/bin/ping").write_text("x")
    subprocess.run(["setcap", "cap_net_raw+ep", str(r / "usr/bin/ping")], check=True)
    (r / "tmp").chmod(0o1777)
    (r / "srv/drop").chmod(0o777)
    (r / "srv/drop/open").write_text("x")
    (r / "srv/drop/open").chmod(0o666)
    (r / "usr/lib/os-release").write_text('PRETTY_NAME="Test OS"\nID=test\n')
    (r / "etc/os-release").symlink_to("../usr/lib/os-release")
    (r / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/:/usr/sbin/nologin\n"
                                  "nobody:x:65534:65534::/nonexistent:/bin/false\nsync:x:4:65534::/bin:/bin/sync\n"
                                  "app:x:1000:1000::/home/app:\n")
    (r / "var/lib/dpkg/status").write_text(
        "Package: dash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 0.5.12-2\n\n"
        "Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n")
    (r / "var/lib/dpkg/info/dash.list").write_text("/.\n/usr\n/usr/bin\n/usr/bin/dash\n")
    return r


@pytest.mark.root  # the tree carries a file capability (setcap)
def test_inventory_of_a_built_tree(tree):
    idx = _scan(tree)
    runtime = {"Entrypoint": ["/usr/bin/app"], "Cmd": ["-v"], "User": "1000:1000", "Env": ["PATH=/usr/bin"],
               "WorkingDir": "/srv", "ExposedPorts": {"8080/tcp": {}, "53/udp": {}}, "Volumes": {"/data": {}},
               "Labels": {"b": "2", "a": "1"}, "StopSignal": "SIGQUIT"}
    inv = inventory(_image(runtime), idx, RootfsReader(tree), reference="oci-archive:x.tar")
    j = inv.to_json()
    assert json.loads(json.dumps(j)) == j
    assert j["config"] == {"entrypoint": ["/usr/bin/app"], "cmd": ["-v"], "user": "1000:1000",
                           "env": ["PATH=/usr/bin"], "workdir": "/srv", "exposed_ports": ["53/udp", "8080/tcp"],
                           "volumes": ["/data"], "labels": {"a": "1", "b": "2"}, "stop_signal": "SIGQUIT"}
    assert j["image"]["layers"] == 2 and j["image"]["compressed_size"] == 1300
    assert j["image"]["reference"] == "oci-archive:x.tar" and j["image"]["image_id"] == "sha256:" + "c" * 64
    assert j["os"] == {"PRETTY_NAME": "Test OS", "ID": "test"}
    # counts against an independent walk of the tree
    walk = [os.lstat(os.path.join(dp, n)) for dp, dns, fns in os.walk(tree) for n in dns + fns]
    inodes = {(s.st_dev, s.st_ino): s.st_size for s in walk if stat.S_ISREG(s.st_mode)}
    assert j["files"] == len(inodes) and j["bytes"] == sum(inodes.values())
    assert j["hardlinks"] == 1
    assert j["directories"] == 1 + sum(stat.S_ISDIR(s.st_mode) for s in walk)
    assert j["symlinks"] == sum(stat.S_ISLNK(s.st_mode) for s in walk)
    elf = {e["path"]: e["kind"] for e in j["elf_files"]}
    assert elf == {"/usr/bin/app": "executable", "/usr/bin/dash": "executable", "/usr/bin/su": "executable",
                   "/usr/lib/liblib.so": "shared", "/usr/lib/liblib.so.1": "shared"}
    assert (j["elf_executables"], j["shared_libraries"]) == (3, 2)
    assert j["shells"] == [{"path": "/usr/bin/dash"}, {"path": "/usr/bin/myshell", "target": "/usr/bin/dash"},
                           {"path": "/usr/bin/sh", "target": "/usr/bin/dash"}]
    assert [i["path"] for i in j["interpreters"]] == ["/usr/bin/python3.11"]
    assert [i["path"] for i in j["package_managers"]] == ["/usr/bin/apt-get", "/usr/bin/pip3"]
    assert [i["path"] for i in j["network_tools"]] == ["/usr/bin/curl"]
    assert [(i["path"], i["mode"]) for i in j["setuid"]] == [("/usr/bin/su", "4755")]
    assert [(i["path"], i["mode"]) for i in j["setgid"]] == [("/usr/sbin/unix_chkpwd", "2755")]
    assert j["file_capabilities"] == [{"path": "/usr/bin/ping", "permitted": ["cap_net_raw"],
                                       "inheritable": [], "effective": True}]
    assert [(w["path"], w["sticky"]) for w in j["world_writable"]] == [
        ("/srv/drop", False), ("/srv/drop/open", False), ("/tmp", True)]
    assert [(a["name"], a["shell"]) for a in j["login_accounts"]] == [("root", "/bin/bash"), ("app", "/bin/sh")]
    assert j["packages"] == [{"name": "dash", "version": "0.5.12-2", "source": "dash", "arch": "amd64",
                              "ecosystem": "deb", "files": 3}]
    # deterministic: same input, same output
    again = inventory(_image(runtime), _scan(tree), RootfsReader(tree), reference="oci-archive:x.tar")
    assert json.dumps(again.to_json(), sort_keys=True) == json.dumps(j, sort_keys=True)


@pytest.mark.root
def test_reader_refuses_symlinks_and_dotdot(tree, tmp_path):
    reader = RootfsReader(tree)
    assert reader("/usr/lib/os-release").startswith(b"PRETTY_NAME")
    assert reader.head("/usr/bin/dash", 4) == b"\x7fELF"
    for bad in ("/etc/os-release", "/bin/dash", "/../root/etc/passwd"):
        with pytest.raises(OSError):
            reader(bad)


def test_empty_image_has_no_os_and_no_packages(tmp_path):
    (tmp_path / "r").mkdir()
    inv = inventory(_image({}), _scan(tmp_path / "r"), RootfsReader(tmp_path / "r"))
    j = inv.to_json()
    assert j["os"] is None and j["packages"] == [] and j["files"] == 0 and j["config"]["entrypoint"] is None
    assert j["image"]["reference"] == "example:1"


def test_hostile_runtime_config_does_not_crash(tmp_path):
    (tmp_path / "r").mkdir()
    img = _image({})
    for rc in ([1, 2], {"Entrypoint": "not a list", "Labels": ["x"], "ExposedPorts": "80", "Env": [1]}):
        bad = Image(config_blob=img.config_blob, config={"config": rc, "os": ["x"]}, layers=img.layers,
                    manifest_digest=img.manifest_digest)
        j = inventory(bad, _scan(tmp_path / "r"), RootfsReader(tmp_path / "r")).to_json()
        assert j["config"]["entrypoint"] is None and j["config"]["labels"] == {} and j["config"]["exposed_ports"] == []
