"""The static Python import closure (``trimcage.elf.scripts``).

Unit tests run on hand-made trees (indexed with ``scan_directory``); the
proof runs the flask sample's app from ONLY the closure (plus python3's
shared libraries) under bubblewrap, and shows that one missing file of the
closure breaks it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from trimcage.elf import scripts
from trimcage.elf.scripts import ScriptClosure, parse_argv, python_closure
from trimcage.image.writer import scan_directory

PY = "/usr/bin/python3"


def write(root: Path, files: dict[str, str | bytes]) -> None:
    for path, content in files.items():
        p = root / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content if isinstance(content, bytes) else content.encode())


def fake_python(root: Path, extra: dict[str, str | bytes] | None = None) -> None:
    """A Debian-like python3.11 layout (nothing in it is ever executed)."""
    write(root, {
        "/usr/bin/python3.11": b"\x7fELF not really\x00PyInit_math\x00PyInit_array\x00",
        "/usr/lib/python3.11/os.py": "import abc\nimport sys\nimport stat\nif 0:\n    import nt\n"
                                     "from posixpath import join\nimport os.path\n",
        "/usr/lib/python3.11/stat.py": "try:\n    from _stat import *\nexcept ImportError:\n    pass\n",
        "/usr/lib/python3.11/abc.py": "from _abc import get_cache_token\n",
        "/usr/lib/python3.11/posixpath.py": "import os\nimport genericpath\n",
        "/usr/lib/python3.11/genericpath.py": "import os, stat\n",
        "/usr/lib/python3.11/__pycache__/posixpath.cpython-311.pyc": b"pyc",
        "/usr/lib/python3.11/__pycache__/unused.cpython-311.pyc": b"pyc",
        "/usr/lib/python3.11/site.py": "import os\nimport _sitebuiltins\n# dist-packages (Debian)\n",
        "/usr/lib/python3.11/_sitebuiltins.py": "import sys\n",
        "/usr/lib/python3.11/codecs.py": "import builtins\nimport sys\nfrom _codecs import *\n",
        "/usr/lib/python3.11/io.py": "import abc\nimport _io\n",
        "/usr/lib/python3.11/_collections_abc.py": "from abc import ABCMeta\n",
        "/usr/lib/python3.11/encodings/__init__.py": "import codecs\n",
        "/usr/lib/python3.11/encodings/utf_8.py": "import codecs\n",
        "/usr/lib/python3.11/encodings/cp_weird.py": "import _codecs_weird\n",
        "/usr/lib/python3.11/heapq.py": "def f():\n    pass\nif __name__ == '__main__':\n    import doctest\n",
        "/usr/lib/python3.11/doctest.py": "",
        "/usr/lib/python3.11/unused_stdlib.py": "",
        "/usr/lib/python3.11/lib-dynload/_codecs_weird.cpython-311-x86_64-linux-gnu.so":
            b"\x7fELF\x00PyInit__codecs_weird\x00heapq\x00no_such_thing\x00",
        **(extra or {}),
    })
    os.symlink("python3.11", root / "usr/bin/python3")


def closure(root: Path, argv: list[str], env: dict[str, str] | None = None, cwd: str = "/") -> ScriptClosure:
    return python_closure(root, scan_directory(root), PY, argv, env or {}, cwd=cwd)


APP = """\
import importlib
import pkg
import json_like.sub
from lib import submod, not_a_module
from lib.deeper import *
try:
    import optional_missing
except ImportError:
    optional_missing = None
import hard_missing
import evil
importlib.import_module("dynmod")
__import__(NAME)

def later():
    import inside_function
