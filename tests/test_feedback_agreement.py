"""Agreement statistics against published / hand-computed examples."""
import math

import pytest

from harness.api import (
    cohen_kappa,
    fleiss_kappa,
    kendall_tau,
    krippendorff_alpha,
    pair_agreement,
    percent_agreement,
)

# Wikipedia "Fleiss' kappa" worked example: 10 items, 14 raters, 5 categories (counts per category).
WIKI_COUNTS = [
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
]
WIKI_P_I = [1.000, 0.253, 0.308, 0.440, 0.330, 0.462, 0.242, 0.176, 0.286, 0.286]

# Fleiss (1971): 30 patients, 6 psychiatrists, 5 diagnoses; kappa 0.4302445 (R irr::kappam.fleiss).
FLEISS_1971 = [
    [4, 4, 4, 4, 4, 4], [2, 2, 2, 5, 5, 5], [2, 3, 3, 3, 3, 5], [5, 5, 5, 5, 5, 5], [2, 2, 2, 4, 4, 4],
    [1, 1, 3, 3, 3, 3], [3, 3, 3, 3, 5, 5], [1, 1, 3, 3, 3, 4], [1, 1, 4, 4, 4, 4], [5, 5, 5, 5, 5, 5],
    [1, 4, 4, 4, 4, 4], [1, 2, 4, 4, 4, 4], [2, 2, 2, 3, 3, 3], [1, 4, 4, 4, 4, 4], [2, 2, 4, 4, 4, 5],
    [3, 3, 3, 3, 3, 5], [1, 1, 1, 4, 5, 5], [1, 1, 1, 1, 1, 2], [2, 2, 4, 4, 4, 4], [1, 3, 3, 5, 5, 5],
    [5, 5, 5, 5, 5, 5], [2, 4, 4, 4, 4, 4], [2, 2, 4, 5, 5, 5], [1, 1, 4, 4, 4, 4], [1, 4, 4, 4, 4, 5],
    [2, 2, 2, 2, 2, 4], [1, 1, 1, 1, 5, 5], [2, 2, 4, 4, 4, 4], [1, 3, 3, 3, 3, 3], [5, 5, 5, 5, 5, 5],
]

# Krippendorff (2011) "Computing Krippendorff's alpha-reliability", reliability data with
# missing values: 4 observers × 12 units. Published: nominal .743, ordinal .815, interval .849, ratio .797.
_ = None
KRIPP_OBSERVERS = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, _, _, _],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, _, 3],
    [_, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, _],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, _],
]
KRIPP_UNITS = [list(unit) for unit in zip(*KRIPP_OBSERVERS)]


def _labels(counts):
    return [[j for j, c in enumerate(row) for _ in range(c)] for row in counts]


def test_pair_agreement_matches_wikipedia_per_item_values():
    assert [round(pair_agreement(x), 3) for x in _labels(WIKI_COUNTS)] == WIKI_P_I


def test_fleiss_kappa_wikipedia_example():
    assert fleiss_kappa(_labels(WIKI_COUNTS), n_categories=5) == pytest.approx(0.210, abs=5e-4)


def test_fleiss_kappa_fleiss_1971():
    assert fleiss_kappa(FLEISS_1971) == pytest.approx(0.4302445, abs=1e-7)


def test_fleiss_kappa_varying_rater_counts_by_hand():
    # P_i = 2/6, 2/2, 6/12 -> P̄ = 11/18; shares 3/9, 6/9 -> P_e = 5/9; kappa = (11/18-10/18)/(8/18)
    items = [[0, 0, 1], [1, 1], [0, 1, 1, 1], [1]]  # the single-label item is skipped
    assert fleiss_kappa(items, n_categories=2) == pytest.approx(1 / 8)


def test_fleiss_kappa_rejects_labels_outside_categories():
    with pytest.raises(ValueError, match="0..1"):
        fleiss_kappa([[0, 2]], n_categories=2)


def test_cohen_kappa_sas_example():
    # contingency [[0,4,1],[0,8,0],[0,1,5]]: p_o = 13/19, p_e = 140/361 -> kappa = 107/221 (SAS: 0.4842)
    table = [[0, 4, 1], [0, 8, 0], [0, 1, 5]]
    pairs = [(i, j) for i, row in enumerate(table) for j, c in enumerate(row) for _ in range(c)]
    a, b = zip(*pairs)
    assert cohen_kappa(a, b) == pytest.approx(107 / 221)


def test_cohen_kappa_perfect_and_undefined():
    assert cohen_kappa([0, 1, 1, 0], [0, 1, 1, 0]) == 1.0
    assert math.isnan(cohen_kappa([1, 1], [1, 1]))  # no variation: chance agreement is 1


def test_percent_agreement_by_hand():
    # 3 raters: all agree (1), two of three agree (1/3 of pairs); single-rated item skipped
    assert percent_agreement([[1, 1, 1], [0, 0, 1], [1]]) == pytest.approx((1 + 1 / 3) / 2)
    assert math.isnan(percent_agreement([[1], []]))


@pytest.mark.parametrize(
    "level, alpha", [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)]
)
def test_krippendorff_alpha_published_example(level, alpha):
    assert krippendorff_alpha(KRIPP_UNITS, level) == pytest.approx(alpha, abs=5e-4)


def test_krippendorff_alpha_nominal_by_hand():
    # 40 pairable values with totals (9, 13, 10, 5, 3). Disagreeing ordered pairs / (m_u - 1):
    # unit 2 (2,3,2,2) 6/3, unit 6 (1,2,3,4) 12/3, unit 8 (1,1,2,1) 6/3 -> D_o = 8/40.
    # D_e = (40² - Σ n_c²) / (40·39) = 1216/1560 -> alpha = 1 - 0.2/0.77949 = 0.74342
    totals = [9, 13, 10, 5, 3]
    expected = (40**2 - sum(t * t for t in totals)) / (40 * 39)
    assert krippendorff_alpha(KRIPP_UNITS, "nominal") == pytest.approx(1 - (8 / 40) / expected)


def test_krippendorff_alpha_perfect_agreement_and_unknown_level():
    assert krippendorff_alpha([[1, 1], [3, 3, 3], [7, 7]], "ordinal") == pytest.approx(1.0)
    with pytest.raises(ValueError):
        krippendorff_alpha([[1, 2]], "cosine")


def test_kendall_tau():
    assert kendall_tau([0, 1, 2], [0, 1, 2]) == 1.0
    assert kendall_tau([0, 1, 2], [2, 1, 0]) == -1.0
    assert kendall_tau([0, 1, 2], [0, 2, 1]) == pytest.approx(1 / 3)
