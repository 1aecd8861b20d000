"""Which code produced a stage: the import closure of its components, hashed at the AST level.

A stage is reused when its hash matches, so the hash must change when the code that trains it
does (a fixed bug in a plugin must retrain, not hand back the old policy) and only then: an
edited evaluator reruns evaluation alone, an edited PPO module reruns the policy (and what
depends on it), and a docstring, a comment or a reformatting reruns nothing.

The closure starts at the modules that define the stage's components and at the core module that
drives every stage (:data:`CORE_ROOT`), and follows every import that executes (module level and
inside functions; not ``if TYPE_CHECKING:``). A name imported through a re-exporting module
(``from harness.api import collect_rollout``) is followed to the module that defines it, so a facade
does not tie every plugin to the whole core. The packages above a module are in its closure too, as
Python runs their ``__init__`` to import it, but only with what that runs: an import inside one of
their functions counts unless the package never names nor decorates that function, as ``harness``'s
PEP 562 ``__getattr__``, which imports the Python API (run, compare, reports) only when someone asks
``harness`` for one of its names, and whoever does imports ``harness`` itself, which then counts whole.
Each module is then one of:

- **source** (any ``.py`` file outside ``site-packages``: this repository, an editable install, a
  ``PYTHONPATH`` checkout, a plugin registered in-process): its AST is hashed, docstrings removed;
- **installed** (a file inside ``site-packages``/``dist-packages``): its distribution's version is
  recorded and the walk stops there;
- **the standard library**: left out (the manifest records the Python version).

Where a file lies decides, not ``importlib.metadata``: a repository root on ``sys.path`` makes the
in-tree ``*.egg-info`` claim every source file as installed, and the same code must get the same
identity however Python was started.

A module this process imported is read once, the first time an identity needs it (a run reads every
stage's as it starts), and keeps that hash until it is imported again: ``importlib.reload``, and
IPython's autoreload through it, give the module a new ``__spec__``. So a file edited while a long
command runs does not give that command's later stages another identity for the code it still runs.
A module not imported yet is read again whenever its file's mtime changes.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import sys
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path
from typing import Any, Iterable, NamedTuple

CORE_ROOT = "harness._core.stage_driver"  # builds and runs every stage: what it imports is in every stage's closure
_INSTALLED_DIRS = ("site-packages", "dist-packages")

Imports = tuple[tuple[str, tuple[str, ...]], ...]  # (module as written, relative ones with their dots; names)


class _Facts(NamedTuple):
    """What the walk needs of one source file."""

    digest: str  # its AST hash
    imports: Imports  # every import that can execute
    on_import: Imports  # those that run when the module is imported (what counts for a package above a module)


def code_identity(factories: Iterable[Any]) -> dict[str, dict[str, str]]:
    """{"modules": {module: AST hash}, "distributions": {name: version}} of the stage's import closure.

    ``factories`` are the registered factories (classes or functions) a stage uses; the core driver
    is always a root.
    """
    roots = {CORE_ROOT}
    for factory in factories:
        module = inspect.getmodule(factory)
        if module is not None:
            roots.add(module.__name__)
    modules: dict[str, str] = {}
    distributions: dict[str, str] = {}
    imported: set[str] = set()  # reached by an import: every import in it counts
    above: set[str] = set()  # reached as a package above a module: what its __init__ runs counts
    pending = [(name, True) for name in sorted(roots)]
    while pending:
        name, by_import = pending.pop()
        if name in imported or (name in above and not by_import):
            continue
        (imported if by_import else above).add(name)
        kind, path = _locate(name)
        if kind == "installed":
            distributions.update(_distribution_of(name))
        elif kind == "source":
            facts = _facts(name, path)
            modules[name] = facts.digest
            followed = facts.imports if by_import else facts.on_import
            pending.extend((m, True) for m in _resolve_all(name, followed) if m not in imported)
            pending.extend((parent, False) for parent in _parents(name))
    return {"modules": dict(sorted(modules.items())), "distributions": dict(sorted(distributions.items()))}


def describe_change(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """One phrase per module or distribution that differs (``harness_builtins.optimizers.ppo changed``)."""
    if old == new:
        return []
    if set(old) != {"modules", "distributions"} or set(new) != {"modules", "distributions"}:
        return ["the code identity's format changed (an older harness made this stage)"]
    changes = []
    for key, noun in (("modules", "module"), ("distributions", "package")):
        before, after = old[key], new[key]
        for name in sorted(set(before) | set(after)):
            if name not in before:
                changes.append(f"{noun} {name} added")
            elif name not in after:
                changes.append(f"{noun} {name} no longer used")
            elif before[name] != after[name]:
                changes.append(f"{name} {before[name]} → {after[name]}" if key == "distributions"
                               else f"{name} changed")
    return changes


# --------------------------------------------------------------------------- one module
def ast_hash(source: str) -> str:
    """SHA-256 (16 hex digits) of the module's AST without docstrings: comments and layout do not count."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                node.body = node.body[1:]
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()[:16]


# id(module.__spec__) -> (that spec, kept so that no other object takes its id; the module's facts)
_AS_IMPORTED: dict[int, tuple[Any, _Facts]] = {}


