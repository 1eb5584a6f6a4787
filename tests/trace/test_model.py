"""Building trace.json from hand-written strace lines."""

from trimcage.trace.model import build
from trimcage.trace.parse_strace import parse_text

SETUP = ('1 execve("/.trimcage/ld.so", ["/.trimcage/ld.so", "--library-path"], 0x1 /* 2 vars */) = 0\n'
         '1 openat(-100</>, "/.trimcage/lib/libc.so.6", 0x80000) = 3</.trimcage/lib/libc.so.6>\n'
         '1 setresuid(33, 33, 33) = 0\n')


def doc(lines: str, **kw):
    return build(parse_text(SETUP + lines), **kw)


def test_runtime_setup_is_dropped():
    d = doc('1 execve("/usr/sbin/app", ["app"], 0x1 /* 2 vars */) = 0\n'
            '1 openat(-100</>, "/etc/app.conf", 0x80000) = 3</etc/app.conf>\n')
    assert set(d["files"]) == {"/usr/sbin/app", "/etc/app.conf"}
    assert d["syscalls"] == {"execve": 1, "openat": 1}
    assert d["processes"][0]["exe"] == "/usr/sbin/app"


def test_dirfd_cwd_and_failures():
    d = doc('1 execve("/bin/t", ["t"], 0x1) = 0\n'
            '1 openat(3</etc>, "sub/x", 0) = 4</etc/sub/x>\n'
            '1 openat(-100</data>, "rel.txt", 0) = 5</data/rel.txt>\n'
            '1 openat(-100</data>, "/nope", 0) = -1 ENOENT (No such file or directory)\n'
            '1 chdir("/var") = 0\n'
            '1 stat("y", 0x7ff) = 0\n'
            '1 newfstatat(4</etc/sub/x>, "", {st_mode=0100644}, 0x1000) = 0\n'
            '1 openat(-100</data>, "/data/new", 0x241, 0644) = 6</data/new>\n', workdir="/")
    f = d["files"]
    assert f["/etc/sub/x"]["ops"] == [{"op": "open_read", "ok": True}, {"op": "stat", "ok": True}]
    assert "/data/rel.txt" in f and "/var/y" in f
    assert f["/nope"]["ops"] == [{"op": "open_read", "ok": False, "errno": "ENOENT"}]
    assert {o["op"] for o in f["/data/new"]["ops"]} == {"create", "open_write"}
    assert d["writes"] == ["/data/new"]


def test_fork_exec_chain_and_clone_fs_cwd():
    d = doc('1 execve("/bin/sh", ["sh"], 0x1) = 0\n'
            '1 chdir("/srv") = 0\n'
            '2 execve("/bin/t", ["t", "x"], 0x1) = 0\n'      # child's event before the parent's return
            '1 clone(child_stack=NULL, flags=0x1200000|17, child_tidptr=0x7f) = 2\n'
            '2 open("rel", 0) = -1 ENOENT (No such file or directory)\n'
            '2 +++ exited with 4 +++\n')
    procs = {p["pid"]: p for p in d["processes"]}
    assert procs[2]["ppid"] == 1 and procs[2]["exe"] == "/bin/t" and procs[2]["argv"] == ["t", "x"]
    assert procs[2]["exit_code"] == 4
    assert "/srv/rel" in d["files"]
    assert d["arguments"]["clone"] == {"0": [0x1200011]}


def test_network_and_privileged_ops():
    d = doc('1 execve("/srv/app", ["app"], 0x1) = 0\n'
            '1 socket(0x2, 0x1|0x80000, 0) = 3<socket:[10]>\n'
            '1 bind(3<socket:[10]>, {sa_family=0x2, sin_port="\\x00\\x50", sin_addr="\\x00\\x00\\x00\\x00"}, 16) = 0\n'
            '1 listen(3<socket:[10]>, 511) = 0\n'
            '1 socket(0x11, 0x3, htons(768)) = -1 EPERM (Operation not permitted)\n'
            '1 socket(0x1, 0x1, 0) = 5<socket:[12]>\n'
            '1 connect(5<socket:[12]>, {sa_family=0x1, sun_path="/run/x.sock"}, 110) = -1 ENOENT (No such file or directory)\n'
            '1 setgid(33) = 0\n1 setuid(33) = 0\n'
            '1 chown("/var/lib/app", 33, 0) = 0\n')
    assert d["listening"] == [{"family": "AF_INET", "address": "0.0.0.0", "port": 80}]
    ops = {(p["op"], p["capability"]) for p in d["privileged_ops"]}
    assert {("bind", "CAP_NET_BIND_SERVICE"), ("socket", "CAP_NET_RAW"), ("setuid", "CAP_SETUID"),
            ("setgid", "CAP_SETGID"), ("chown", "CAP_CHOWN")} <= ops
    assert d["arguments"]["socket"] == {"0": [1, 2, 17], "1": [1, 3, 0x80001]}
    assert d["files"]["/run/x.sock"]["ops"] == [{"op": "connect", "ok": False, "errno": "ENOENT"}]
    assert d["processes"][0]["uid"] == 33
