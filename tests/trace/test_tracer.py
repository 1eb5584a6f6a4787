"""`trimcage trace` under the embedded runtime, on gcc-built programs and a real nginx."""

import json
import threading

import pytest

from tests.trace.conftest import NGINX_CONFIG, config_file, leftovers, tc

pytestmark = pytest.mark.root


def trace_json(tmp_path, root, cfg, *extra, name="out"):
    out = tmp_path / name
    cp = tc("trace", "--rootfs", str(root), "--image-config", config_file(tmp_path, cfg), "-o", str(out),
            *extra)
    assert cp.returncode == 0, cp.stderr
    return json.loads((out / "trace.json").read_text())


def test_ten_thousand_distinct_files_all_recorded(tmp_path, tiny_root):
    for i in range(10000):
        (tiny_root / "data" / f"f{i:05d}").write_bytes(b"")
    doc = trace_json(tmp_path, tiny_root, {"Entrypoint": ["/bin/t", "files", "10000"]})
    seen = {p for p in doc["files"] if p.startswith("/data/f")}
    assert seen == {f"/data/f{i:05d}" for i in range(10000)}
    assert all(doc["files"][p]["ops"] == [{"op": "open_read", "ok": True}] for p in seen)
    assert doc["kind"] == "job" and doc["exit_code"] == 0 and doc["output"] == "opened=10000\n"
    assert doc["syscalls"].get("openat", 0) + doc["syscalls"].get("open", 0) >= 10000 and doc["syscalls"]["close"] >= 10000
    assert doc["strace"]["skipped"] == 0
    assert leftovers() == []


def test_fork_exec_chain_dirfds_and_failures(tmp_path, tiny_root):
    doc = trace_json(tmp_path, tiny_root, {"Entrypoint": ["/bin/t", "chain", "3"]})
    procs = doc["processes"]
    assert [p["argv"] for p in procs] == [["/bin/t", "chain", "3"], ["t", "chain", "2"],
                                          ["t", "chain", "1"], ["t", "chain", "0"]]
    by_pid = {p["pid"]: p for p in procs}
    for p in procs[1:]:
        assert by_pid[p["ppid"]]["argv"][2] == str(int(p["argv"][2]) + 1)  # parent is one level up
    f = doc["files"]
    assert {"op": "open_read", "ok": True} in f["/etc/hostname"]["ops"]          # openat(dfd, "hostname")
    assert {"op": "open_read", "ok": True} in f["/etc/sub/deep.txt"]["ops"]      # openat(subdfd, "deep.txt")
    assert f["/nonexistent/x"]["ops"] == [{"op": "open_read", "ok": False, "errno": "ENOENT"}]
    assert {"op": "open_read", "ok": True} in f["/data/rel.txt"]["ops"]          # after chdir
    assert {"op": "exec", "ok": True} in f["/bin/t"]["ops"]
    assert doc["writes"] == ["/data/new.txt"]
    assert not any(p.startswith("/.trimcage") for p in f)
    assert leftovers() == []


def test_entrypoint_exiting_at_once_is_a_job_with_its_code(tmp_path, tiny_root):
    doc = trace_json(tmp_path, tiny_root, {"Entrypoint": ["/bin/t", "exit", "5"]})
    assert doc["kind"] == "job" and doc["exit_code"] == 5
    assert doc["processes"][0]["exit_code"] == 5


def test_missing_binary_and_never_ready_probe(tmp_path, tiny_root):
    cfg = config_file(tmp_path, {"Entrypoint": ["/bin/missing"]})
    cp = tc("trace", "--rootfs", str(tiny_root), "--image-config", cfg, "-o", str(tmp_path / "o1"))
    assert cp.returncode == 2 and cp.stderr.count("\n") == 1 and "not found" in cp.stderr
    cfg = config_file(tmp_path, {"Entrypoint": ["/bin/t"], "Cmd": ["sleep", "60"]})
    cp = tc("trace", "--rootfs", str(tiny_root), "--image-config", cfg, "-o", str(tmp_path / "o2"),
            "--probe", "tcp://127.0.0.1:81", "--ready-timeout", "2")
    assert cp.returncode == 3, cp.stderr
    assert cp.stderr.count("\n") == 1 and "not ready after 2s" in cp.stderr
    cp = tc("trace", "--rootfs", str(tiny_root), "--image-config", cfg, "-o", str(tmp_path / "o3"),
            "--probe", "http://127.0.0.1:80/", "--ready-timeout", "5", "--", "exit", "0")
    assert cp.returncode == 3 and "exited before it was ready" in cp.stderr
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2" / "trace.json").exists()
    assert leftovers() == []


