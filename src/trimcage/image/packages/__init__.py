"""Package databases of an image: dpkg (``status``, ``status.d``) and apk.

    from trimcage.image.packages import catalog
    pkgs = catalog(index, read)      # list[Package], sorted

See ``interface.py`` for :class:`Package` and :class:`PackageDatabaseError`.
"""

from trimcage.image.packages.catalog import catalog  # noqa: F401
from trimcage.image.packages.interface import Package, PackageDatabaseError, Reader  # noqa: F401
from trimcage.image.packages.parse_apk_installed import parse_apk_installed  # noqa: F401
from trimcage.image.packages.parse_dpkg_status import parse_dpkg_list, parse_dpkg_status  # noqa: F401
