"""Are two runs' results the same to the last digit? Every number of results.json, timings and identities aside.

    python bench/same_results.py runs-before/instructgpt runs-after/instructgpt

Prints each value that differs (path, before, after) and exits 1 if any does; timings (``*_s``,
``wall``, ``s_per_step``), memory (``peak_rss_mib``), hashes of config and code, and paths are left
out, since a refactoring changes them without changing a result. Used to show that a change which
keeps the computation keeps the numbers.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

IGNORED = re.compile(r"(_s|_share|wall|s_per_step|peak_rss_mib|config_hash|stage_hashes|_at|pid|dir|path|report)$")


def flatten(value, path: str = "") -> dict[str, object]:
    """{dotted path: leaf} of a JSON tree, without the ignored keys."""
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key, item in value.items():
            if not IGNORED.search(str(key)):
                out.update(flatten(item, f"{path}.{key}" if path else str(key)))
        return out
    if isinstance(value, list):
        out = {}
        for i, item in enumerate(value):
            out.update(flatten(item, f"{path}[{i}]"))
        return out
    return {path: value}


def differences(before: Path, after: Path) -> list[tuple[str, object, object]]:
    a, b = (flatten(json.loads((Path(p) / "results.json").read_text())) for p in (before, after))
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def main() -> None:
    before, after = sys.argv[1:3]
    diffs = differences(Path(before), Path(after))
    for key, old, new in diffs:
        print(f"{key}: {old!r} → {new!r}")
    compared = len(flatten(json.loads((Path(before) / "results.json").read_text())))
    print(f"{compared} values compared; {len(diffs)} differ")
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
