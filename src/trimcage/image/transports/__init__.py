"""Image transports, one module each (skopeo's transport names).

A transport module defines one :class:`~trimcage.image.interface.Transport`
subclass and exposes an instance of it as the module attribute
``TRANSPORT``. To add a transport, write the module and add one line to
:data:`MODULES`; :mod:`trimcage.image.reference` imports them all from this
list and registers each ``TRANSPORT`` under its ``name``.

Modules listed in :data:`OPTIONAL` may be missing (they are written in
parallel); a missing one is replaced by a stub that parses and formats the
reference syntax but answers "not supported here" to ``read``/``write``.
"""

from __future__ import annotations

# module name (inside this package) -> transport name it provides
MODULES: tuple[tuple[str, str], ...] = (
    ("oci_layout", "oci"),
    ("oci_archive", "oci-archive"),
    ("docker_archive", "docker-archive"),
    ("registry", "docker"),
    ("docker_daemon", "docker-daemon"),
    ("containers_storage", "containers-storage"),
)

# modules that may not exist (yet); only their own ModuleNotFoundError is tolerated
OPTIONAL: frozenset[str] = frozenset({"registry", "docker_daemon", "containers_storage"})