"""


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    fake_python(root, {
        "/app/app.py": APP,
        "/app/lib/__init__.py": "",
        "/app/lib/submod.py": "from . import sibling\nfrom .. import toplevel_escape\n",
        "/app/lib/sibling.py": "from .deeper.leaf import X\n",
        "/app/lib/deeper/__init__.py": "__all__ = ['leaf', 'helper']\n",
        "/app/lib/deeper/leaf.py": "X = 1\n",
        "/app/lib/deeper/helper.py": "import broken_dep\n",
        "/app/lib/deeper/unused.py": "",
        "/app/lib/broken.py": "def (:\n",
        "/app/dynmod.py": "import lib.broken\n",
        "/app/inside_function.py": "",
        "/app/json_like/sub.py": "",  # a namespace package
        "/usr/lib/python3/dist-packages/pkg/__init__.py": "from .core import run\n",
        "/usr/lib/python3/dist-packages/pkg/core.py": "def run(): pass\n",
        "/usr/lib/python3/dist-packages/pkg/plugins/never_imported.py": "import plugin_dep\n",
        "/usr/lib/python3/dist-packages/pkg/_speed.cpython-311-x86_64-linux-gnu.so": b"\x7fELF\x00",
        "/usr/lib/python3/dist-packages/pkg-1.0.dist-info/METADATA": "Name: pkg\n",
        "/usr/lib/python3/dist-packages/pkg-1.0.dist-info/top_level.txt": "pkg\n",
        "/usr/lib/python3/dist-packages/other-2.0.dist-info/top_level.txt": "other\n",
        "/usr/lib/python3/dist-packages/other/__init__.py": "",
        "/usr/lib/python3/dist-packages/plugin_dep.py": "",
        "/usr/lib/python3/dist-packages/broken_dep.py": "",
        "/usr/lib/python3/dist-packages/extra.pth": "# comment\nextradir\nimport pthmod\nnot_there\n",
        "/usr/lib/python3/dist-packages/extradir/fromextra.py": "",
        "/usr/lib/python3/dist-packages/pthmod.py": "",
    })
    os.symlink("/etc/shadow", root / "app" / "evil.py")
    (root / "usr/lib/python3/dist-packages/aaa_data.py").write_text("")
    os.link(root / "usr/lib/python3/dist-packages/aaa_data.py", root / "usr/lib/python3/dist-packages/pkg/hl.py")
    return root


def test_imports_followed_and_resolved(tree):
    c = closure(tree, ["python3", "/app/app.py"], cwd="/app")
    f = set(c.files)
    assert c.sys_path[:4] == ("/app", "/usr/lib/python311.zip", "/usr/lib/python3.11",
                              "/usr/lib/python3.11/lib-dynload")
    assert c.sys_path[4:] == ("/usr/lib/python3/dist-packages", "/usr/lib/python3/dist-packages/extradir")
    # the script, relative imports, `from x import submodule`, `from x import *` with __all__
    for p in ("/app/app.py", "/app/lib/__init__.py", "/app/lib/submod.py", "/app/lib/sibling.py",
              "/app/lib/deeper/__init__.py", "/app/lib/deeper/leaf.py", "/app/lib/deeper/helper.py",
              "/app/dynmod.py", "/app/inside_function.py", "/app/json_like/sub.py", "/app/json_like"):
        assert p in f, p
    assert "/app/lib/deeper/unused.py" not in f  # application code: module granularity
    # the syntax error: file kept, a note, its imports unknown
    assert "/app/lib/broken.py" in f
    assert any("/app/lib/broken.py" in n and "does not parse" in n for n in c.notes)
    # startup: os, the symlinked interpreter, encodings kept whole (and its extension's strings)
    for p in ("/usr/bin/python3", "/usr/bin/python3.11", "/usr/lib/python3.11/os.py",
              "/usr/lib/python3.11/posixpath.py", "/usr/lib/python3.11/__pycache__/posixpath.cpython-311.pyc",
              "/usr/lib/python3.11/encodings/cp_weird.py", "/usr/lib/python3.11/site.py",
              "/usr/lib/python3.11/lib-dynload/_codecs_weird.cpython-311-x86_64-linux-gnu.so",
              "/usr/lib/python3.11/heapq.py"):
        assert p in f, p
    assert "/usr/lib/python3.11/lib-dynload/_codecs_weird.cpython-311-x86_64-linux-gnu.so" in c.extensions
    assert "/usr/lib/python3.11/unused_stdlib.py" not in f
    assert "/usr/lib/python3.11/__pycache__/unused.cpython-311.pyc" not in f
    assert "/usr/lib/python3.11/doctest.py" not in f  # only under `if __name__ == "__main__"` of heapq
    # third-party: whole package (its never-imported module and what that imports), metadata, .pth
    for p in ("/usr/lib/python3/dist-packages/pkg/plugins/never_imported.py",
              "/usr/lib/python3/dist-packages/plugin_dep.py",
              "/usr/lib/python3/dist-packages/pkg-1.0.dist-info/METADATA",
              "/usr/lib/python3/dist-packages/extra.pth", "/usr/lib/python3/dist-packages/pthmod.py",
              "/usr/lib/python3/dist-packages/broken_dep.py"):
        assert p in f, p
    assert "/usr/lib/python3/dist-packages/pkg/_speed.cpython-311-x86_64-linux-gnu.so" in c.extensions
    # a hardlink inside a kept package: the file it shares content with (first in path order) is kept too
    assert scan_directory(tree)["/usr/lib/python3/dist-packages/pkg/hl.py"].type == "hardlink"
    assert {"/usr/lib/python3/dist-packages/pkg/hl.py", "/usr/lib/python3/dist-packages/aaa_data.py"} <= f
    assert not any("other" in p for p in f)
    # nothing silently dropped
    assert {"hard_missing", "optional_missing", "evil", "nt"} <= set(c.unresolved)
    assert "_stat" not in c.unresolved and "_abc" not in c.unresolved  # core built-ins
    assert "math" not in c.unresolved and "array" not in c.unresolved and "_io" not in c.unresolved
    assert "no_such_thing" not in c.unresolved  # strings of extensions are candidates, not imports
    assert any("hard_missing" in n and "/app/app.py:10" in n for n in c.notes)
    assert any("guarded" in n and "optional_missing" in n for n in c.notes)
    assert any("/app/app.py:13" in n and "computed name" in n for n in c.notes)
    assert any("beyond the top-level package" in n for n in c.notes)
    assert all(p.startswith("/") for p in c.files)
    assert c == closure(tree, ["python3", "/app/app.py"], cwd="/app")  # deterministic


def test_hostile_symlinks_never_read_on_the_host(tree, tmp_path):
    secret = tmp_path / "secret.py"
    secret.write_text("import leaked_from_the_host\n")
    os.symlink(secret, tree / "app" / "evil2.py")  # an absolute host path, resolved in the image: missing
    (tree / "app" / "app.py").write_text("import evil\nimport evil2\nimport lib.submod\n")
    (tree / "app" / "lib" / "submod.py").write_text(f"# unique: {tmp_path}\n")  # no parse-cache hit by digest
    index = scan_directory(tree)
    # swapped after indexing: the index says file, the host now has a symlink out of the tree
    (tree / "app" / "lib" / "submod.py").unlink()
    os.symlink(secret, tree / "app" / "lib" / "submod.py")
    c = python_closure(tree, index, PY, ["python3", "/app/app.py"], {}, cwd="/app")
    assert "leaked_from_the_host" not in c.unresolved
    assert {"evil", "evil2"} <= set(c.unresolved)
    assert "/app/evil.py" not in c.files and "/etc/shadow" not in c.files
    assert any("/app/lib/submod.py" in n and "not read" in n for n in c.notes)


def test_module_and_code_modes_and_env(tree):
    c = closure(tree, ["python3", "-u", "-m", "lib.submod"], cwd="/app")
    assert {"/app/lib/__init__.py", "/app/lib/submod.py", "/app/lib/sibling.py"} <= set(c.files)
    assert "/app/app.py" not in c.files
    c = closure(tree, ["python3", "-c", "import fromextra, mine"], env={"PYTHONPATH": "/opt/extra"})
    assert c.sys_path[:2] == ("/", "/opt/extra")
    assert "/usr/lib/python3/dist-packages/extradir/fromextra.py" in c.files
    assert "mine" in c.unresolved
    c = closure(tree, ["python3", "-S", "-c", "import fromextra"])
    assert "fromextra" in c.unresolved and "/usr/lib/python3.11/site.py" not in c.files
    c = closure(tree, ["python3", "-I", "-c", "import dynmod"], env={"PYTHONPATH": "/app"}, cwd="/app")
    assert "dynmod" in c.unresolved  # isolated: neither cwd nor PYTHONPATH
    c = closure(tree, ["python3", "/app/app.py"], env={"PYTHONSAFEPATH": "1"}, cwd="/app")
    assert "/app" not in c.sys_path and "pkg" not in c.unresolved and "lib" in c.unresolved
    (tree / "usr/lib/python311.zip").write_bytes(b"PK\x05\x06" + bytes(18))
    c = closure(tree, ["python3", "-c", "pass"])
    assert "/usr/lib/python311.zip" in c.files and any("python311.zip" in n for n in c.notes)


def test_parse_argv():
    assert parse_argv(["python3", "-u", "/app/app.py", "-m", "x"]) == ("script", "/app/app.py", {"u"})
    assert parse_argv(["python3", "-Wignore", "-mhttp.server"]) == ("module", "http.server", {"W"})
    assert parse_argv(["python3", "-X", "dev", "-c", "pass"]) == ("code", "pass", {"X"})
    assert parse_argv(["python3", "-IS"]) == ("stdin", None, {"I", "S"})


# --- the real proof: the flask sample runs from its closure alone --------------------

LIBDIRS = ("/usr/lib/x86_64-linux-gnu/", "/lib/x86_64-linux-gnu/")


@pytest.fixture(scope="module")
def flask_image(sample, shared_store):
    from trimcage.image.api import read_image
    from trimcage.image.extract import rootfs
    from trimcage.image.flatten import flatten

    image = read_image(f"oci-archive:{sample('flask').path}", shared_store)
    return image, flatten(image, shared_store), rootfs(image, shared_store)


def run_app(root: Path) -> subprocess.CompletedProcess:
    code = "from app import app; print(app.test_client().get('/').status_code)"
    return subprocess.run(
        ["bwrap", "--bind", str(root), "/", "--proc", "/proc", "--dev", "/dev", "--unshare-all", "--share-net",
         "--die-with-parent", "--tmpfs", "/tmp", "--chdir", "/app", "--clearenv",
         "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
         "/usr/bin/python3", "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.samples
@pytest.mark.root
@pytest.mark.slow
def test_flask_sample_runs_from_its_closure_alone(flask_image, shared_store, tmp_path):
    from trimcage.image.extract import extract

    image, index, root = flask_image
    env = dict(e.split("=", 1) for e in image.runtime_config.get("Env", []))
    scripts._PARSE_CACHE.clear()
    c = python_closure(root, index, PY, image.runtime_config["Entrypoint"], env, cwd="/app", workers=2)
    scripts._PARSE_CACHE.clear()
    assert c == python_closure(root, index, PY, image.runtime_config["Entrypoint"], env, cwd="/app", workers=1)
    f = set(c.files)
    dist = "/usr/lib/python3/dist-packages"
    for p in ("/usr/lib/python3.11/os.py", "/usr/lib/python3.11/encodings/__init__.py",
              "/usr/lib/python3.11/encodings/utf_8.py", "/usr/lib/python3.11/encodings/cp1252.py",
              f"{dist}/flask/__init__.py", f"{dist}/werkzeug/__init__.py", f"{dist}/werkzeug/routing/__init__.py",
              f"{dist}/jinja2/__init__.py", f"{dist}/markupsafe/__init__.py", f"{dist}/click/__init__.py",
              f"{dist}/itsdangerous/__init__.py", f"{dist}/Flask-2.2.2.egg-info/PKG-INFO", "/app/app.py",
              "/usr/lib/python3.11/sitecustomize.py", "/etc/python3.11/sitecustomize.py"):
        assert p in f, p
    speedups = [e for e in c.extensions if e.startswith(f"{dist}/markupsafe/_speedups.")]
    assert speedups and speedups[0] in f
    assert "/usr/lib/python3.11/lib-dynload/_hashlib.cpython-311-x86_64-linux-gnu.so" in c.extensions
    assert "/usr/lib/python3.11/tkinter/__init__.py" not in f and "/usr/bin/perl" not in f
    assert "tkinter" in c.unresolved  # not installed: reported, not dropped
    assert not any(u.split(".")[0] in ("flask", "werkzeug", "jinja2", "markupsafe", "click") for u in c.unresolved)

    def base(p: str) -> bool:
        e = index[p]
        return (p.startswith("/usr/bin/python3") or p in ("/lib", "/lib64", "/etc/passwd", "/etc/group")
                or p.startswith(("/lib64/", "/usr/lib64/")) or (p.startswith(LIBDIRS) and ".so" in p and e.type != "dir"))

    def slim(paths: set[str], dest: Path) -> Path:
        extract(image, shared_store, dest, index=index, paths=sorted(paths))
        return dest

    keep = f | {p for p in index if base(p)}
    full = slim(keep, tmp_path / "slim")
    assert not (full / "usr/share/doc").exists() and not (full / "usr/lib/python3.11/tkinter").exists()
    cp = run_app(full)
    assert cp.returncode == 0 and cp.stdout.strip() == "200", cp.stderr[-3000:]
    # one file fewer and it no longer starts: the closure is what makes it work
    broken = slim(keep - {f"{dist}/werkzeug/routing/__init__.py"}, tmp_path / "broken")
    cp = run_app(broken)
    assert cp.returncode != 0 and "200" not in cp.stdout
    assert "werkzeug.routing" in cp.stderr
    # the python-free base alone cannot run it either
    bare = slim({p for p in index if base(p)} | {"/app/app.py"}, tmp_path / "bare")
    assert run_app(bare).returncode != 0


def test_python_org_layout_and_venv(tmp_path):
    """/usr/local/bin/python3 from a python.org build: site-packages, libpython exports, a venv."""
    root = tmp_path / "root"
    write(root, {
        "/usr/local/bin/python3.12": b"\x7fELF\x00",
        "/usr/local/lib/libpython3.12.so.1.0": b"\x7fELF\x00PyInit__socket\x00",
        "/usr/local/lib/python3.12/os.py": "import _socket\nimport stdmod\n",
        "/usr/local/lib/python3.12/stdmod.py": "",
        "/usr/local/lib/python3.12/site.py": "# site-packages only\n",
        "/usr/local/lib/python3.12/lib-dynload/_x.cpython-312-x86_64-linux-gnu.so": b"",
        "/usr/local/lib/python3.12/site-packages/tp/__init__.py": "",
        "/usr/local/lib/python3.12/site-packages/tp/extra.py": "",
        "/usr/lib/python3/dist-packages/debian_only.py": "",
        "/opt/venv/pyvenv.cfg": "home = /usr/local/bin\ninclude-system-site-packages = false\n",
        "/opt/venv/lib/python3.12/site-packages/invenv.py": "",
        "/srv/main.py": "import tp, debian_only, inventory\n",
        "/srv/v.py": "import inventory, tp\n",
    })
    os.symlink("python3.12", root / "usr/local/bin/python3")
    (root / "opt/venv/bin").mkdir(parents=True)
    os.symlink("/usr/local/bin/python3", root / "opt/venv/bin/python")
    (root / "opt/venv/lib/python3.12/site-packages/inventory.py").write_text("import inventory\n")
    index = scan_directory(root)
    c = python_closure(root, index, "/usr/local/bin/python3", ["python3", "/srv/main.py"], {})
    assert "/usr/local/lib/python3.12/site-packages" in c.sys_path
    assert "/usr/local/lib/python3.12/site-packages/tp/extra.py" in c.files  # third party: whole
    assert "/usr/local/lib/python3.12/stdmod.py" in c.files
    assert {"debian_only", "inventory"} <= set(c.unresolved) and "_socket" not in c.unresolved
    v = python_closure(root, index, "/opt/venv/bin/python", ["python", "/srv/v.py"], {})
    assert "/opt/venv/lib/python3.12/site-packages/inventory.py" in v.files
    assert {"/opt/venv/pyvenv.cfg", "/opt/venv/bin/python", "/usr/local/bin/python3.12",
            "/usr/local/lib/python3.12/os.py"} <= set(v.files)
    assert "tp" in v.unresolved  # include-system-site-packages = false



SCRIPT = """#!/bin/sh -e
. /lib/common.sh
cat <<END
not_a_command
END
case "$1" in
  start) tool --serve ;;
