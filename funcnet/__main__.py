"""``python -m funcnet``: the command line (see ``python -m funcnet --help``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from funcnet._src.compilation_cache import enable_compilation_cache
from funcnet._src.playground import cli


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``funcnet`` command; a second run loads its compiled programs from disk."""
    enable_compilation_cache()
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
