"""Comparisons: [compare] variants, shared stages, the report and ``harness compare``."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness._core.cli import build_cli
from harness._core.config import load_experiment
from harness._core.errors import ConfigError
from harness._core.plugins import get_plugin_manager
from harness._core.report import load_runs
from harness._core.runner import run_experiment
from harness._core.variants import apply, expand
from tests.fakes import harness_cache

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "tiny.toml"
COMPARE = ROOT / "tests" / "data" / "tiny-compare.toml"


@pytest.fixture(scope="module")
def host():
    return get_plugin_manager(autoload=False)


# ----------------------------------------------------------------- variants
def test_axes_form_a_grid_with_readable_labels():
    variants = expand({"optimizer": {"name": ["ppo", "a2c"], "ppo": {"init_kl_coef": [0.1, 0.0]}}}, "x.toml")
    assert list(variants) == ["ppo,init_kl_coef=0.1", "ppo,init_kl_coef=0.0", "a2c,init_kl_coef=0.1",
                              "a2c,init_kl_coef=0.0"]
    assert variants["a2c,init_kl_coef=0.0"] == {"optimizer.name": "a2c", "optimizer.ppo.init_kl_coef": 0.0}


def test_named_variants_take_dotted_or_nested_overrides():
    variants = expand({"variants": {"plain": {}, "ptx": {"optimizer.ppo.ptx_coef": 1.0},
                                    "ptx2": {"optimizer": {"ppo": {"ptx_coef": 2.0}}}}}, "x.toml")
    assert variants == {"plain": {}, "ptx": {"optimizer.ppo.ptx_coef": 1.0}, "ptx2": {"optimizer.ppo.ptx_coef": 2.0}}


@pytest.mark.parametrize("compare, message", [
    ({"optimizer": {"name": "ppo"}}, "optimizer.name = 'ppo': expected a non-empty list"),
    ({"variants": {"a b": {}}}, "variant label names a directory"),
    ({}, "names no variants"),
])
def test_bad_compare_tables_say_what_to_write(compare, message):
    with pytest.raises(ConfigError, match=message):
        expand(compare, "x.toml")


def test_a_variant_cannot_set_through_a_value():
    with pytest.raises(ConfigError, match=r"\[compare\] experiment.name.x: 'name' is a value, not a table"):
        apply({"experiment": {"name": "base"}}, {"experiment.name.x": 1})
    assert apply({"experiment": {"name": "base"}}, {"optimizer.ppo.clip": 0.1}) == {
        "experiment": {"name": "base"}, "optimizer": {"ppo": {"clip": 0.1}}}


def test_a_bad_variant_fails_validation_before_anything_runs(host, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.read_text() + '\n[compare]\n"optimizer.ppo.clip" = [0.2, "wide"]\n')
    with pytest.raises(ConfigError, match=r"variant 'clip=wide'.*\[optimizer.ppo\] clip = 'wide': expected a number"):
        load_experiment(bad, host.registry)


def test_variants_are_resolved_experiments(host):
    exp = load_experiment(COMPARE, host.registry)
    assert list(exp.variants) == ["ppo", "a2c", "dpo"]
    assert {label: v.choice("optimizer").name for label, v in exp.variants.items()} == {"ppo": "ppo", "a2c": "a2c", "dpo": "dpo"}
    assert all(v.variant == label and not v.variants for label, v in exp.variants.items())
    # only the optimizer differs, so SFT and RM configs hash alike across variants
    assert len({v.hash_of("model", "world", "sft", "feedback", "reward_model") for v in exp.variants.values()}) == 1


# ----------------------------------------------------------------- a comparison run
@pytest.fixture(scope="module")
def compared(host, tiny_cache, tmp_path_factory):
    """The three-variant comparison, run once for the module with the session's model cache (its micro base model
    is the one every tiny run builds; a private cache would build it again)."""
    out = tmp_path_factory.mktemp("runs")
    with harness_cache(tiny_cache):
        summary = run_experiment(load_experiment(COMPARE, host.registry), host, out, show_progress=False,
                                 echo=lambda s: None)
    return out / "tiny-compare", summary


def test_shared_stages_are_trained_once(compared):
    root, summary = compared
    assert set(summary["variants"]) == {"ppo", "a2c", "dpo"} and not summary["failed"]
    for stage in ("sft", "feedback", "reward_model"):  # one entry of the stage store, linked by every variant
        entry = (root / "ppo" / stage).resolve()
        assert entry.parent == root.parent / ".stages" and (entry / "manifest.json").is_file()
        for other in ("a2c", "dpo"):
            assert (root / other / stage).resolve() == entry
    policies = {(root / variant / "policy").resolve() for variant in ("ppo", "a2c", "dpo")}
    assert len(policies) == 3  # each optimizer trained its own policy
    for variant in ("ppo", "a2c", "dpo"):
        results = json.loads((root / variant / "results.json").read_text())
        assert results["variant"] == variant and results["policy"]["optimizer"] == variant
        assert {"overoptimization", "diversity", "win_rate_vs_sft"} <= set(results)


def test_the_report_compares_every_variant(compared):
    root, summary = compared
    report = root / "report"
    assert Path(summary["report"]) == report / "report.md"
    text = (report / "report.md").read_text()
    for variant in ("ppo", "a2c", "dpo"):
        assert f"| {variant} | {variant} |" in text
    assert "win rate vs SFT [95% CI]" in text and "KL (nats)" in text
    assert text.index("## Ranking by win rate vs SFT") < text.index("## Every run")  # one seed: over its prompts
    assert "One seed (0) × 16 prompts" in text and "P(A > B) [95% CI]" not in text and "P(ppo > " not in text
    assert "No probability-of-improvement matrix: with one seed" in text and not (report / "improvement.png").exists()
    glance = text[text.index("## At a glance"):text.index("## Plots")]  # the compact table, then the details
    assert "| variant | win rate vs SFT [95% CI] | length-controlled win rate [95% CI] | Δgold [95% CI] | KL (nats) [95% CI] |" \
        in glance or "| variant | win rate vs SFT [95% CI] | Δgold [95% CI] | KL (nats) [95% CI] |" in glance
    assert text.index("## Plots") < text.index("## Details") < text.index("### Every run")
    assert json.loads((report / "statistics.json").read_text())["seeds"] == [0]
    for plot in ("win_rate.png", "reward_vs_kl.png", "gold_vs_proxy.png", "seeds.png", "differences.png"):
        assert (report / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"({plot})" in text
    html = (report / "report.html").read_text()
    assert "<table>" in html and "dpo" in html
    win = json.loads((root / "ppo" / "results.json").read_text())["win_rate_vs_sft"]
    decided = sum(c["wins"] + c["losses"] for c in win["decided_by"].values())
    assert decided == win["n"] - win["ties"] and sum(k["n"] for k in win["by_kind"].values()) == win["n"]
    if decided:
        assert "wins / losses decided by" in text
    rows = (report / "report.csv").read_text().splitlines()
    assert rows[0].startswith("variant,optimizer") and len(rows) == 4


def test_online_runs_carry_their_training_curve(compared):
    root, _ = compared
    runs = {r["label"]: r for r in load_runs([root / v for v in ("ppo", "a2c", "dpo")])}
    assert [c["step"] for c in runs["ppo"]["curve"]] == [1, 2, 3]
    assert {"reward/proxy", "reward/gold", "kl"} <= set(runs["a2c"]["curve"][0])
    assert runs["dpo"]["curve"] == []
    over = json.loads((root / "ppo" / "results.json").read_text())["overoptimization"]
    assert {"length_proxy_corr", "proxy_gain", "gold_peak_step", "train_proxy_gold_corr", "proxy_gold_pairs"} <= set(over)
    if over["proxy_gold_pairs"]:
        assert 0.0 <= over["proxy_gold_pair_agreement"] <= 1.0


def test_proxy_gold_pair_agreement_counts_only_pairs_gold_decides():
    from harness_builtins.evaluators.overoptimization import pair_agreement

    # pairs: proxy right, proxy wrong, gold tie (left out), proxy right
    found = pair_agreement([1.0, 0.0, 5.0, -1.0], [0.0, 1.0, 0.0, 0.0], [2.0, 2.0, 1.0, -3.0], [1.0, 1.0, 1.0, 0.0])
    assert found == {"proxy_gold_pair_agreement": 2 / 3, "proxy_gold_pairs": 3.0}
    assert pair_agreement([1.0], [0.0], [1.0], [1.0]) == {"proxy_gold_pairs": 0.0}


def test_every_optimizer_evaluates_mid_training(compared):
    root, _ = compared
    for variant in ("ppo", "a2c", "dpo"):
        periodic = json.loads((root / variant / "results.json").read_text())["policy"]["train"]["periodic"]
        assert periodic and all(row["step"] % 2 == 0 for row in periodic)
        assert {"win_rate_vs_sft/rate", "policy/reward_gold", "diversity/policy/distinct_2"} <= set(periodic[0])
        assert 0.0 <= periodic[0]["win_rate_vs_sft/rate"] <= 1.0 and periodic[0]["win_rate_vs_sft/n"] == 8
    logged = [json.loads(l) for l in (root / "ppo" / "policy" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in logged if "eval/win_rate_vs_sft/rate" in row] == [2]
    assert not [k for row in logged for k in row if "per_prompt" in k]  # lists are kept, never logged


def test_the_runs_record_what_the_world_validation_reads(compared):
    """Per-prompt gold and KL in every periodic row (V6's bootstrap), the decisive rate beside the rate (V4)."""
    from harness_builtins.worlds.embedded.curves import heldout_curve

    root, _ = compared
    results = {"ppo": json.loads((root / "ppo" / "results.json").read_text())}
    curve = heldout_curve(results["ppo"])
    assert [p.step for p in curve] == [0, 2] and all(len(p.delta) == len(p.kl_pp) == 8 for p in curve)
    assert curve[1].kl == pytest.approx(float(curve[1].kl_pp.mean()))
    assert curve[1].gold - curve[0].gold == pytest.approx(float(curve[1].delta.mean()))
    assert len(results["ppo"]["policy"]["per_prompt"]["reward_gold"]) == 16  # the final evaluation's prompts
    decisive = results["ppo"]["win_rate_vs_sft"]["decisive"]
    assert 0.0 <= decisive["ci_low"] <= decisive["rate"] <= decisive["ci_high"] <= 1.0
    assert (root / "report" / "periodic.png").is_file()


def test_rerunning_a_comparison_reuses_every_stage(compared, host):
    root, _ = compared
    lines = []
    run_experiment(load_experiment(COMPARE, host.registry), host, root.parent, show_progress=False, echo=lines.append)
    assert not [l for l in lines if l.startswith("· ") and "reusing" not in l], lines


def test_compare_command_writes_a_report_for_chosen_runs(compared, host, tmp_path):
    root, _ = compared
    out = tmp_path / "rep"
    result = CliRunner().invoke(build_cli(host), ["compare", str(root / "ppo"), str(root / "a2c"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "ppo" in result.output and "a2c" in result.output and "win rate vs SFT" in result.output
    assert (out / "report.md").is_file() and "dpo |" not in (out / "report.md").read_text()


def test_compare_takes_a_comparison_dir_as_its_variants_and_names_a_directory_that_is_not_a_run(compared, host, tmp_path):
    root, _ = compared
    result = CliRunner().invoke(build_cli(host), ["compare", str(root), "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    assert all(f"| {v} | {v} |" in (tmp_path / "rep" / "report.md").read_text() for v in ("ppo", "a2c", "dpo"))
    result = CliRunner().invoke(build_cli(host), ["compare", str(root / "report")])
    assert result.exit_code == 1 and "report: not a run directory; a run directory holds results.json" in result.output