esac
X=1 missingcmd || true
$DYNAMIC arg
exec env -i A=1 tool "$@"
"""


def test_shell_closure(tmp_path):
    from trimcage.elf.scripts import shell_closure, shell_words

    root = tmp_path / "root"
    fake_python(root, {
        "/bin/sh": b"\x7fELF sh", "/usr/bin/env": b"\x7fELF env", "/usr/bin/tool": b"\x7fELF tool",
        "/usr/bin/cat": b"\x7fELF cat", "/usr/bin/not_a_command": b"\x7fELF no",
        "/entry.sh": SCRIPT, "/lib/common.sh": "helper --init\n",
        "/usr/local/bin/helper": "#!/usr/bin/python3\nimport stat\n",
    })
    for p in ("bin/sh", "usr/bin/env", "usr/bin/tool", "usr/bin/cat", "usr/bin/not_a_command",
              "usr/local/bin/helper", "entry.sh"):
        os.chmod(root / p, 0o755)
    os.symlink("/usr/bin/tool", root / "usr/bin/alias-tool")
    c = shell_closure(root, scan_directory(root), ["/entry.sh", "start"], {"PATH": "/usr/local/bin:/usr/bin"})
    assert set(c.executables) == {"/bin/sh", "/usr/bin/env", "/usr/bin/tool", "/usr/bin/cat", "/usr/bin/python3.11"}
    assert {"/entry.sh", "/lib/common.sh", "/usr/local/bin/helper", "/usr/lib/python3.11/stat.py",
            "/usr/bin/python3"} <= set(c.files)
    assert "/usr/bin/not_a_command" not in c.files  # heredoc body
    assert "missingcmd" in c.unresolved and "start" not in c.unresolved
    assert any("$DYNAMIC" in n for n in c.notes)
    c = shell_closure(root, scan_directory(root), ["sh", "-c", "alias-tool x && nope"], {"PATH": "/bin:/usr/bin"})
    assert {"/usr/bin/alias-tool", "/usr/bin/tool", "/bin/sh"} <= set(c.files) and "nope" in c.unresolved
    cmds, _ = shell_words("a=$(id -u); b | c && d & e\n")
    assert [w[0] for w in cmds] == ["a=", "id", "b", "c", "d", "e"]
    cmds, notes = shell_words("f() { g; }\nf x\ncase $1 in\n  start) run ;;\nesac\necho 'open\n")
    assert [w[0] for w in cmds] == ["{", "}", "case", "run", "esac"] and "not parsed" in notes[0]
