"""Running `harness world validate`: cached measurements keyed by what they measured, the README block, bad input."""
from __future__ import annotations

import pytest

from harness_builtins.worlds.embedded.validation import cached

# The rules of rows V1–V9 (issue 25) are tested on hand-made results in tests/test_validation_rules.py;
# this file tests running the validation: its cached measurements, the README block, bad input.


def test_a_cached_measurement_is_reused_only_under_its_key(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"rate": 0.6 + len(calls)}

    path = tmp_path / "sft_vs_base.json"
    design4 = {"world": {"design": 4}, "sft": "abc"}
    assert cached(path, design4, compute) == {"rate": 1.6}
    assert cached(path, design4, compute) == {"rate": 1.6} and len(calls) == 1  # read back
    assert cached(path, design4 | {"world": {"design": 5}}, compute) == {"rate": 2.6}  # another world: measured again
    path.write_text('{"rate": 0.5}')  # a file of the old format, with no key: never trusted
    assert cached(path, design4, compute) == {"rate": 3.6}


def test_readme_block_is_rewritten_between_its_markers(tmp_path):
    from harness._core.errors import HarnessError
    from harness_builtins.worlds.embedded.validate_run import BEGIN, END, write_between_markers

    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{BEGIN}\nold numbers\n{END}\noutro\n")
    write_between_markers(readme, "| new | table |")
    assert readme.read_text() == f"intro\n{BEGIN}\n| new | table |\n{END}\noutro\n"
    (tmp_path / "plain.md").write_text("no markers")
    with pytest.raises(HarnessError, match="markers"):
        write_between_markers(tmp_path / "plain.md", "x")


def test_validate_refuses_an_experiment_without_variants(tmp_path):
    from harness._core.errors import HarnessError
    from harness._core.plugins import get_plugin_manager
    from harness_builtins.worlds.embedded.validate_run import validate

    plain = tmp_path / "plain.toml"
    plain.write_text('[experiment]\nname = "plain"\n')
    with pytest.raises(HarnessError, match=r"needs a \[compare\] experiment"):
        validate(get_plugin_manager([]), str(plain), [0], str(tmp_path / "runs"))
