"""trimcage: cut the attack surface of container images.

Stages, each a package with a small typed API, data flowing one way:
image -> elf -> trace -> slim -> policy -> verify -> report.
"""

__version__ = "0.1.0"
