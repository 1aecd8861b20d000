"""Judge ``shorter``: the shorter response wins (a length-only sanity judge)."""
from __future__ import annotations

from harness.api import NoOptions


class Shorter:
    """The shorter response wins (a length-controlled sanity check)."""

    Options = NoOptions
    name = "shorter"

    def __init__(self, options):
        self.options = options

    def bind(self, ctx):
        def compare(triples):
            return [1.0 if len(a) < len(b) else 0.0 if len(b) < len(a) else 0.5 for _, a, b in triples]
        return compare
