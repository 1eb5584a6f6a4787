"""Suite-wide fixtures: the store, the sample images, the trimcage command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def store(tmp_path):
    """A fresh, empty store in a temporary TRIMCAGE_HOME."""
    from trimcage.image.store import Store

    return Store(tmp_path / "store")


@pytest.fixture(scope="session")
def shared_store():
    """The store of the session (TRIMCAGE_HOME), shared so unpacked samples are reused."""
    from trimcage.image.store import Store

    return Store(os.environ.get("TRIMCAGE_HOME") or Path.home() / ".cache" / "trimcage")


def run_cli(*args: str, check: bool = False, env: dict | None = None, timeout: float = 600,
            **kw) -> subprocess.CompletedProcess:
    """Run ``python -m trimcage ARGS`` as a user would; text output captured."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    cp = subprocess.run([sys.executable, "-m", "trimcage", *args], capture_output=True, text=True,
                        env=full_env, timeout=timeout, **kw)
    if check and cp.returncode != 0:
        raise AssertionError(f"trimcage {' '.join(args)} -> {cp.returncode}\n{cp.stdout}\n{cp.stderr}")
    return cp


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def sample():
    """``sample("nginx")`` -> ``samples.build.Sample`` (``.name``, ``.path`` oci-archive, ``.meta``).

    Builds the sample into ``$TRIMCAGE_SAMPLES`` on first use (mmdebstrap, needs
    the Debian mirror) and reuses it while its recipe hash is unchanged.
    Mark tests that use it with ``@pytest.mark.samples``.
    """
    from samples.build import ensure

    made: dict = {}

    def get(name: str):
        if name not in made:
            made[name] = ensure(name)
        return made[name]

    return get
