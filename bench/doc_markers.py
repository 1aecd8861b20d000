"""Write a bench's output into a document between its markers, so the figures in docs are a command's output.

``<!-- NAME:LABEL -->`` … ``<!-- /NAME:LABEL -->`` (e.g. ``profile:now``, ``peer:now``) enclose what the
command last wrote; everything outside them is left as it is. The document is replaced atomically.
"""
from __future__ import annotations

import sys
from pathlib import Path


def write_between_markers(doc: Path, name: str, label: str, text: str) -> None:
    """Replace what stands between ``<!-- name:label -->`` and ``<!-- /name:label -->`` in ``doc`` with ``text``."""
    from harness._core.io import atomic_write_text

    begin, end = f"<!-- {name}:{label} -->", f"<!-- /{name}:{label} -->"
    content = Path(doc).read_text(encoding="utf-8")
    if begin not in content or end not in content:
        sys.exit(f"{doc}: no '{begin}' … '{end}' markers to write between; add them.")
    head, rest = content.split(begin, 1)
    atomic_write_text(Path(doc), f"{head}{begin}\n{text}\n{end}{rest.split(end, 1)[1]}")
