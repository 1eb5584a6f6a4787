"""`python -m trimcage` is the same as the `trimcage` command."""

import sys

from trimcage.cli import main

sys.exit(main())
