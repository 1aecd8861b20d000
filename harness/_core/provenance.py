"""Which code produced a stage: the packages of every component involved, and their source when editable.

A stage is reused when its hash matches, so the hash must change when the code that trains it
does — a fixed bug in a plugin must retrain, not hand back the old policy. For each component
the stage uses (and for the core, which drives every stage) this records the top-level package
its factory lives in, the distribution that installed it and that distribution's version. A
version says nothing about a package whose code can change under it — an editable install, a
directory on ``PYTHONPATH``, a ``-p`` module or a plugin object registered in-process — so for
those (any module file a distribution's RECORD does not list) it also hashes the package's
Python source.
"""
from __future__ import annotations

import hashlib
import inspect
import sys
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from pathlib import Path
from typing import Any, Iterable

CORE_PACKAGE = "harness"


def code_identity(factories: Iterable[Any]) -> dict[str, dict[str, str]]:
    """{top-level package: {"distribution", "version", and "source" (a hash) unless installed from a wheel}}.

    ``factories`` are the registered factories (classes or functions) a stage uses; the core is always included.
    """
    packages = {CORE_PACKAGE}
    for factory in factories:
        module = inspect.getmodule(factory)
        if module is not None:
            packages.add(module.__name__.split(".", 1)[0])
    return {name: package_identity(name) for name in sorted(packages)}


def package_identity(top: str) -> dict[str, str]:
    """The identity of one imported top-level package (see :func:`code_identity`)."""
    module = sys.modules.get(top)
    path = Path(getattr(module, "__file__", None) or "")
    found: dict[str, str] = {}
    dist_name = next(iter(_distributions().get(top, ())), None)
    if dist_name is not None:
        try:
            dist = distribution(dist_name)
            found = {"distribution": dist.metadata["Name"], "version": dist.version}
            if path.is_file() and _listed(dist, path):
                return found
        except PackageNotFoundError:
            found = {}
    if path.is_file():
        found["source"] = source_hash(path.parent if path.name == "__init__.py" else path)
    return found


def source_hash(root: Path) -> str:
    """SHA-256 (16 hex digits) over the relative paths and bytes of every ``.py`` file under ``root``."""
    digest = hashlib.sha256()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
    for path in files:
        digest.update(str(path.relative_to(root.parent if root.is_file() else root)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def describe_change(old: dict[str, dict[str, str]], new: dict[str, dict[str, str]]) -> list[str]:
    """One phrase per package whose identity differs (``plugins: source 1a2b… → 3c4d…``)."""
    changes = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        if before is None or after is None:
            changes.append(f"{name} {'added' if before is None else 'no longer used'}")
            continue
        parts = [f"{key} {before.get(key, '-')} → {after.get(key, '-')}"
                 for key in ("distribution", "version", "source") if before.get(key) != after.get(key)]
        changes.append(f"{name}: {', '.join(parts)}")
    return changes


@lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    return packages_distributions()


def _listed(dist, path: Path) -> bool:
    """Whether ``path`` is a file the distribution installed (its RECORD lists it) rather than a source tree."""
    resolved = path.resolve()
    return any(Path(dist.locate_file(f)).resolve() == resolved for f in (dist.files or ()) if f.suffix == ".py")
