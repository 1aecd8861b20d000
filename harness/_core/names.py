"""Names that become directories: an experiment's name and a comparison's variant labels.

``<output>/<experiment>/`` and ``<output>/<experiment>/<label>/`` are built from them, so a name
that holds a path (``../escape``, ``/abs``, ``..``, ``.``) would write outside the output root or
over it, and a name starting with ``.`` would hide among the harness's own entries (``.stages``,
``.lock``, ``.stale``). Both are checked when the experiment is validated, before anything is written.
"""
from __future__ import annotations

MAX_NAME = 100
RESERVED_LABELS = ("report", "comparison.json")  # what a comparison writes beside its variants


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a directory of its own under the output root, or None."""
    if not name:
        return "is empty"
    if "/" in name or "\\" in name:
        return "holds a path separator"
    if name in (".", ".."):
        return "is a path, not a name"
    if name.startswith("."):
        return "starts with '.' (reserved for the harness's own entries)"
    if len(name) > MAX_NAME:
        return f"is {len(name)} characters long (at most {MAX_NAME})"
    if not name.isprintable():
        return "holds a character that cannot be printed (a newline, a tab, a control character)"
    return None


FIX = "it names a directory under the output root: use letters, digits and - _ . (e.g. \"my-run\")"
