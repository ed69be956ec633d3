"""Tests for medimg_core.modelling.paired: DeLong's test and the paired bootstrap over patients."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from medimg_core.errors import ConfigError, DataError
from medimg_core.modelling.paired import (
    BOOTSTRAP,
    DELONG,
    compare_paired,
    delong_components,
)


def _brute_force(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """DeLong 1988 from every positive-negative pair (Mann-Whitney kernel, ties one half).

    Returns (AUC A, AUC B, variance of B - A).
    """
    pos, neg = y == 1, y == 0
    placements10, placements01, aucs = [], [], []
    for s in (a, b):
        kernel = (s[pos][:, None] > s[neg][None, :]) + 0.5 * (s[pos][:, None] == s[neg][None, :])
        aucs.append(kernel.mean())
        placements10.append(kernel.mean(axis=1))
        placements01.append(kernel.mean(axis=0))
    m, n = int(pos.sum()), int(neg.sum())
    s10 = np.cov(np.vstack(placements10))
    s01 = np.cov(np.vstack(placements01))
    cov = s10 / m + s01 / n
    return aucs[0], aucs[1], cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]


def _scores(n: int, seed: int, *, ties: bool = False) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    a = y * 0.8 + rng.normal(0, 1, n)
    b = y * 1.2 + rng.normal(0, 1, n) + 0.3 * a
    if ties:  # rounded scores: many ties within and across classes
        a, b = np.round(a, 1), np.round(b, 1)
    return y, a, b


@pytest.mark.parametrize(("n", "seed", "ties"), [(40, 0, False), (151, 1, True), (300, 2, True)])
def test_delong_equals_the_brute_force_pairwise_computation(n: int, seed: int, ties: bool) -> None:
    y, a, b = _scores(n, seed, ties=ties)
    auc_a, auc_b, var = _brute_force(y, a, b)
    result = compare_paired(y, a, b, partition="test")
    assert result.method.startswith(DELONG)
    assert result.value_a.value == pytest.approx(auc_a, abs=1e-12)
    assert result.value_b.value == pytest.approx(auc_b, abs=1e-12)
    assert result.value_a.value == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert result.difference.value == pytest.approx(auc_b - auc_a, abs=1e-12)
    half = norm.ppf(0.975) * np.sqrt(var)
    lo, hi = result.difference.ci95
    assert lo == pytest.approx(auc_b - auc_a - half, abs=1e-10)
    assert hi == pytest.approx(auc_b - auc_a + half, abs=1e-10)
    z = (auc_b - auc_a) / np.sqrt(var)
    assert result.p_value == pytest.approx(2 * norm.sf(abs(z)), rel=1e-8)
    assert (result.n_cases, result.n_positive, result.n_patients) == (n, int(y.sum()), None)


def test_a_hand_worked_example() -> None:
    # Positives score (.9, .2) and (.9, .8); negatives (.8, .2) and (.1, .1) under A and B.
    # A: 3 of 4 pairs ordered, AUC 0.75, placements V10 = (1, .5), V01 = (.5, 1); B is perfect.
    # Var(B - A) = var(V10)/2 + var(V01)/2 = 0.125/2 + 0.125/2 = 0.125; z = 0.25 / sqrt(0.125).
    y = np.array([1, 1, 0, 0])
    a = np.array([0.9, 0.2, 0.8, 0.1])
    b = np.array([0.9, 0.8, 0.2, 0.1])
    auc, v10, v01 = delong_components(y, np.vstack([a, b]))
    np.testing.assert_allclose(auc, [0.75, 1.0])
    np.testing.assert_allclose(v10, [[1.0, 0.5], [1.0, 1.0]])
    np.testing.assert_allclose(v01, [[0.5, 1.0], [1.0, 1.0]])
    result = compare_paired(y, a, b, partition="test")
    assert result.difference.value == pytest.approx(0.25)
    assert result.p_value == pytest.approx(0.4795, abs=1e-4)  # 2 * (1 - Phi(0.7071))
    assert result.difference.ci95 == pytest.approx((0.25 - 0.69296, 0.25 + 0.69296), abs=1e-4)


def test_identical_scores_give_no_difference_and_p_one() -> None:
    y, a, _ = _scores(80, 3)
    result = compare_paired(y, a, a.copy(), partition="cv")
    assert result.difference.value == 0.0
    assert result.difference.ci95 == (0.0, 0.0)
    assert result.p_value == 1.0
    assert not result.significant
    # A monotone transform ranks the cases identically: the same AUC, no difference.
    same_ranking = compare_paired(y, a, 1 / (1 + np.exp(-a)), partition="cv")
    assert same_ranking.p_value == 1.0


def test_swapping_the_models_flips_the_difference_only() -> None:
    y, a, b = _scores(120, 4)
    ab = compare_paired(y, a, b, partition="test")
    ba = compare_paired(y, b, a, partition="test")
    assert ba.difference.value == pytest.approx(-ab.difference.value)
    assert ba.p_value == pytest.approx(ab.p_value)
    assert ba.difference.ci95 == pytest.approx((-ab.difference.ci95[1], -ab.difference.ci95[0]))


def test_a_clear_difference_is_significant() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 400)
    strong = y * 2.0 + rng.normal(0, 1, 400)
    weak = y * 0.3 + rng.normal(0, 1, 400)
    result = compare_paired(y, weak, strong, partition="test")
    assert result.difference.value > 0.2
    assert result.p_value < 1e-6
    assert result.significant


def test_delong_p_values_are_uniform_under_no_difference() -> None:
    # Two equally good, independent-noise models: about 5% of comparisons below 0.05.
    rng = np.random.default_rng(6)
    p_values = []
    for _ in range(300):
        y = rng.integers(0, 2, 100)
        a = y + rng.normal(0, 1, 100)
        b = y + rng.normal(0, 1, 100)
        p_values.append(compare_paired(y, a, b, partition="test").p_value)
    rejected = np.mean(np.array(p_values) < 0.05)
    assert 0.02 <= rejected <= 0.09


def test_distinct_patients_use_delong_and_count_the_patients() -> None:
    y, a, b = _scores(60, 7)
    ids = [f"P{i}" for i in range(60)]
    result = compare_paired(y, a, b, groups=ids, partition="test")
    assert result.method.startswith(DELONG)
    assert result.n_patients == 60
    assert result.difference.value == compare_paired(y, a, b, partition="test").difference.value


def test_repeated_patients_use_a_paired_bootstrap_reproducibly() -> None:
    y, a, b = _scores(150, 8)
    ids = np.repeat([f"P{i}" for i in range(50)], 3)  # three cases per patient
    first = compare_paired(y, a, b, groups=ids, n_boot=200, seed=11, partition="cv")
    again = compare_paired(y, a, b, groups=ids, n_boot=200, seed=11, partition="cv")
    other = compare_paired(y, a, b, groups=ids, n_boot=200, seed=12, partition="cv")
    assert first.method.startswith(BOOTSTRAP)
    assert "50 patients" in first.method and "two-sided p" in first.method
    assert first == again
    assert other.difference.ci95 != first.difference.ci95
    assert (first.n_patients, first.n_cases) == (50, 150)
    # The point estimates are the plain AUCs; the interval surrounds the difference.
    assert first.value_a.value == pytest.approx(roc_auc_score(y, a))
    assert first.difference.value == pytest.approx(roc_auc_score(y, b) - roc_auc_score(y, a))
    lo, hi = first.difference.ci95
    assert lo < first.difference.value < hi
    assert 0 < first.p_value <= 1


def test_bootstrap_of_identical_models_gives_p_one() -> None:
    y, a, _ = _scores(90, 9)
    ids = np.repeat(np.arange(30), 3)
    result = compare_paired(y, a, a, groups=ids, n_boot=200, seed=0, partition="test")
    assert result.difference.value == 0.0
    assert result.difference.ci95 == (0.0, 0.0)
    assert result.p_value == 1.0


def test_bootstrap_p_value_is_the_two_sided_share_beyond_zero() -> None:
    # Recompute the bootstrap by hand with the same generator: the same interval and p-value.
    y, a, b = _scores(60, 10)
    ids = np.repeat(np.arange(20), 3)
    result = compare_paired(y, a, b, groups=ids, n_boot=200, seed=3, partition="test")
    rng = np.random.default_rng(3)
    diffs = []
    for _ in range(200):
        drawn = np.bincount(rng.integers(0, 20, 20), minlength=20)
        rows = np.repeat(np.arange(60), drawn[ids])
        if len(set(y[rows])) < 2:
            continue
        diffs.append(roc_auc_score(y[rows], b[rows]) - roc_auc_score(y[rows], a[rows]))
    d = np.array(diffs)
    share = min((1 + (d <= 0).sum()) / (len(d) + 1), (1 + (d >= 0).sum()) / (len(d) + 1))
    assert result.p_value == pytest.approx(min(1.0, 2 * share))
    assert result.difference.ci95 == pytest.approx(tuple(np.percentile(d, [2.5, 97.5])))


def test_bad_input_is_refused_with_advice() -> None:
    y, a, b = _scores(30, 11)
    with pytest.raises(DataError, match="one class"):
        compare_paired(np.ones(30), a, b, partition="test")
    with pytest.raises(DataError, match="Model B has 29 scores for 30 cases"):
        compare_paired(y, a, b[:29], partition="test")
    with pytest.raises(DataError, match="missing or infinite"):
        compare_paired(y, np.where(np.arange(30) == 0, np.nan, a), b, partition="test")
    with pytest.raises(DataError, match="must be 0/1"):
        compare_paired(np.where(y == 1, "malignant", "benign"), a, b, partition="test")
    with pytest.raises(ConfigError, match="at least 100"):
        compare_paired(y, a, b, groups=np.repeat(np.arange(15), 2), n_boot=20, partition="cv")


def test_to_dict_is_json_ready() -> None:
    y, a, b = _scores(50, 12)
    out = compare_paired(y, a, b, partition="test").to_dict()
    assert set(out) >= {"metric", "value_a", "value_b", "difference", "p_value", "method"}
    assert out["difference"]["ci95"][0] < out["difference"]["value"] < out["difference"]["ci95"][1]
    assert out["partition"] == "test" and out["metric"] == "roc_auc"


def test_a_perfect_model_keeps_an_honest_interval_for_its_own_auc() -> None:
    # DeLong's variance is zero at AUC 1; the model's own interval is Newcombe's instead.
    rng = np.random.default_rng(13)
    y = np.repeat([0, 1], 30)
    perfect = y + rng.uniform(0, 0.5, 60)
    noisy = y + rng.normal(0, 0.6, 60)
    result = compare_paired(y, perfect, noisy, partition="test")
    assert result.value_a.value == 1.0
    assert result.value_a.ci95[0] < 0.97 and result.value_a.ci95[1] == 1.0
    assert result.value_a.method.startswith("Newcombe score interval")
    assert result.value_b.method.startswith("DeLong")
    assert result.difference.value < 0 and np.isfinite(result.p_value)


def test_patient_ids_of_mixed_types_are_grouped() -> None:
    y, a, b = _scores(60, 14)
    patients = np.repeat(np.arange(30), 2)
    ids = np.array([int(k) if k % 2 else f"P{k}" for k in patients], dtype=object)
    result = compare_paired(y, a, b, groups=ids, n_boot=100, seed=1, partition="test")
    assert result.method.startswith(BOOTSTRAP)
    assert result.n_patients == 30


def test_sensitivity_and_specificity_at_each_threshold_use_mcnemar_on_discordant_cases() -> None:
    from scipy.stats import binomtest

    from medimg_core.modelling.paired import compare_rates_paired

    y, a, b = _scores(200, 15)
    pa, pb = 1 / (1 + np.exp(-a)), 1 / (1 + np.exp(-b))
    sens, spec = compare_rates_paired(y, pa, pb, threshold_a=0.5, threshold_b=0.6, partition="test")
    pos, neg = y == 1, y == 0
    hit_a, hit_b = pa[pos] >= 0.5, pb[pos] >= 0.6
    assert sens.metric == "sensitivity" and spec.metric == "specificity"
    assert sens.value_a.value == pytest.approx(hit_a.mean())
    assert sens.value_b.value == pytest.approx(hit_b.mean())
    assert sens.difference.value == pytest.approx(hit_b.mean() - hit_a.mean())
    only_a, only_b = int((hit_a & ~hit_b).sum()), int((~hit_a & hit_b).sum())
    assert sens.p_value == pytest.approx(binomtest(only_b, only_a + only_b).pvalue)
    assert f"{only_a} case(s) only model A got right, {only_b} only model B" in sens.method
    assert spec.value_a.value == pytest.approx((pa[neg] < 0.5).mean())
    assert spec.value_b.value == pytest.approx((pb[neg] < 0.6).mean())
    assert (sens.n_cases, spec.n_cases) == (int(pos.sum()), int(neg.sum()))
    for rate in (sens, spec):
        lo, hi = rate.difference.ci95
        assert -1 <= lo < rate.difference.value < hi <= 1


def test_newcombe_paired_interval_on_a_worked_table() -> None:
    # 50 cases: 36 right by both, 12 only by B, 2 only by A, none by neither.
    # B - A = 10/50 = 0.2; McNemar exact p = P(at most 2 of 14 | 1/2) * 2 = 0.01294.
    from medimg_core.modelling.paired import compare_rates_paired

    y = np.ones(50, dtype=int)
    a = np.array([1.0] * 36 + [0.0] * 12 + [1.0] * 2)
    b = np.array([1.0] * 36 + [1.0] * 12 + [0.0] * 2)
    sens, _ = compare_rates_paired(
        np.r_[y, 0], np.r_[a, 0.0], np.r_[b, 0.0], threshold_a=0.5, threshold_b=0.5, partition="cv"
    )
    assert sens.difference.value == pytest.approx(0.2)
    assert sens.p_value == pytest.approx(0.012939, abs=1e-6)
    # Wilson 95% intervals of 38/50 and 48/50, combined with Newcombe's (corrected) phi.
    # Worked by hand: Wilson 0.6259-0.8570 and 0.8654-0.9890; phi = -24 / sqrt(38*12*48*2)
    # = -0.1147; L = 0.2 - sqrt(0.0946^2 + 2*0.1147*0.0946*0.0970 + 0.0970^2) = 0.0569 and
    # U = 0.2 + sqrt(0.0290^2 + 2*0.1147*0.0290*0.1341 + 0.1341^2) = 0.3404.
    assert sens.value_a.ci95 == pytest.approx((0.6259, 0.8570), abs=1e-4)
    assert sens.value_b.ci95 == pytest.approx((0.8654, 0.9890), abs=1e-4)
    assert sens.difference.ci95 == pytest.approx((0.0569, 0.3404), abs=2e-4)


def test_identical_calls_differ_by_nothing() -> None:
    from medimg_core.modelling.paired import compare_rates_paired

    y, a, _ = _scores(80, 16)
    p = 1 / (1 + np.exp(-a))
    sens, spec = compare_rates_paired(y, p, p, threshold_a=0.5, threshold_b=0.5, partition="test")
    for rate in (sens, spec):
        assert rate.difference.value == 0.0 and rate.p_value == 1.0
    with pytest.raises(DataError, match=r"threshold 1\.5 is not a probability"):
        compare_rates_paired(y, p, p, threshold_a=0.5, threshold_b=1.5, partition="test")
