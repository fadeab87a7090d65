import math

import pytest
from scipy.stats import chisquare
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_effectsize,
    proportions_ztest,
)

from experiments.assignment import Allocation
from experiments.stats import min_sample_size, percentile, power, srm_test, two_proportion_test


@pytest.mark.parametrize(("c", "nc", "t", "nt"), [(200, 1000, 250, 1000), (30, 400, 22, 380),
                                                   (1234, 10000, 1301, 9800)])
def test_two_proportion_test_matches_statsmodels(c, nc, t, nt):
    r = two_proportion_test(c, nc, t, nt)
    z, p = proportions_ztest([t, c], [nt, nc])
    low, high = confint_proportions_2indep(t, nt, c, nc, method="wald", compare="diff")
    assert r.diff == pytest.approx(t / nt - c / nc)
    assert r.z == pytest.approx(z)
    assert r.p_value == pytest.approx(p)
    assert (r.ci_low, r.ci_high) == (pytest.approx(low), pytest.approx(high))


def test_known_values_of_the_two_proportion_test():
    r = two_proportion_test(200, 1000, 250, 1000)
    assert r.z == pytest.approx(2.6773977630, abs=1e-9)
    assert r.p_value == pytest.approx(0.0074196493, abs=1e-9)
    assert r.significant and r.relative_lift == pytest.approx(0.25)


def test_srm_matches_scipy_chisquare():
    r = srm_test({"a": 5100, "b": 4900}, {"a": 0.5, "b": 0.5})
    stat, p = chisquare([5100, 4900])
    assert (r.chi2, r.p_value, r.dof) == (pytest.approx(stat), pytest.approx(p), 1)
    assert not r.mismatch
    r3 = srm_test({"a": 800, "b": 150, "c": 50}, {"a": 80, "b": 15, "c": 5})
    stat3, p3 = chisquare([800, 150, 50], [800, 150, 50])
    assert r3.chi2 == pytest.approx(stat3) and r3.p_value == pytest.approx(p3)


def test_srm_detected_on_a_skewed_split_of_hashed_users():
    """Given users hashed 50/50, when 8 % of the challenger's users get lost (a crashing
    variant drops its telemetry), then the SRM check fires; on the intact split it does not."""
    alloc = Allocation.from_weights({"champion": 50, "challenger": 50})
    variants = [alloc.variant_of("srm", u) for u in range(20_000)]
    intact = {"champion": variants.count("champion"), "challenger": variants.count("challenger")}
    assert not srm_test(intact, alloc.shares()).mismatch
    skewed = {"champion": intact["champion"], "challenger": int(intact["challenger"] * 0.92)}
    result = srm_test(skewed, alloc.shares())
    assert result.mismatch and result.p_value < 1e-6
    assert result.p_value == pytest.approx(chisquare(list(skewed.values())).pvalue)


def test_srm_traffic_on_a_zero_weight_variant_is_a_mismatch():
    r = srm_test({"a": 100, "b": 3}, {"a": 100, "b": 0})
    assert r.mismatch and math.isinf(r.chi2)


@pytest.mark.parametrize(("p", "lift", "alpha", "target"), [(0.1, 0.02, 0.05, 0.8),
                                                             (0.3, 0.05, 0.05, 0.9),
                                                             (0.05, 0.01, 0.01, 0.8)])
def test_min_sample_size_matches_statsmodels(p, lift, alpha, target):
    es = proportion_effectsize(p + lift, p)
    expected = math.ceil(NormalIndPower().solve_power(effect_size=es, alpha=alpha, power=target))
    assert min_sample_size(p, lift, alpha, target) == expected


def test_power_matches_statsmodels():
    es = proportion_effectsize(0.12, 0.1)
    assert power(0.1, 0.12, 3000) == pytest.approx(NormalIndPower().power(es, 3000, 0.05))
    assert min_sample_size(0.1, 0.02) == 3835


def test_percentile_is_numpys_linear():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile(list(range(101)), 99) == 99
    assert math.isnan(percentile([], 50))
