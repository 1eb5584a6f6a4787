"""The root of trimcage's exception tree.

Every stage defines one subclass in its ``interface.py`` (``ImageError``,
``ElfError``, ``TraceError``, ...). Errors name the file, layer, blob or pid
they are about and are chained with ``raise ... from e``. The CLI turns any
``TrimcageError`` into one line on stderr and exit code 2 (bad input or
usage); anything else is an internal error, exit code 1.
"""


class TrimcageError(Exception):
    """Bad input or an environment problem the user can act on (exit 2)."""

    exit_code = 2


class UsageError(TrimcageError):
    """The command line itself is wrong."""
