"""Results are the evaluators' to describe: the summary and ``harness compare`` show any evaluator's cells."""
from __future__ import annotations

import dataclasses

import pytest

from harness._core.contracts import Cell, EvalSamples, NotingComponent, Plot, PlottingComponent
from harness._core.errors import HarnessError
from harness._core.evaluation import run_evaluators
from harness._core.registry import Registry
from harness._core.report import declared, headline, render_report
from harness._core.summary import format_summary


class Brevity:
    """A third-party evaluator: mean words of the policy's answers, with an interval."""

    def evaluate(self, ctx, samples):
        return {"brevity": {"words": 6.5, "low": 6.0, "high": 7.0}}

    def headline(self, fragment):
        b = fragment["brevity"]
        return [Cell("mean words", b["words"], low=b["low"], high=b["high"], better="lower", fmt=".1f", note="policy")]

    @classmethod
    def report_plots(cls, runs):
        words = [(r["label"], c["value"]) for r in runs for c in r["results"].get("headline", []) if c["evaluator"] == "brevity"]
        return [Plot("brevity.png", lambda plt: _bars(plt, words), note="Fewer words is better.")] if words else []

    @classmethod
    def report_notes(cls, runs):
        return ["Mean words: of the policy's held-out answers."]


def _bars(plt, words):
    fig, ax = plt.subplots()
    ax.bar([label for label, _ in words], [w for _, w in words])
    return fig


def _registry(*evaluators) -> Registry:
    registry = Registry()
    for i, evaluator in enumerate(evaluators):
        registry.add("evaluator", f"e{i}", evaluator, "third_party")
    return registry


class Silent:
    """An evaluator that declares no cells (the protocol method is optional)."""

    def evaluate(self, ctx, samples):
        return {"silent": {"x": 1.0}}


def _results(words: float, reward: str) -> dict:
    cell = {"evaluator": "brevity", **dataclasses.asdict(Cell("mean words", words, low=words - 1, high=words + 1,
                                                                better="lower", fmt=".1f", note="policy"))}
    return {"experiment": "x", "components": {"world": "embedded", "feedback": "pairwise", "reward": reward,
                                              "optimizer": "rloo"},
            "headline": [cell], "stages": {"policy": {"wall_s": 3.0}}, "wall_s": 9.0}


def test_cells_render_value_before_and_interval():
    assert Cell("w", 0.46, low=0.392, high=0.529).render() == "0.460 [95% CI 0.392, 0.529]"
    assert Cell("p", 0.414, before=0.015).render() == "0.015 → 0.414"
    assert Cell("t", 0.0213, fmt="+.4f").render() == "+0.0213" and Cell("n", None).render() == "—"
    assert Cell("d", text="length 3/1").render() == "length 3/1"


def test_run_evaluators_collects_each_evaluators_cells_with_its_name():
    samples = EvalSamples((), (), (), ())
    fragment = run_evaluators({"brevity": Brevity(), "silent": Silent()}, None, samples, describe=True)
    assert fragment["silent"] == {"x": 1.0}
    assert fragment["headline"] == [{"evaluator": "brevity", "name": "mean words", "value": 6.5, "low": 6.0,
                                     "high": 7.0, "better": "lower", "before": None, "fmt": ".1f", "note": "policy",
                                     "text": None}]
    assert "headline" not in run_evaluators({"brevity": Brevity()}, None, samples)  # periodic evaluation: numbers only


def test_the_run_summary_shows_a_third_party_cell_and_the_components():
    text = format_summary(_results(6.5, "length_penalized"))
    assert "Mean words (policy)" in text and "6.5 [95% CI 5.5, 7.5]" in text
    assert "feedback pairwise · reward length_penalized · optimizer rloo" in text


def test_compare_shows_a_third_party_cell_and_a_column_per_slot(tmp_path):
    runs = [{"label": "a", "dir": tmp_path / "a", "results": _results(6.5, "learned"), "curve": []},
            {"label": "b", "dir": tmp_path / "b", "results": {**_results(9.0, "gold"), "headline": []}, "curve": []}]
    cols = dict(headline(runs))
    assert cols["reward"] == ["learned", "gold"] and cols["feedback"] == ["pairwise", "pairwise"]
    assert cols["mean words [95% CI]"] == ["6.5 [5.5, 7.5]", "—"]
    report = render_report(runs, tmp_path / "report", _registry(Brevity, Silent), title="t")
    text = report.read_text()
    # the lead cell (the first with a direction) heads the compact table, with the interval it declared
    assert "| a | 6.5 [5.5, 7.5] |" in text and "| a | rloo | learned | pairwise |" in text
    assert "brevity:mean words,brevity:mean words low" in (tmp_path / "report" / "report.csv").read_text().splitlines()[0]
    # its declared plot and note are drawn and shown, with nothing in the core knowing its keys
    assert (tmp_path / "report" / "brevity.png").read_bytes()[:4] == b"\x89PNG"
    assert "![brevity](brevity.png)\n\nFewer words is better." in text and "Mean words: of the policy" in text
    assert 'src="brevity.png"' in (tmp_path / "report" / "report.html").read_text()


def test_plots_and_notes_are_optional_capabilities_and_a_plot_file_has_one_owner(tmp_path):
    assert isinstance(Brevity, PlottingComponent) and isinstance(Brevity, NotingComponent)
    assert not isinstance(Silent, PlottingComponent)
    runs = [{"label": "a", "dir": tmp_path, "results": _results(6.5, "learned"), "curve": []}]
    plots, notes = declared(_registry(Brevity, Silent), runs)
    assert [p.file for p in plots] == ["brevity.png"] and notes == ["Mean words: of the policy's held-out answers."]

    class Copy(Brevity):  # inherits the same method: asked once
        pass

    assert len(declared(_registry(Brevity, Copy), runs)[0]) == 1

    class Rival(Silent):
        @staticmethod
        def report_plots(runs):
            return [Plot("brevity.png", lambda plt: None)]

    with pytest.raises(HarnessError, match=r"'brevity.png' is declared by evaluator 'e0' and by evaluator 'e1'"):
        declared(_registry(Brevity, Rival), runs)
