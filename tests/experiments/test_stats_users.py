"""Users as the unit (delta method = cluster-robust OLS) and the mixture SPRT's formulas,
pinned against reference computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import integrate, optimize
from scipy.stats import norm

from experiments.stats import (
    msprt_half_width,
    msprt_lambda,
    ratio_mean_var,
    two_proportion_test,
    user_level_diff,
)


def clustered_groups(rng, users: int, lift: float = 0.0):
    n = 1 + rng.poisson(3, users)
    p = rng.beta(2, 3, users)
    treated = rng.random(users) < 0.5
    p = np.clip(p + lift * treated, 0, 1)
    s = rng.binomial(n, p)
    return n, s, treated


def test_the_delta_method_is_statsmodels_cluster_robust_ols() -> None:
    rng = np.random.default_rng(1)
    n, s, treated = clustered_groups(rng, 800, lift=0.03)
    # request-level rows: outcome, treatment dummy, user id
    user = np.repeat(np.arange(n.size), n)
    y = np.concatenate([np.r_[np.ones(k), np.zeros(m - k)] for k, m in zip(s, n, strict=True)])
    x = sm.add_constant(treated[user].astype(float))
    fit = sm.OLS(y, x).fit(cov_type="cluster", cov_kwds={"groups": user, "use_correction": False})
    res = user_level_diff((s[~treated], n[~treated]), (s[treated], n[treated]), sequential=False)
    assert res.diff == pytest.approx(fit.params[1], rel=1e-12)
    assert res.se == pytest.approx(fit.bse[1], rel=1e-9)
    # and it is wider than the per-request test's standard error on clustered data
    naive = two_proportion_test(int(s[~treated].sum()), int(n[~treated].sum()),
                                int(s[treated].sum()), int(n[treated].sum()))
    naive_se = (naive.ci_high - naive.ci_low) / (2 * norm.isf(0.025))
    assert res.se > 1.2 * naive_se


def test_ratio_variance_by_hand() -> None:
    ratio, var, users = ratio_mean_var([1, 0, 3], [2, 1, 4])
    assert ratio == pytest.approx(4 / 7) and users == 3
    assert var == pytest.approx(((1 - 8 / 7) ** 2 + (0 - 4 / 7) ** 2 + (3 - 16 / 7) ** 2) / 49)


@pytest.mark.parametrize(("diff", "variance", "tau"),
                         [(0.0, 1e-3, 0.05), (0.03, 4e-4, 0.05), (-0.1, 2e-3, 0.1),
                          (0.2, 1e-2, 0.02)])
def test_the_mixture_likelihood_ratio_equals_its_integral(diff, variance, tau) -> None:
    # Lambda = integral over theta ~ N(0, tau^2) of N(diff; theta, V) / N(diff; 0, V)
    sd = math.sqrt(variance)

    def integrand(theta: float) -> float:
        return (norm.pdf(diff, theta, sd) / norm.pdf(diff, 0, sd)) * norm.pdf(theta, 0, tau)

    reference, _ = integrate.quad(integrand, -12 * tau, 12 * tau, limit=200)
    assert msprt_lambda(diff, variance, tau) == pytest.approx(reference, rel=1e-7)


@pytest.mark.parametrize(("variance", "tau", "alpha"), [(1e-3, 0.05, 0.05), (4e-4, 0.1, 0.1)])
def test_the_confidence_sequence_is_where_lambda_reaches_one_over_alpha(variance, tau,
                                                                        alpha) -> None:
    boundary = optimize.brentq(lambda d: msprt_lambda(d, variance, tau) - 1 / alpha, 0, 1)
    assert msprt_half_width(variance, tau, alpha) == pytest.approx(boundary, rel=1e-9)
    # wider than the fixed-horizon interval at the same level
    assert boundary > norm.isf(alpha / 2) * math.sqrt(variance)


def test_sequential_result_carries_an_always_valid_p_value() -> None:
    rng = np.random.default_rng(5)
    n, s, treated = clustered_groups(rng, 3000, lift=0.08)
    res = user_level_diff((s[~treated], n[~treated]), (s[treated], n[treated]))
    assert res.sequential and res.significant and res.ci_low > 0
    assert res.p_value == pytest.approx(1 / res.e_value) and res.p_value < 0.05
    assert res.control_users + res.treatment_users == 3000


def test_cuped_keeps_the_estimate_and_cuts_the_variance_by_what_the_pre_period_explains():
    rng = np.random.default_rng(9)
    users = 6000
    p = rng.beta(2, 3, users)
    treated = rng.random(users) < 0.5
    n = 1 + rng.poisson(3, users)
    s = rng.binomial(n, np.clip(p + 0.03 * treated, 0, 1))
    n_pre = np.full(users, 30)
    x = rng.binomial(n_pre, p) / n_pre  # a long pre-period: a good predictor
    plain = user_level_diff((s[~treated], n[~treated]), (s[treated], n[treated]),
                            sequential=False)
    cuped = user_level_diff((s[~treated], n[~treated]), (s[treated], n[treated]),
                            sequential=False, covariates=(x[~treated], x[treated]))
    assert cuped.variance_reduction > 0.3
    assert cuped.se**2 == pytest.approx(plain.se**2 * (1 - cuped.variance_reduction))
    assert abs(cuped.diff - 0.03) < 2.5 * cuped.se  # still centred on the true lift
    # a covariate of noise changes (almost) nothing
    noise = rng.random(users)
    same = user_level_diff((s[~treated], n[~treated]), (s[treated], n[treated]),
                           sequential=False, covariates=(noise[~treated], noise[treated]))
    assert abs(same.variance_reduction) < 0.01
    with pytest.raises(ValueError, match="one covariate value per user"):
        user_level_diff((s[~treated], n[~treated]), (s[treated], n[treated]),
                        covariates=(x[:3], x[treated]))
