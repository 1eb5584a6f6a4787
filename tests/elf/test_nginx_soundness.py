"""Soundness on a real Debian rootfs: every syscall nginx makes serving a GET under
strace is in the static set, and every shared object it opens is in ``files``."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from trimcage.elf.api import DirCache, analyze_root
from trimcage.elf.fsview import FsView
from trimcage.elf.interface import AnalyzeOptions
from tests.elf.conftest import index_of
from tests.elf.strace_util import observed_syscalls

pytestmark = [pytest.mark.root, pytest.mark.slow]

NGINX_CONF = """daemon off;
user root;
master_process on;
worker_processes 1;
error_log /tmp/error.log;
pid /tmp/nginx.pid;
events {{ worker_connections 64; }}
http {{
  access_log /tmp/access.log;
  client_body_temp_path /tmp/cb; proxy_temp_path /tmp/px; fastcgi_temp_path /tmp/fc;
  uwsgi_temp_path /tmp/uw; scgi_temp_path /tmp/sc;
  server {{ listen 127.0.0.1:{port}; location / {{ return 200 "ok\\n"; }} }}
}}
"""


@pytest.fixture(scope="session")
def nginx_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ngx") / "root"
    subprocess.run(["mmdebstrap", "--quiet", "--variant=apt", "--include=nginx-light", "bookworm", str(root)],
                   check=True, capture_output=True, timeout=900)
    return root


@pytest.fixture(scope="session")
def nginx_analysis(nginx_root, tmp_path_factory):
    cfg = {"Entrypoint": ["nginx", "-g", "daemon off;"],
           "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}
    return analyze_root(nginx_root, index_of(nginx_root), cfg, AnalyzeOptions(),
                        store=DirCache(tmp_path_factory.mktemp("ngxcache")))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _trace_nginx(root: Path, tmp: Path) -> str:
    port = _free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(port=port))
    out = tmp / "strace.txt"
    proc = subprocess.Popen(
        ["strace", "-f", "-qq", "-o", str(out), "-e", "trace=all",
         "bwrap", "--bind", str(root), "/", "--proc", "/proc", "--dev", "/dev", "--unshare-all",
         "--share-net", "--die-with-parent", "--tmpfs", "/run", "--tmpfs", "/tmp",
         "--ro-bind", str(conf), "/etc/trimcage-test.conf",
         "/usr/sbin/nginx", "-c", "/etc/trimcage-test.conf"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        body = None
        for _ in range(100):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None:
                    raise AssertionError(f"nginx exited: {proc.stderr.read().decode()}")
                time.sleep(0.1)
        assert body == b"ok\n"
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
    return out.read_text()


def test_nginx_static_set_contains_strace(nginx_root, nginx_analysis, tmp_path):
    a = nginx_analysis
    assert [e.path for e in a.entry_points] == ["/usr/sbin/nginx"]
    assert len(a.syscalls) <= 150
    observed, opened = observed_syscalls(_trace_nginx(nginx_root, tmp_path), "/usr/sbin/nginx")
    assert "accept4" in observed or "accept" in observed      # the GET was served
    assert observed - set(a.syscalls) == set()
    # every shared object opened: its final path and each symlink on the way are in files
    fs = FsView(nginx_root, index_of(nginx_root))
    libs = {p for p in opened if ".so" in os.path.basename(p)}
    assert libs
    for p in sorted(libs):
        final, links = fs.resolve_chain(p)
        assert final in a.files, p
        assert set(links) <= set(a.files), p


def test_nginx_closure_and_arguments(nginx_analysis):
    a = nginx_analysis
    objs = {o.path: o for o in a.objects}
    assert objs["/usr/sbin/nginx"].kind == "pie"
    assert "/usr/lib/x86_64-linux-gnu/libc.so.6" in objs
    assert not a.unresolved_libraries
    # dlopen targets: NSS modules from nsswitch.conf, the echo module from modules-enabled
    assert any("libnss_files" in p for p in objs)
    assert any(p.startswith("/usr/lib/nginx/modules/") for p in objs)
    # nginx takes the socket family from the parsed listen address (memory), so the
    # family stays open and the reason names the blocking site
    assert "socket" in a.syscalls
    assert "socket" in a.arguments or "/usr/sbin/nginx+0x" in a.open_arguments["socket"]["0"]
    assert a.arguments["prctl"]["0"]
