"""``python -m funcnet``: the command line (see ``python -m funcnet --help``)."""

import sys

from funcnet._src.playground.cli import main

if __name__ == "__main__":
    sys.exit(main())
