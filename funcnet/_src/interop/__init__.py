"""Interop: other JAX libraries' modules as funcnet layers, and funcnet models in theirs.

One module per library and direction; this package imports none of them, so an
optional library is only imported when its converter is called.
"""