@pytest.mark.slow
@pytest.mark.samples
def test_nginx_trace(tmp_path, nginx_root):
    doc = trace_json(tmp_path, nginx_root, NGINX_CONFIG, "--probe", "http://127.0.0.1:80/")
    f = doc["files"]
    for path in ("/etc/nginx/nginx.conf", "/usr/sbin/nginx", "/usr/lib/x86_64-linux-gnu/libc.so.6",
                 "/lib64/ld-linux-x86-64.so.2", "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
                 "/var/www/html/index.nginx-debian.html"):
        assert any(o["ok"] for o in f[path]["ops"]), path
    assert {"family": "AF_INET", "address": "0.0.0.0", "port": 80} in doc["listening"]
    assert {"op": "bind", "port": 80, "capability": "CAP_NET_BIND_SERVICE", "ok": True} in doc["privileged_ops"]
    assert doc["probes"][0]["ok"] and doc["probes"][0]["status"] == 200
    assert doc["symlinks"]["/lib64"] == "usr/lib64"
    assert any(p["uid"] == 33 for p in doc["processes"])  # workers switched to www-data
    assert "/var/lib/nginx/body" in doc["writes"]        # nginx creates its temp dirs
    # no event lost at the stop: every process's exit was recorded
    assert all(p["exit_code"] is not None or p["killed_by"] for p in doc["processes"])
    assert leftovers() == []


@pytest.mark.slow
@pytest.mark.samples
def test_two_nginx_traces_at_once_on_port_80(tmp_path, nginx_root):
    results = {}

    def one(name):
        out = tmp_path / name
        results[name] = (tc("trace", "--rootfs", str(nginx_root), "--image-config",
                            config_file(tmp_path, NGINX_CONFIG), "-o", str(out)), out)

    threads = [threading.Thread(target=one, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, (cp, out) in results.items():
        assert cp.returncode == 0, cp.stderr
        doc = json.loads((out / "trace.json").read_text())
        assert doc["probes"] == [{"probe": {"http": "http://127.0.0.1:80/"}, "ok": True, "status": 200,
                                  "digest": doc["probes"][0]["digest"], "error": None}]
    assert leftovers() == []


@pytest.mark.samples
@pytest.mark.slow
def test_nginx_sample_image_with_its_probes(tmp_path, sample):
    s = sample("nginx")
    probes = tmp_path / "probes.json"
    probes.write_text(json.dumps(s.meta["probes"]))
    out = tmp_path / "out"
    cp = tc("trace", f"oci-archive:{s.path}", "-o", str(out), "--probe-file", str(probes), "--json")
    assert cp.returncode == 0, cp.stderr
    doc = json.loads((out / "trace.json").read_text())
    assert json.loads(cp.stdout) == doc
    assert all(p["ok"] for p in doc["probes"]) and len(doc["probes"]) == len(s.meta["probes"])
    assert "/etc/nginx/nginx.conf" in doc["files"] and "/usr/sbin/nginx" in doc["files"]
    # the sample links its logs to /dev/stdout and /dev/stderr: not writes to the root file system
    assert doc["symlinks"]["/var/log/nginx/access.log"] == "/dev/stdout"
    assert "/var/log/nginx/access.log" not in doc["writes"]
    assert leftovers() == []


def test_trace_as_non_root_user_drops_the_user_switch(tmp_path, tiny_root):
    doc = trace_json(tmp_path, tiny_root, {"Entrypoint": ["/bin/t", "id"], "User": "nobody"})
    assert doc["output"] == "uid=65534 gid=65534\n"
    assert doc["user"] == {"uid": 65534, "gid": 65534}
    [proc] = doc["processes"]
    assert proc["uid"] == 65534 and proc["id_changes"] == []   # setpriv's setresuid is runtime setup
    assert "setresuid" not in doc["syscalls"] and "setgroups" not in doc["syscalls"]
    assert all(not p.startswith("/.trimcage") for p in doc["files"])


@pytest.mark.parametrize("cfg", [{"Entrypoint": "/bin/t"}, {"Entrypoint": ["/bin/t"], "Env": {"A": "1"}},
                                 {"Cmd": [1, 2]}, {}])
def test_hostile_image_config_is_a_clean_error(tmp_path, tiny_root, cfg):
    cp = tc("trace", "--rootfs", str(tiny_root), "--image-config", config_file(tmp_path, cfg),
            "-o", str(tmp_path / "o"))
    assert cp.returncode == 2 and cp.stderr.count("\n") == 1, cp.stderr
    assert not (tmp_path / "o").exists()
