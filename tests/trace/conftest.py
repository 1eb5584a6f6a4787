"""Fixtures of the trace tests: a tiny static rootfs, an nginx rootfs, the CLI, leak checks."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

RUNNER = """
import sys
from trimcage.cli import _Parser, main
from trimcage.cli import run as r, trace as t
import trimcage.cli as c
def build_parser():
    p = _Parser(prog="trimcage")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    r.add_parser(sub); t.add_parser(sub)
    return p
c.build_parser = build_parser
sys.exit(main(sys.argv[1:]))
"""


# The runs of this test session keep their run dirs here, so the leak checks see only
# this session's runs even when other suites use the runtime at the same time.
RUN_TMP = tempfile.mkdtemp(prefix="trimcage-tests-")
atexit.register(shutil.rmtree, RUN_TMP, True)
RUN_ENV = {**os.environ, "TMPDIR": RUN_TMP}


def tc(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Run ``trimcage run|trace ...`` in a subprocess (only the trace stage's subcommands
    are loaded, so the test does not depend on other stages' CLI modules)."""
    return subprocess.run([sys.executable, "-c", RUNNER, *args], capture_output=True, text=True,
                          timeout=timeout, env=RUN_ENV, **kw)


@pytest.fixture(scope="session")
def static_t(tmp_path_factory) -> Path:
    """The test program, compiled once with ``gcc -static``."""
    out = tmp_path_factory.mktemp("bin") / "t"
    subprocess.run(["gcc", "-static", "-O1", "-o", str(out), str(HERE / "fixtures" / "t.c")], check=True)
    return out


@pytest.fixture
def tiny_root(tmp_path, static_t) -> Path:
    """A root file system holding only /bin/t, /etc/{hostname,passwd,group,sub/deep.txt}, /data."""
    root = tmp_path / "root"
    for d in ("bin", "etc/sub", "data", "tmp"):
        (root / d).mkdir(parents=True)
    shutil.copy(static_t, root / "bin" / "t")
    (root / "etc" / "hostname").write_text("tiny\n")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
    (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    (root / "etc" / "sub" / "deep.txt").write_text("deep\n")
    (root / "data" / "rel.txt").write_text("rel\n")
    return root


def config_file(tmp_path: Path, cfg: dict) -> str:
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    return str(p)


@pytest.fixture(scope="session")
def nginx_root(sample) -> Path:
    """The nginx sample image's root file system, extracted (once, cached) by the image stage.

    Tests using it are marked ``samples``. The tree is shared: runs never modify it (overlay).
    """
    from trimcage.image.api import read_image
    from trimcage.image.extract import rootfs
    from trimcage.image.store import open_store

    store = open_store()
    return rootfs(read_image(f"oci-archive:{sample('nginx').path}", store), store)


NGINX_CONFIG = {"Entrypoint": ["nginx", "-g", "daemon off;"], "ExposedPorts": {"80/tcp": {}},
                "StopSignal": "SIGQUIT"}


def leftovers() -> list[str]:
    """Processes, mounts, run dirs and netns left by this session's runs (empty when clean)."""
    bad = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if RUN_TMP in cmd:
            bad.append(f"process {pid}: {cmd[:120]}")
    mounts = Path("/proc/self/mountinfo").read_text()
    bad += [f"mount: {line[:120]}" for line in mounts.splitlines() if "trimcage-run-" in line]
    bad += [f"dir: {p}" for p in Path(RUN_TMP).glob("trimcage-run-*")]
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    bad += [f"netns: {line}" for line in ns.splitlines() if "trimcage" in line]
    return bad
