"""The keep-set over a hand-made index: closure rules, accounts, setuid."""

from __future__ import annotations

import pytest

from trimcage.image.interface import DIR, HARDLINK, REG, SYMLINK, Entry, Index
from trimcage.slim.interface import SlimError, SlimOptions
from trimcage.slim.keepset import compute_keepset

PASSWD = b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/:/usr/sbin/nologin\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\nredis:x:100:101::/var/lib/redis:/usr/sbin/nologin\n"
GROUP = b"root:x:0:\ndaemon:x:1:\nwww-data:x:33:\nredis:x:101:\nshadow:x:42:\nadm:x:4:redis,daemon\n"


def make_index():
    d = lambda p, **kw: Entry(p, DIR, 0o755, **kw)  # noqa: E731
    f = lambda p, mode=0o644, **kw: Entry(p, REG, mode, size=10, **kw)  # noqa: E731
    entries = [
        Entry("/bin", SYMLINK, 0o777, link="usr/bin"), d("/usr"), d("/usr/bin"), d("/usr/sbin"), d("/etc"), d("/lib"), d("/tmp", uid=0),
        d("/var"), d("/var/www", uid=33, gid=33), d("/usr/lib"), d("/usr/lib/x86_64-linux-gnu"),
        Entry("/lib64", SYMLINK, 0o777, link="usr/lib64"), d("/usr/lib64"),
        Entry("/usr/lib64/ld-linux-x86-64.so.2", SYMLINK, 0o777, link="../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
        f("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", 0o755),
        Entry("/usr/lib/x86_64-linux-gnu/libc.so.6", SYMLINK, 0o777, link="libc-2.36.so"),
        f("/usr/lib/x86_64-linux-gnu/libc-2.36.so", 0o755),
        f("/usr/sbin/nginx", 0o755), f("/usr/bin/su", 0o4755), f("/usr/bin/passwd", 0o4755),
        f("/usr/bin/dash", 0o755), Entry("/usr/bin/sh", SYMLINK, 0o777, link="dash"),
        f("/etc/passwd"), f("/etc/group"), f("/etc/nsswitch.conf"), f("/etc/unused.conf"),
        f("/var/www/index.html", uid=33, gid=33), Entry("/var/www/copy.html", HARDLINK, 0o644, link="/var/www/index.html"),
        d("/srv"), d("/srv/app"), f("/srv/app/a.py"), d("/srv/app/pkg"), f("/srv/app/pkg/b.py"),
    ]
    return Index({e.path: e for e in entries})


def reader(path):
    return {"/etc/passwd": PASSWD, "/etc/group": GROUP}.get(path, b"")


def test_symlink_chains_parents_and_base_files_are_kept():
    idx = make_index()
    ks = compute_keepset(idx, reader, {}, options=SlimOptions(mode="static"),
                         static_files=["/lib64/ld-linux-x86-64.so.2", "/usr/sbin/nginx",
                                       "/usr/lib/x86_64-linux-gnu/libc.so.6"])
    keep = set(ks.paths)
    assert {"/lib64", "/usr/lib64/ld-linux-x86-64.so.2", "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            "/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc-2.36.so"} <= keep
    assert {"/usr", "/usr/lib", "/usr/lib64", "/usr/sbin", "/etc"} <= keep
    assert {"/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/tmp"} <= keep
    assert not {"/usr/bin/su", "/usr/bin/sh", "/usr/bin/dash", "/etc/unused.conf", "/srv"} & keep
    assert ks.reasons["/usr/sbin/nginx"] == "static" and ks.reasons["/usr/lib64"] == "parent"


def test_hardlink_keeps_its_target_and_include_is_recursive():
    idx = make_index()
    ks = compute_keepset(idx, reader, {}, options=SlimOptions(mode="dynamic", includes=("/srv/app",)),
                         traced_files=["/var/www/copy.html"])
    keep = set(ks.paths)
    assert "/var/www/index.html" in keep and ks.reasons["/var/www/index.html"] == "hardlink"
    assert {"/srv/app/a.py", "/srv/app/pkg/b.py", "/srv/app/pkg"} <= keep


def test_accounts_cut_to_users_in_use():
    idx = make_index()
    ks = compute_keepset(idx, reader, {"User": "redis"}, options=SlimOptions(mode="dynamic"),
                         traced_files=["/var/www/index.html"])
    passwd = ks.overlay["/etc/passwd"].decode().splitlines()
    assert [l.split(":")[0] for l in passwd] == ["root", "www-data", "redis"]
    group = ks.overlay["/etc/group"].decode().splitlines()
    assert [l.split(":")[0] for l in group] == ["root", "www-data", "redis", "adm"]
    assert "adm:x:4:redis" in group  # members cut to kept accounts


def test_setuid_removed_unless_executed():
    idx = make_index()
    opts = SlimOptions(mode="dynamic")
    ks = compute_keepset(idx, reader, {}, options=opts, traced_files=["/usr/bin/su", "/usr/bin/passwd"],
                         executed=["/usr/bin/su"])
    assert ks.setuid_kept == ("/usr/bin/su",)
    assert ks.setuid_removed == ("/usr/bin/passwd",)


def test_keep_shell_and_missing_inputs():
    idx = make_index()
    ks = compute_keepset(idx, reader, {}, options=SlimOptions(mode="static", keep_shell=True), static_files=[])
    assert {"/bin", "/usr/bin/sh", "/usr/bin/dash"} <= set(ks.paths)
    with pytest.raises(SlimError):
        compute_keepset(idx, reader, {}, options=SlimOptions(mode="combined"), static_files=[])
    with pytest.raises(SlimError, match="no such path"):
        compute_keepset(idx, reader, {}, options=SlimOptions(mode="static", includes=("/nope",)), static_files=[])


def test_created_paths_keep_their_nearest_existing_directory():
    idx = make_index()
    ks = compute_keepset(idx, reader, {}, options=SlimOptions(mode="dynamic"),
                         traced_files=["/srv/app/pkg/cache/new.tmp", "/nonexistent/x"])
    assert "/srv/app/pkg" in ks.paths and ks.reasons["/srv/app/pkg"] == "trace"
    assert "/srv/app/a.py" not in ks.paths


def test_static_mode_keeps_the_entry_points_source_family_without_docs():
    from trimcage.image.packages.interface import Package

    idx = make_index()
    extra = [Entry("/usr/share", DIR, 0o755), Entry("/usr/share/doc", DIR, 0o755),
             Entry("/usr/share/doc/nginx", DIR, 0o755), Entry("/usr/share/doc/nginx/README", REG, 0o644),
             Entry("/var/lib", DIR, 0o755), Entry("/var/lib/nginx", DIR, 0o700),
             Entry("/etc/nginx", DIR, 0o755), Entry("/etc/nginx/nginx.conf", REG, 0o644)]
    idx = Index({**{p: idx[p] for p in idx}, **{e.path: e for e in extra}})
    pkgs = [Package("nginx-light", "1.22", "nginx", "amd64", "deb", ("/usr/sbin/nginx",)),
            Package("nginx-common", "1.22", "nginx", "all", "deb",
                    ("/etc/nginx/nginx.conf", "/usr/share/doc/nginx/README", "/var/lib/nginx")),
            Package("passwd", "1", "shadow", "amd64", "deb", ("/usr/bin/passwd",))]
    ks = compute_keepset(idx, reader, {}, options=SlimOptions(mode="static"), static_files=["/usr/sbin/nginx"],
                         packages=pkgs, entry_points=["/usr/sbin/nginx"])
    assert {"/etc/nginx/nginx.conf", "/var/lib/nginx"} <= set(ks.paths)
    assert "/usr/share/doc/nginx/README" not in ks.paths and "/usr/bin/passwd" not in ks.paths


def test_accounts_named_by_kept_configs_survive_the_cut():
    idx = make_index()
    conf = Entry("/etc/app.conf", REG, 0o644, size=30)
    idx = Index({**{p: idx[p] for p in idx}, conf.path: conf})
    files = {"/etc/passwd": PASSWD, "/etc/group": GROUP, "/etc/app.conf": b"user www-data;\nworker daemons;\n"}
    def read(path):
        if path not in files:
            raise FileNotFoundError(path)
        return files[path]

    ks = compute_keepset(idx, read, {}, options=SlimOptions(mode="static"), static_files=["/etc/app.conf"])
    names = [l.split(":")[0] for l in ks.overlay["/etc/passwd"].decode().splitlines()]
    assert names == ["root", "www-data"]     # "daemons" is not the account "daemon"


def test_paths_named_by_the_apps_configs_are_kept_recursively_but_not_general_dirs():
    from trimcage.image.packages.interface import Package

    idx = make_index()
    extra = [Entry("/etc/app", DIR, 0o755), Entry("/etc/app/site.conf", REG, 0o644, size=60),
             Entry("/var/www/html", DIR, 0o755), Entry("/var/www/html/index.html", REG, 0o644, size=5),
             Entry("/etc/app/more.conf", REG, 0o644, size=9), Entry("/etc/other.conf", REG, 0o644, size=9)]
    idx = Index({**{p: idx[p] for p in idx}, **{e.path: e for e in extra}})
    files = {"/etc/passwd": PASSWD, "/etc/group": GROUP,
             "/etc/app/site.conf": b"root /var/www/html;\ninclude /etc/app/more.conf;\nbin /usr/bin;\n",
             "/etc/app/more.conf": b"x /srv/app\n", "/etc/other.conf": b"y /var/www/html\n"}

    def read(path):
        if path not in files:
            raise FileNotFoundError(path)
        return files[path]

    pkgs = [Package("app", "1", "app", "amd64", "deb", ("/etc/app/site.conf", "/usr/sbin/nginx"))]
    ks = compute_keepset(idx, read, {}, options=SlimOptions(mode="static"), static_files=["/usr/sbin/nginx"],
                         packages=pkgs, entry_points=["/usr/sbin/nginx"])
    keep = set(ks.paths)
    assert {"/var/www/html/index.html", "/etc/app/more.conf", "/srv/app/a.py", "/srv/app/pkg/b.py"} <= keep
    assert "/usr/bin" in keep and "/usr/bin/su" not in keep      # a general dir is not kept whole
    assert ks.reasons["/var/www/html/index.html"] == "config"
    assert "/etc/other.conf" not in keep                          # not the application's configuration


def test_command_line_paths_and_their_config_dirs_are_kept():
    idx = make_index()
    extra = [Entry("/etc/db", DIR, 0o755), Entry("/etc/db/main", DIR, 0o755),
             Entry("/etc/db/main/db.conf", REG, 0o644, size=30), Entry("/etc/db/main/conf.d", DIR, 0o755),
             Entry("/etc/db/main/conf.d/extra.conf", REG, 0o644, size=9)]
    idx = Index({**{p: idx[p] for p in idx}, **{e.path: e for e in extra}})
    files = {"/etc/passwd": PASSWD, "/etc/group": GROUP, "/etc/db/main/db.conf": b"include_dir 'conf.d'\n",
             "/etc/db/main/conf.d/extra.conf": b"x /srv/app\n"}

    def read(path):
        if path not in files:
            raise FileNotFoundError(path)
        return files[path]

    cfg = {"Entrypoint": ["/usr/sbin/nginx"], "Cmd": ["-c", "config_file=/etc/db/main/db.conf"]}
    ks = compute_keepset(idx, read, cfg, options=SlimOptions(mode="static"), static_files=["/usr/sbin/nginx"])
    assert {"/etc/db/main/db.conf", "/etc/db/main/conf.d/extra.conf", "/srv/app/a.py"} <= set(ks.paths)


def test_paths_compiled_into_the_entry_program_are_kept():
    from trimcage.slim.keepset import binary_named_paths

    idx = make_index()
    extra = [Entry("/var/lib", DIR, 0o755), Entry("/var/lib/app", DIR, 0o755),
             Entry("/var/lib/app/state", REG, 0o644, size=1)]
    idx = Index({**{p: idx[p] for p in idx}, **{e.path: e for e in extra}})
    blob = b"\x7fELF....\x00/var/lib/app\x00/etc/nginx/missing.conf\x00not/a/path\x00/usr/sbin/nginx\x00"
    files = {"/usr/sbin/nginx": blob, "/etc/passwd": PASSWD, "/etc/group": GROUP}

    def read(path):
        if path not in files:
            raise FileNotFoundError(path)
        return files[path]

    assert binary_named_paths(idx, read, ["/usr/sbin/nginx"]) == {"/var/lib/app", "/usr/sbin/nginx"}
    ks = compute_keepset(idx, read, {}, options=SlimOptions(mode="static"), static_files=["/usr/sbin/nginx"],
                         entry_points=["/usr/sbin/nginx"])
    assert "/var/lib/app/state" in ks.paths
