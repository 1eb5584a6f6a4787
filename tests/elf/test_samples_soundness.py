"""Soundness on every sample image: each syscall strace observes while the sample
runs its probes (services) or runs to completion (jobs) is in the static set."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.elf.strace_util import observed_syscalls

pytestmark = [pytest.mark.samples, pytest.mark.root, pytest.mark.slow]

NAMES = ["nginx", "redis", "memcached", "postgres", "flask", "registry", "hello-static"]


def _sandboxed(pid: int, timeout: float = 90.0) -> int | None:
    """A descendant of ``pid`` living in another network namespace (the sandbox), or None."""
    mine = os.readlink("/proc/self/ns/net")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        todo = [pid]
        while todo:
            p = todo.pop()
            try:
                if p != pid and os.readlink(f"/proc/{p}/ns/net") != mine:
                    return p
                for t in os.listdir(f"/proc/{p}/task"):
                    todo += [int(k) for k in open(f"/proc/{p}/task/{t}/children").read().split()]
            except OSError:
                continue
        time.sleep(0.1)
    return None


def _run_traced(name, meta, root, config, tmp_path) -> str:
    from samples.build import bwrap_command, probe_in_netns

    out = tmp_path / "strace.txt"
    cmd = ["strace", "-f", "-qq", "-o", str(out), "-e", "trace=all", *bwrap_command(root, config)]
    if meta["kind"] == "job":
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert meta["expect_output"] in cp.stdout, cp.stderr
        return out.read_text()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        inner = _sandboxed(proc.pid)
        assert inner, f"{name}: sandbox did not start"
        pending = list(meta["probes"])
        deadline = time.monotonic() + 120
        detail = ""
        while pending and time.monotonic() < deadline and proc.poll() is None:
            ok, detail = probe_in_netns(inner, pending[0])
            if ok:
                pending.pop(0)
            else:
                time.sleep(0.3)
        assert not pending, f"{name}: probe failed: {detail}"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    return out.read_text()


@pytest.mark.parametrize("name", NAMES)
def test_sample_static_set_contains_strace(name, sample, shared_store, tmp_path):
    from trimcage.elf.api import analyze_root
    from trimcage.elf.interface import AnalyzeOptions
    from trimcage.image.api import read_image
    from trimcage.image.extract import rootfs
    from trimcage.image.flatten import flatten

    s = sample(name)
    image = read_image(s.reference, shared_store)
    index = flatten(image, shared_store)
    root = rootfs(image, shared_store)
    config = dict(image.runtime_config)
    a = analyze_root(root, index, config, AnalyzeOptions(), store=shared_store)
    assert a.entry_points and a.syscalls
    # the sample writes into its root: run a copy, never the cached extraction
    work = tmp_path / "root"
    subprocess.run(["cp", "-a", "--reflink=auto", str(root), str(work)], check=True)
    argv0 = (list(config.get("Entrypoint") or []) + list(config.get("Cmd") or []))[0]
    observed, _ = observed_syscalls(_run_traced(name, s.meta, work, config, tmp_path), argv0)
    assert observed, f"{name}: no syscalls observed after execve({argv0})"
    print(f"\n{name}: static {len(a.syscalls)} syscalls, strace observed {len(observed)}")
    missing = observed - set(a.syscalls)
    assert missing == set(), f"{name}: observed but not found statically: {sorted(missing)}"
    if name == "registry":
        assert any(o.kind == "go" for o in a.objects)
