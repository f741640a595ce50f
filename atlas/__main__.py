"""``python -m atlas``: the command line (same as the ``atlas`` console script)."""

import sys

from atlas.cli import main

if __name__ == "__main__":
    sys.exit(main())