def _facts(name: str, path: Path) -> _Facts:
    """The facts of ``name``'s source: as imported, for a module this process imported (read once per import)."""
    module = sys.modules.get(name)
    spec = getattr(module, "__spec__", None)
    if spec is None or Path(getattr(module, "__file__", None) or "") != path:
        return _module_facts(str(path), path.stat().st_mtime_ns)
    if id(spec) not in _AS_IMPORTED:
        _AS_IMPORTED[id(spec)] = (spec, _module_facts(str(path), path.stat().st_mtime_ns))
    return _AS_IMPORTED[id(spec)][1]


@lru_cache(maxsize=4096)
def _module_facts(path: str, mtime_ns: int) -> _Facts:
    """The facts of one file; its imports are (module as written, names) with relative ones resolved later."""
    del mtime_ns  # part of the cache key only: an edited file is read again
    source = Path(path).read_text(encoding="utf-8")
    tree = ast.parse(source)
    found = list(_imports(tree))
    return _Facts(ast_hash(source), tuple(i for i, _ in found), tuple(i for i, on_import in found if on_import))


def _imports(tree: ast.Module):
    """((module, names), on_import) for every import that can execute; ``module`` keeps its leading dots."""
    for node, on_import in _executed_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield (alias.name, ()), on_import
        elif isinstance(node, ast.ImportFrom):
            yield ("." * node.level + (node.module or ""), tuple(a.name for a in node.names)), on_import


def _executed_nodes(tree: ast.Module):
    """(node, runs on import) for every node not under ``if TYPE_CHECKING:`` (imports only a type checker runs).

    A node runs on import unless it is in a function only a caller from outside the module can run.
    """
    outside_only = _called_from_outside_only(tree)
    stack = [(tree, True)]
    while stack:
        node, on_import = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend((child, on_import) for child in node.orelse)
            continue
        yield node, on_import
        inner = on_import and node not in outside_only
        stack.extend((child, inner) for child in ast.iter_child_nodes(node))


def _called_from_outside_only(tree: ast.Module) -> set[ast.AST]:
    """The module's top-level functions that nothing in it names or decorates: importing it never runs them."""
    named = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    return {node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and not node.decorator_list and node.name not in named}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


# --------------------------------------------------------------------------- names → modules
def _resolve_all(importer: str, imports) -> set[str]:
    package = importer if _is_package(importer) else importer.rpartition(".")[0]
    found: set[str] = set()
    for written, names in imports:
        try:
            module = importlib.util.resolve_name(written, package) if written.startswith(".") else written
        except (ImportError, ValueError):
            continue
        if not names:
            found.add(module)
        for name in names:
            found.add(module if name == "*" else _defining_module(module, name))
    return found


def _defining_module(module: str, name: str, depth: int = 0) -> str:
    """The module ``from module import name`` really depends on: a submodule, or where ``name`` is defined."""
    if _locate(module)[0] != "source":
        return module
    submodule = f"{module}.{name}"
    if submodule in sys.modules or (_is_package(module) and _spec(submodule) is not None):
        return submodule
    loaded = sys.modules.get(module)
    value = getattr(loaded, name, None) if loaded is not None else None
    defined_in = getattr(value, "__module__", None) if (inspect.isclass(value) or inspect.isfunction(value)) else None
    if isinstance(defined_in, str) and _locate(defined_in)[0] != "missing":
        return defined_in
    if depth < 8:  # a constant re-exported by ``from x import NAME``: follow the import that binds it
        kind, path = _locate(module)
        if kind == "source":
            package = module if _is_package(module) else module.rpartition(".")[0]
            for written, names in _facts(module, path).imports:
                if name in names:
                    source = importlib.util.resolve_name(written, package) if written.startswith(".") else written
                    return _defining_module(source, name, depth + 1)
    return module


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _locate(name: str) -> tuple[str, Path | None]:
    """("source" | "installed" | "stdlib" | "missing", file) of an importable module.

    The top-level package decides whether a module is installed, so finding a submodule of an
    installed package (``transformers.models.llama``) never imports that package.
    """
    top = name.split(".", 1)[0]
    if top in sys.stdlib_module_names:
        return "stdlib", None
    top_kind, top_path = _file_kind(top)
    if top_kind != "source" or top == name:
        return top_kind, top_path
    return _file_kind(name)


def _file_kind(name: str) -> tuple[str, Path | None]:
    module = sys.modules.get(name)
    origin = getattr(module, "__file__", None) if module is not None else None
    if origin is None:
        spec = _spec(name)
        if spec is None:
            return "missing", None
        origin = spec.origin if spec.has_location else None
    if origin is None:
        return "installed", None  # a namespace package or a built-in module: versioned, never hashed
    path = Path(origin)
    if any(part in _INSTALLED_DIRS for part in path.parts) or path.suffix != ".py":
        return "installed", path
    return "source", path


def _spec(name: str):
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError, AttributeError):
        return None


def _is_package(name: str) -> bool:
    module = sys.modules.get(name)
    if module is not None:
        return hasattr(module, "__path__")
    spec = _spec(name)
    return spec is not None and spec.submodule_search_locations is not None


def _distribution_of(name: str) -> dict[str, str]:
    found = {}
    for dist in _distributions().get(name.split(".", 1)[0], ()):
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return found


@lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    return packages_distributions()
