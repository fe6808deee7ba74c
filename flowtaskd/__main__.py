"""``python -m flowtaskd``: the ``flowtaskd`` command."""

from __future__ import annotations

import sys

from flowtaskd.cli import main

if __name__ == "__main__":
    sys.exit(main())
