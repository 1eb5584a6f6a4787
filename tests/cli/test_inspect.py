"""``trimcage inspect`` as a user runs it: real archives, bad inputs, exit codes."""

from __future__ import annotations

import json

import pytest

KEYS = {"config", "os", "files", "directories", "symlinks", "bytes", "elf_files", "shells", "package_managers",
        "setuid", "setgid", "world_writable", "packages", "interpreters", "network_tools", "file_capabilities",
        "login_accounts", "image"}


@pytest.fixture
def nginx(request):
    """The nginx sample, through the suite's ``sample`` fixture when it exists, else built by samples.build."""
    try:
        sample = request.getfixturevalue("sample")
    except pytest.FixtureLookupError:
        from samples.build import ensure

        return ensure("nginx")
    return sample("nginx")


@pytest.mark.parametrize("make_ref", [
    lambda tmp: f"oci-archive:{tmp}/missing.tar",
    lambda tmp: str(tmp / "missing.tar"),
    lambda tmp: (tmp / "garbage.tar").write_bytes(b"\x1f\x8b not really gzip" * 100) and f"oci-archive:{tmp}/garbage.tar",
    lambda tmp: (tmp / "garbage.tar").write_bytes(b"\x00" * 10 + b"junk" * 500) and str(tmp / "garbage.tar"),
    lambda tmp: "nosuchtransport:whatever",
])
def test_bad_input_exits_2_with_one_line(cli, tmp_path, make_ref):
    cp = cli("inspect", make_ref(tmp_path), "--json", env={"TRIMCAGE_HOME": str(tmp_path / "home")})
    assert cp.returncode == 2, cp.stderr
    assert cp.stdout == ""
    lines = cp.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trimcage inspect: ") and "Traceback" not in cp.stderr


@pytest.mark.samples
@pytest.mark.slow
def test_inspect_nginx_sample(cli, nginx, tmp_path):
    s = nginx
    env: dict[str, str] = {}  # the suite's TRIMCAGE_HOME: reuses the sample's unpacked rootfs
    cp = cli("inspect", f"oci-archive:{s.path}", "--json", env=env, check=True)
    j = json.loads(cp.stdout)
    assert KEYS <= set(j)
    assert j["image"]["reference"] == f"oci-archive:{s.path}"
    assert any(p["name"] in ("nginx", "nginx-light") for p in j["packages"])
    assert "/usr/bin/su" in [i["path"] for i in j["setuid"]]
    # same input, byte-identical output (the extraction is cached the second time)
    assert cli("inspect", f"oci-archive:{s.path}", "--json", env=env, check=True).stdout == cp.stdout

    text = cli("inspect", f"oci-archive:{s.path}", env=env, check=True).stdout
    assert text.lstrip()[0] != "{"  # a table, not JSON
    assert "Debian GNU/Linux 12" in text and "/usr/sbin/nginx" in text
    assert f"{j['files']} regular" in text
    assert "more)" in text  # long lists are cut: "(+N more)"
    first = text.splitlines()[0].split(None, 1)
    assert first == ["image", f"oci-archive:{s.path}"]


def test_render_text_cuts_lists_and_escapes_control_characters():
    from trimcage.cli.inspect import render_text

    item = lambda p: {"path": p}  # noqa: E731
    j = {"image": {"reference": "oci-archive:x.tar", "manifest_digest": "sha256:m", "image_id": "sha256:i",
                   "os": "linux", "architecture": "amd64", "layers": 2, "compressed_size": 3 << 20},
         "config": {"entrypoint": ["/app"], "cmd": None, "user": "", "workdir": "", "env": [], "exposed_ports": [],
                    "volumes": [], "labels": {"evil": "\x1b[2J"}, "stop_signal": ""},
         "os": None, "files": 3, "bytes": 2048, "directories": 1, "symlinks": 0, "hardlinks": 0, "other": 0,
         "elf_executables": 1, "shared_libraries": 0, "elf_files": [],
         "shells": [item(f"/bin/s{i}") for i in range(9)], "interpreters": [], "package_managers": [],
         "network_tools": [], "setuid": [], "setgid": [], "file_capabilities": [],
         "world_writable": [{"path": "/tmp", "sticky": True}], "login_accounts": [], "packages": []}
    text = render_text(j)
    assert "\x1b" not in text and "\\x1b[2J" in text
    rows = {line.split("  ")[0]: line.split("  ", 1)[1].strip() for line in text.splitlines()}
    assert rows["shells (9)"].endswith("/bin/s5 (+3 more)")
    assert rows["world-writable (1)"] == "/tmp (sticky)"
    assert rows["layers"] == "2 (3.0 MiB compressed)" and rows["platform"] == "linux/amd64"
    assert rows["files"].startswith("3 regular (2.0 KiB)")


def _tiny_image(tmp_path, status: str) -> str:
    """A one-layer image built with trimcage's writer from a small tree holding a dpkg status."""
    import shutil
    from pathlib import Path

    from trimcage.image.api import write_image
    from trimcage.image.store import Store
    from trimcage.image.writer import build_image, scan_directory

    root = tmp_path / "tree"
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "etc").mkdir()
    shutil.copy("/usr/bin/dash", root / "usr/bin/dash")
    (root / "usr/bin/sh").symlink_to("dash")
    (root / "usr/bin/loop").symlink_to("loop2")  # a symlink loop is skipped, not followed forever
    (root / "usr/bin/loop2").symlink_to("loop")
    (root / "etc/passwd").symlink_to("../../../../etc/shadow")  # resolves inside the image: missing
    (root / "var/lib/dpkg/status").write_text(status)
    store = Store(tmp_path / "build-store")
    image = build_image(store, Path(root), scan_directory(Path(root)).iter_entries(), {"Cmd": ["/usr/bin/sh"]})
    out = tmp_path / "tiny.tar"
    write_image(f"oci-archive:{out}", image, store)
    return f"oci-archive:{out}"


def test_inspect_tiny_image(cli, tmp_path):
    ref = _tiny_image(tmp_path, "Package: dash\nStatus: install ok installed\nVersion: 0.5.12-2\n")
    cp = cli("inspect", ref, "--json", env={"TRIMCAGE_HOME": str(tmp_path / "home")}, check=True)
    j = json.loads(cp.stdout)
    assert KEYS <= set(j)
    assert [p["name"] for p in j["packages"]] == ["dash"]
    assert j["shells"] == [{"path": "/usr/bin/dash"}, {"path": "/usr/bin/sh", "target": "/usr/bin/dash"}]
    assert j["login_accounts"] == [] and j["os"] is None
    assert (j["files"], j["symlinks"], j["elf_executables"]) == (2, 4, 1)
    assert j["config"]["cmd"] == ["/usr/bin/sh"]


def test_inspect_corrupt_package_database_exits_2(cli, tmp_path):
    ref = _tiny_image(tmp_path, "Package: dash\nStatus: install ok installed\ngarbage\n")
    cp = cli("inspect", ref, env={"TRIMCAGE_HOME": str(tmp_path / "home")})
    assert cp.returncode == 2 and cp.stdout == ""
    assert cp.stderr.strip() == ("trimcage inspect: /var/lib/dpkg/status: line 3: "
                                 "not a 'Field: value' line: 'garbage'")
