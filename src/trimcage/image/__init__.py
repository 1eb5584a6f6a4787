"""The image stage: read, flatten, extract and write container images.

Public API (everything else in this package is an implementation detail)::

    store = open_store()                         # TRIMCAGE_HOME or ~/.cache/trimcage
    image = read_image("oci-archive:x.tar", store)
    index = flatten(image, store)                # path -> Entry, nothing extracted
    root  = rootfs(image, store)                 # cached, safe extraction for running/analysis
    new   = build_image(store, root, entries, runtime_config)  # one deterministic layer (writer)
    write_image("docker-daemon:x:slim", new, store)
    inv   = inventory(image, index, RootfsReader(root))   # attack-surface inventory
    pkgs  = catalog(index, RootfsReader(root))           # installed packages (dpkg, apk)

See ``interface.py`` for the dataclasses and errors.
"""

from trimcage.image.interface import (  # noqa: F401
    Blob,
    Entry,
    HostileInputError,
    Image,
    ImageError,
    ImageReference,
    Index,
    TransportOptions,
)
from trimcage.image.store import Store, open_store  # noqa: F401,E402
from trimcage.image.flatten import flatten, flatten_layers  # noqa: F401,E402
from trimcage.image.extract import extract, rootfs  # noqa: F401,E402
from trimcage.image.reference import format_reference, parse_reference  # noqa: F401,E402
from trimcage.image.api import read_image, write_image  # noqa: F401,E402
from trimcage.image.writer import build_image, scan_directory  # noqa: F401,E402
from trimcage.image.inventory import Inventory, RootfsReader, inventory  # noqa: F401,E402
from trimcage.image.packages import Package, PackageDatabaseError, catalog  # noqa: F401,E402
