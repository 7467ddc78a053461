"""``python -m planner``: the command line (see :mod:`planner.cli`)."""

from __future__ import annotations

import sys

from planner.cli import main

if __name__ == "__main__":
    sys.exit(main())
