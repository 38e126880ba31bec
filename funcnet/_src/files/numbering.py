"""The names of numbered checkpoints in a directory: ``<prefix>-<step:08d>.safetensors``.

:class:`~funcnet.CheckpointManager` writes them and ``load(directory)`` reads
the newest, so both name them here.
"""

from __future__ import annotations

import re
from pathlib import Path

SUFFIX = ".safetensors"
DEFAULT_PREFIX = "ckpt"


def file_name(prefix: str, step: int) -> str:
    """The file name of checkpoint ``step``: ``ckpt-00000012.safetensors``."""
    return f"{prefix}-{step:08d}{SUFFIX}"


def numbered_files(directory: Path, prefix: str = DEFAULT_PREFIX) -> dict[int, Path]:
    """``{step: file}`` of the numbered checkpoints in ``directory``, oldest first."""
    pattern = re.compile(rf"{re.escape(prefix)}-(\d+){re.escape(SUFFIX)}")
    found = {}
    for path in directory.iterdir():
        if match := pattern.fullmatch(path.name):
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))
