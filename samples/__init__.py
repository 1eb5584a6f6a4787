"""Sample images: realistic service images built from Debian bookworm packages.

Each sample is described by one recipe in ``samples/recipes/<name>.toml`` and
built by :mod:`samples.build` with ``mmdebstrap`` (the rootfs) and trimcage's
own image writer (one deterministic layer, written as an ``oci-archive``).
Tests, the demo and the benchmarks get them through
:func:`samples.build.ensure`, which builds a sample only when its recipe hash
changed.
"""

SAMPLES: tuple[str, ...] = ("nginx", "redis", "memcached", "postgres", "flask", "registry", "hello-static")

__all__ = ["SAMPLES"]
