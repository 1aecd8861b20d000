"""Rows V1–V9 of ``harness world validate`` from hand-made measurements (no training)."""
from __future__ import annotations

import pytest

from harness_builtins.worlds.embedded.validation import build_rows, hump, render


def win(rate, low, high, task=(0, 0)):
    return {"rate": rate, "ci_low": low, "ci_high": high, "n": 200,
            "decided_by": {"task": {"wins": task[0], "losses": task[1]}}}


def tax(cloze, ppl):
    return {"embedded_cloze": {"metric": "acc", "higher_is_better": True, "delta": cloze},
            "embedded_heldout": {"metric": "word_perplexity", "higher_is_better": False, "delta": ppl}}


def periodic(points):
    """(step, kl, proxy, gold, se) -> the policy summary's periodic history (SFT numbers on every row)."""
    return [{"step": s, "policy/kl": kl, "policy/reward_proxy": p, "policy/reward_gold": g, "policy/reward_gold_se": se,
             "policy/sft_reward_proxy": 0.0, "policy/sft_reward_gold": 0.0, "policy/sft_reward_gold_se": 0.05}
            for s, kl, p, g, se in points]


HUMP = [(30, 1.0, 0.2, 0.3, 0.05), (60, 2.0, 0.4, 0.4, 0.05), (90, 4.0, 0.6, 0.1, 0.05)]


def seed(ppo=0.66, task=(30, 10), hump_points=HUMP, ptx=(0.01, -0.2)):
    return {
        "annotation": {"pairwise_agreement_pct": 73.0},
        "sft_vs_base": {"rate": 0.8, "ci_low": 0.74, "ci_high": 0.85, "n": 200},
        "variants": {
            "ppo": {"rm": {"accuracy": 0.70}, "win_rate_vs_sft": win(ppo, ppo - 0.07, ppo + 0.07, task), "tax": tax(-0.02, 0.1)},
            "ppo-gold": {"win_rate_vs_sft": win(0.8, 0.74, 0.85)},
            "ppo-small-beta": {"policy": {"train": {"periodic": periodic(hump_points)}}},
            "dpo": {"win_rate_vs_sft": win(0.58, 0.51, 0.65)},
            "a2c": {"win_rate_vs_sft": win(0.55, 0.48, 0.62)},
            "ppo-ptx": {"win_rate_vs_sft": win(0.6, 0.53, 0.67), "tax": tax(*ptx)},
        },
    }


def by_key(rows):
    return {r.key: r for r in rows}


def test_every_row_passes_on_measurements_that_reproduce_the_literature():
    rows = by_key(build_rows([seed(), seed(0.70), seed(0.68)]))
    assert list(rows) == ["V1", "V2", "V3", "V4", "V4b", "V5", "V6", "V7", "V8", "V9"]
    assert all(r.ok for r in rows.values()), [r.key for r in rows.values() if not r.ok]
    table = render(list(rows.values()), [0, 1, 2])
    assert table.count("**pass**") == 10 and "seed 2" in table


def test_each_rule_fails_where_the_finding_is_missing():
    rows = by_key(build_rows([seed(ppo=0.58), seed(task=(10, 12)), seed(hump_points=HUMP[:2] + [(90, 4.0, 0.6, 0.38, 0.05)])]))
    assert rows["V4"].passed == (False, True, True) and not rows["V4"].ok
    assert rows["V4b"].passed == (True, False, True)
    assert rows["V6"].passed == (True, True, False)  # a drop of 0.4 SE is noise, not over-optimization
    assert rows["V5"].ok and rows["V9"].ok
    worse_ptx = by_key(build_rows([seed(ptx=(-0.05, -0.2))]))  # ptx lost more cloze accuracy than plain PPO
    assert not worse_ptx["V9"].ok


def test_the_mean_rule_of_v4_and_missing_variants():
    rows = by_key(build_rows([seed(0.61), seed(0.62), seed(0.63)]))
    assert all(rows["V4"].passed) and not rows["V4"].ok  # every seed ≥ 0.60, mean < 0.65
    broken = seed()
    del broken["variants"]["dpo"]
    rows = build_rows([broken])
    assert by_key(rows)["V7"].passed == (False,)
    assert "| V7 |" in render(rows, [0]) and "not run |" in render(rows, [0]).split("| V7 |")[1].splitlines()[0]


def test_hump_needs_an_intermediate_peak_and_a_monotone_proxy():
    sft = {"kl": 0.0, "proxy": 0.0, "gold": 0.0, "gold_se": 0.05}
    falling = [sft, {"kl": 1, "proxy": 0.2, "gold": -0.2, "gold_se": 0.05}, {"kl": 2, "proxy": 0.3, "gold": -0.4, "gold_se": 0.05}]
    assert not hump(falling)["intermediate_peak"]
    wobbly = [sft, {"kl": 1, "proxy": 0.2, "gold": 0.4, "gold_se": 0.05}, {"kl": 2, "proxy": 0.1, "gold": 0.0, "gold_se": 0.05}]
    h = hump(wobbly)
    assert h["intermediate_peak"] and not h["proxy_monotone"] and h["drop_in_se"] == pytest.approx(8.0)


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
