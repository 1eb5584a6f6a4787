"""`trimcage run` under the embedded runtime: config, capabilities, errors, no leftovers."""

import os
import re
from pathlib import Path

import pytest

from tests.trace.conftest import config_file, leftovers, tc

pytestmark = pytest.mark.root


def test_exit_code_cmd_override_and_user(tmp_path, tiny_root):
    cfg = config_file(tmp_path, {"Entrypoint": ["/bin/t"], "Cmd": ["exit", "7"]})
    assert tc("run", "--rootfs", str(tiny_root), "--image-config", cfg).returncode == 7
    assert tc("run", "--rootfs", str(tiny_root), "--image-config", cfg, "--", "exit", "3").returncode == 3
    cp = tc("run", "--rootfs", str(tiny_root), "--image-config", cfg, "--user", "nobody", "--", "id")
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout == "uid=65534 gid=65534\n"
    assert leftovers() == []


def test_cap_drop_all_forbids_port_80(tmp_path, tiny_root):
    cfg = config_file(tmp_path, {"Entrypoint": ["/bin/t", "bind", "80"]})
    cp = tc("run", "--rootfs", str(tiny_root), "--image-config", cfg)
    assert "bind=0 errno=0" in cp.stdout, cp.stderr
    cp = tc("run", "--rootfs", str(tiny_root), "--image-config", cfg, "--cap-drop", "ALL")
    assert "bind=-1 errno=13" in cp.stdout             # EACCES without CAP_NET_BIND_SERVICE
    cp = tc("run", "--rootfs", str(tiny_root), "--image-config", cfg, "--cap-drop", "ALL",
            "--cap-add", "NET_BIND_SERVICE")
    assert "bind=0 errno=0" in cp.stdout
    assert leftovers() == []


def test_read_only_root_and_cache_untouched(tmp_path, tiny_root):
    cfg = config_file(tmp_path, {"Entrypoint": ["/bin/t", "chain", "0"]})
    cp = tc("run", "--rootfs", str(tiny_root), "--image-config", cfg)
    assert re.search(r"^creat=\d+ errno=0$", cp.stdout, re.M), cp.stderr + cp.stdout
    assert not (tiny_root / "data" / "new.txt").exists()   # the cached rootfs is never modified
    cp = tc("run", "--rootfs", str(tiny_root), "--image-config", cfg, "--read-only")
    assert "creat=-1 errno=30" in cp.stdout               # EROFS
    assert leftovers() == []


def test_missing_binary_is_one_line_exit_2(tmp_path, tiny_root):
    cfg = config_file(tmp_path, {"Entrypoint": ["/bin/nonexistent"]})
    cp = tc("run", "--rootfs", str(tiny_root), "--image-config", cfg)
    assert cp.returncode == 2
    assert cp.stderr.count("\n") == 1 and "'/bin/nonexistent' not found" in cp.stderr
    cp = tc("run", "--rootfs", str(tiny_root), "--image-config", cfg, "--user", "nosuchuser")
    assert cp.returncode == 2 and "nosuchuser" in cp.stderr
    assert leftovers() == []


def test_sigterm_is_forwarded_to_the_entrypoint(tmp_path, tiny_root):
    import signal
    import subprocess
    import sys
    import time

    from tests.trace.conftest import RUN_ENV, RUN_TMP, RUNNER
    cfg = config_file(tmp_path, {"Entrypoint": ["/bin/t", "sleep", "60"]})
    p = subprocess.Popen([sys.executable, "-c", RUNNER, "run", "--rootfs", str(tiny_root), "--image-config", cfg],
                         env=RUN_ENV)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not any(
            RUN_TMP in Path(f"/proc/{d}/cmdline").read_text(errors="replace")
            for d in os.listdir("/proc") if d.isdigit() and os.path.exists(f"/proc/{d}/cmdline")):
        time.sleep(0.05)
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    rc = p.wait(90)
    assert rc == 128 + signal.SIGTERM      # a finished sleep would exit 0: the signal reached /bin/t
    assert leftovers() == []


def test_image_symlinks_cannot_redirect_mounts_to_the_host(tmp_path, tiny_root):
    """/etc, /tmp and the workdir are links climbing out of the root: the mounts stay inside."""
    import shutil
    import tempfile
    victim = Path(tempfile.mkdtemp(prefix="trimcage-victim-", dir="/var/tmp"))  # not under a linked /tmp
    depth = "../" * (len(tiny_root.parts) + 2)
    shutil.rmtree(tiny_root / "tmp")
    (tiny_root / "tmp").symlink_to(f"{depth}{victim.relative_to('/')}/tmp")
    (tiny_root / "work").symlink_to(f"{depth}{victim.relative_to('/')}/work")
    (tiny_root / "etc" / "hosts").symlink_to(f"{depth}{victim.relative_to('/')}/hosts")
    cfg = config_file(tmp_path, {"Entrypoint": ["/bin/t", "exit", "0"], "WorkingDir": "/work"})
    cp = tc("run", "--rootfs", str(tiny_root), "--image-config", cfg)
    assert cp.returncode == 0, cp.stderr
    try:
        assert list(victim.iterdir()) == []
    finally:
        shutil.rmtree(victim)
    assert leftovers() == []


def test_non_root_user_private_workdir_and_tight_profile(tmp_path, tiny_root):
    """Like runc: user switch and chdir happen before the filter, so a profile that
    allows neither setresuid nor chdir still runs a non-root entrypoint in a 0700 home."""
    import json

    home = tiny_root / "data" / "home"
    home.mkdir()
    os.chown(home, 65534, 65534)
    os.chmod(home, 0o700)
    cfg = config_file(tmp_path, {"Entrypoint": ["/bin/t", "id"], "User": "nobody", "WorkingDir": "/data/home"})
    names = ["arch_prctl", "brk", "execve", "exit", "exit_group", "fstat", "newfstatat", "write", "writev",
             "mmap", "munmap", "mprotect", "getuid", "getgid", "set_tid_address", "set_robust_list", "rseq",
             "prlimit64", "readlink", "uname", "getrandom", "rt_sigprocmask", "rt_sigaction", "ioctl",
             "close", "read", "openat", "access"]
    profile = tmp_path / "tight.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                                   "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]}))
    cp = tc("run", "--rootfs", str(tiny_root), "--image-config", cfg, "--cap-drop", "ALL",
            "--seccomp", str(profile))
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout == "uid=65534 gid=65534\n"
    without_getuid = [n for n in names if n != "getuid"]
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                                   "syscalls": [{"names": without_getuid, "action": "SCMP_ACT_ALLOW"}]}))
    cp = tc("run", "--rootfs", str(tiny_root), "--image-config", cfg, "--cap-drop", "ALL",
            "--seccomp", str(profile))
    assert cp.stdout == "uid=-1 gid=65534\n"      # the filter does apply to the entrypoint
    assert leftovers() == []


def test_dev_shm_is_writable_for_every_user(tmp_path, tiny_root):
    cfg = config_file(tmp_path, {"Entrypoint": ["/bin/t", "shm"], "User": "nobody"})
    cp = tc("run", "--rootfs", str(tiny_root), "--image-config", cfg)
    assert re.search(r"^shm=\d+ errno=0$", cp.stdout, re.M), cp.stdout + cp.stderr
    assert leftovers() == []
