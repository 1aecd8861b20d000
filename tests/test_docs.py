"""Docs stay honest: every hook is documented with its exact signature and has a test."""
from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from harness._core import hookspecs

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
TESTS = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").rglob("*.py") if p.name != "test_docs.py")
HOOKS = [name for name, fn in vars(hookspecs).items()
         if inspect.isfunction(fn) and hasattr(fn, hookspecs.PROJECT + "_spec")]


def test_hooks_found():
    assert {"register_optimizers", "metrics_logged", "optimizer_step"} <= set(HOOKS)


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_is_documented_with_its_signature(name):
    signature = f"`{name}{inspect.signature(getattr(hookspecs, name))}`"
    assert f"#### {signature}" in DOC, f"docs/plugins.md lacks a section titled {signature}"


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_has_a_test(name):
    assert name in TESTS, f"no test mentions hook {name}"


def test_tutorial_matches_the_example_package():
    source = (ROOT / "tests" / "example_plugin" / "harness_example_plugin" / "__init__.py").read_text()
    for line in ("brevity = \"harness_example_plugin\"", "register(\"brevity\", Brevity)",
                 "target_words: int = Field(8, ge=1"):
        assert line in DOC
        assert line in source or line in (ROOT / "tests/example_plugin/pyproject.toml").read_text()


def test_the_tutorial_walks_through_the_tutorial_package():
    package = ROOT / "tests" / "tutorial_plugin" / "harness_tutorial"
    for module, start in (("rloo", "class RLOOOptions"), ("thumbs", "class Thumbs"),
                          ("length_penalized", "class LengthPenalizedOptions"), ("shorter", "class Shorter"),
                          ("mean_words", "class MeanWords")):
        source = (package / f"{module}.py").read_text()
        assert source[source.index(start):].strip() in DOC, f"docs/plugins.md lacks {module}.py as the package has it"
    assert 'tutorial = "harness_tutorial"' in DOC and 'register("mini_rloo", RLOO)' in DOC
    assert 'Cell("mean words", own["policy"], before=own["sft"], better="lower", fmt=".1f")' in (package / "mean_words.py").read_text()


OPTIMIZERS_DOC = (ROOT / "docs" / "optimizers.md").read_text(encoding="utf-8")
BUILT_IN_OPTIMIZERS = ("ppo", "a2c", "grpo", "rloo", "best_of_n", "dpo")


def _shown(value) -> str:
    """A default as docs/optimizers.md writes it: TOML-ish, in backticks."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    return "none" if value is None else repr(value)


@pytest.mark.parametrize("name", BUILT_IN_OPTIMIZERS)
def test_every_optimizer_option_is_documented_with_its_default(name):
    from harness._core.plugins import get_plugin_manager

    model = get_plugin_manager(autoload=False).registry.get("optimizer", name).options_model
    assert f"## `{name}`" in OPTIMIZERS_DOC
    missing = [field for field, info in model.model_fields.items()
               if f"| `{field}` | `{_shown(info.default)}` |" not in OPTIMIZERS_DOC]
    assert missing == [], f"docs/optimizers.md lacks a row | `option` | `default` | for {name}: {missing}"


def test_every_feedback_record_field_is_documented():
    import dataclasses

    from harness._core.contracts import FeedbackRecord

    section = DOC[DOC.index("#### `register_feedback_formats(register)`"):DOC.index("#### `register_reward_sources")]
    assert [f.name for f in dataclasses.fields(FeedbackRecord) if f"| `{f.name}` |" not in section] == []
    assert "ctx.feedback_records()" in section and "ctx.preference_groups(" in section


# ----------------------------------------------------------------- the public API section
API_SECTION = DOC[DOC.index("## The public API"):]


def _public_names() -> list[str]:
    """``harness.api``'s names but the online toolkit's (documented with the toolkit, under register_optimizers).
    A core name the toolkit re-exports (``distinct_n``) is the core's, documented here."""
    import harness._online
    import harness.api

    return [n for n in harness.api.__all__ if n not in harness._online.__all__
            or getattr(getattr(harness.api, n), "__module__", "").startswith("harness._core")]


def _documented_parameters(name: str) -> list[str]:
    """The parameters of ```name(…)`` in the public-API section (its own bullet's, else the first one's):
    each name, ``=`` after one with a default."""
    own = API_SECTION.find(f"- `{name}(")
    start = (own + 2 if own >= 0 else API_SECTION.index(f"`{name}(")) + len(name) + 2
    depth, quote, args, current = 0, None, [], ""
    for char in API_SECTION[start:]:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            if depth == 0:
                break
            depth -= 1
        elif char == "," and depth == 0:
            args, current = args + [current], ""
            continue
        current += char
    args = [a.strip() for a in args + [current] if a.strip()]
    return [a.split("=")[0].strip() + ("=" if "=" in a else "") for a in args]


def _source_parameters(obj) -> list[str]:
    out, keyword_only = [], False
    for p in inspect.signature(obj).parameters.values():
        if p.kind is p.KEYWORD_ONLY and not keyword_only:
            out.append("*")
        keyword_only = keyword_only or p.kind in (p.KEYWORD_ONLY, p.VAR_POSITIONAL)
        prefix = "*" if p.kind is p.VAR_POSITIONAL else "**" if p.kind is p.VAR_KEYWORD else ""
        out.append(prefix + p.name + ("=" if p.default is not p.empty else ""))
    return out


@pytest.mark.parametrize("name", _public_names())
def test_every_public_callable_is_documented_with_its_parameters(name):
    import dataclasses

    import harness.api

    obj = getattr(harness.api, name)
    if inspect.isfunction(obj) or dataclasses.is_dataclass(obj):
        assert f"`{name}(" in API_SECTION, f"docs/plugins.md's public API lacks `{name}(…)` with its signature"
    if f"`{name}(" in API_SECTION:
        assert _documented_parameters(name) == _source_parameters(obj), f"`{name}(…)` differs from the source"


@pytest.mark.parametrize("name", [n for n in _public_names() if n[0].isupper()])
def test_every_public_protocol_is_documented_with_its_members(name):
    import harness.api

    obj = getattr(harness.api, name)
    if not getattr(obj, "_is_protocol", False):
        return
    members = [m for m in vars(obj) if not m.startswith("_") and callable(getattr(obj, m))]
    bullet = API_SECTION[API_SECTION.index(f"- `{name}` —"):].split("\n")[0]
    assert [m for m in members if f"`{m}(" not in bullet] == []
    assert [a for a in getattr(obj, "__annotations__", {}) if f"`{a}`" not in bullet] == []
