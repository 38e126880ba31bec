"""A griffe extension for the API reference: read "Example:" as "Examples:".

funcnet's docstrings are Google style and head their doctests "Example:"
(singular), which Google's style guide allows but griffe's parser does not
know; it would render the doctest as Markdown text (``>>>`` lines as quotes,
``x[0][1]`` as a link). This rewrites the heading before the docstring is
parsed, so the doctest renders as a code block. mkdocs.yml loads it.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_SINGULAR_HEADING = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _SINGULAR_HEADING.sub(r"\1Examples:", obj.docstring.value)
