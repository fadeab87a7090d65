"""Experiment statistics, pure functions (numbers in, numbers out).

* :func:`two_proportion_test`: difference of two proportions (treatment - control) with a Wald
  confidence interval (unpooled standard error) and the pooled two-proportion z-test p-value,
  the same figures as ``statsmodels.stats.proportion.proportions_ztest`` and
  ``confint_proportions_2indep(method="wald")``.
* :func:`srm_test`: sample-ratio mismatch, Pearson chi-square of observed counts against the
  configured shares (``scipy.stats.chisquare``).
* :func:`min_sample_size` / :func:`power`: per-group sample size for a two-sided test of two
  proportions on Cohen's h (``statsmodels`` ``NormalIndPower`` with ``proportion_effectsize``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from scipy.stats import chi2, norm


@dataclass(frozen=True)
class ProportionDiff:
    control_rate: float
    treatment_rate: float
    diff: float  # treatment - control
    ci_low: float
    ci_high: float
    z: float
    p_value: float  # two-sided
    confidence: float

    @property
    def significant(self) -> bool:
        return self.ci_low > 0 or self.ci_high < 0

    @property
    def relative_lift(self) -> float:
        return self.diff / self.control_rate if self.control_rate > 0 else math.inf


def two_proportion_test(
    control_successes: int, control_n: int, treatment_successes: int, treatment_n: int,
    confidence: float = 0.95,
) -> ProportionDiff:
    if control_n <= 0 or treatment_n <= 0:
        raise ValueError("both groups need at least one trial")
    p1, p2 = control_successes / control_n, treatment_successes / treatment_n
    diff = p2 - p1
    se = math.sqrt(p1 * (1 - p1) / control_n + p2 * (1 - p2) / treatment_n)
    zc = float(norm.ppf(0.5 + confidence / 2))
    pooled = (control_successes + treatment_successes) / (control_n + treatment_n)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / control_n + 1 / treatment_n))
    if se0 > 0:
        z = diff / se0
        p_value = float(2 * norm.sf(abs(z)))
    else:  # both all-success or all-failure: no evidence of a difference
        z, p_value = 0.0, 1.0
    return ProportionDiff(p1, p2, diff, diff - zc * se, diff + zc * se, z, p_value, confidence)


@dataclass(frozen=True)
class SrmResult:
    observed: dict[str, int]
    expected: dict[str, float]
    chi2: float
    dof: int
    p_value: float
    threshold: float

    @property
    def mismatch(self) -> bool:
        return self.p_value < self.threshold


def srm_test(
    observed: Mapping[str, int], expected_shares: Mapping[str, float], threshold: float = 0.001,
) -> SrmResult:
    """Chi-square goodness of fit of per-variant counts to the configured shares. Variants
    with a zero share are left out (they must see no traffic; a nonzero count there is an SRM
    by itself, reported as chi2 = inf)."""
    total = sum(observed.get(v, 0) for v in expected_shares)
    share_sum = sum(s for s in expected_shares.values() if s > 0)
    stat, dof, zero_share_traffic = 0.0, -1, False
    expected: dict[str, float] = {}
    for v, share in expected_shares.items():
        if share <= 0:
            zero_share_traffic |= observed.get(v, 0) > 0
            continue
        e = total * share / share_sum
        expected[v] = e
        dof += 1
        if e > 0:
            stat += (observed.get(v, 0) - e) ** 2 / e
    if zero_share_traffic:
        return SrmResult(dict(observed), expected, math.inf, max(dof, 1), 0.0, threshold)
    p_value = float(chi2.sf(stat, dof)) if dof > 0 else 1.0
    return SrmResult(dict(observed), expected, stat, dof, p_value, threshold)


def cohens_h(p1: float, p2: float) -> float:
    """Effect size of two proportions (statsmodels' ``proportion_effectsize(p2, p1)``)."""
    return 2 * math.asin(math.sqrt(p2)) - 2 * math.asin(math.sqrt(p1))


def power(p_control: float, p_treatment: float, n_per_group: float, alpha: float = 0.05) -> float:
    """Power of the two-sided test with ``n_per_group`` in each group (both tails counted)."""
    h = abs(cohens_h(p_control, p_treatment))
    shift = h * math.sqrt(n_per_group / 2)
    zc = float(norm.isf(alpha / 2))
    return float(norm.sf(zc - shift) + norm.cdf(-zc - shift))


def min_sample_size(
    p_control: float, min_detectable_lift: float, alpha: float = 0.05, power_target: float = 0.8,
) -> int:
    """Users per group to detect an absolute lift of ``min_detectable_lift`` over
    ``p_control`` with a two-sided test at ``alpha`` and the given power (rounded up)."""
    p_treatment = p_control + min_detectable_lift
    if not 0 < p_control < 1 or not 0 < p_treatment < 1:
        raise ValueError("proportions must lie in (0, 1)")
    h = abs(cohens_h(p_control, p_treatment))
    if h == 0:
        raise ValueError("a zero lift needs infinite samples")
    n = 2 * ((norm.isf(alpha / 2) + norm.ppf(power_target)) / h) ** 2
    # the closed form ignores the far tail; step up until the exact power is met
    n_int = max(2, math.floor(n))
    while power(p_control, p_treatment, n_int, alpha) < power_target:
        n_int += 1
    return n_int


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), ``q`` in [0, 100]; NaN when empty."""
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


# --- users as the unit, and decisions taken while data arrives ------------------------------
@dataclass(frozen=True)
class RatioDiff:
    """Difference of two ratio metrics (treatment - control), each ``sum(successes) /
    sum(requests)`` over the users of a group, with users as the unit of analysis.

    ``se`` is the delta-method standard error of the difference (the cluster-robust CR0
    sandwich of a regression of the per-request outcome on the group, clustered by user).
    ``ci_low``/``ci_high``: a fixed-horizon interval at ``confidence`` when ``sequential`` is
    False; otherwise the always-valid confidence sequence of the normal mixture SPRT (valid at
    every look at once, so peeking after every window keeps the error rate). ``p_value``:
    fixed-horizon two-sided p, or the always-valid p-value ``min(1, 1/Lambda)`` at this look.
    """

    control_rate: float
    treatment_rate: float
    diff: float
    se: float
    ci_low: float
    ci_high: float
    p_value: float
    confidence: float
    control_users: int
    treatment_users: int
    sequential: bool
    e_value: float = math.nan  # Lambda: the mixture likelihood ratio (sequential only)
    # CUPED: 1 - adjusted variance / unadjusted variance (0 without a covariate)
    variance_reduction: float = 0.0

    @property
    def significant(self) -> bool:
        return self.ci_low > 0 or self.ci_high < 0

    @property
    def z(self) -> float:
        return self.diff / self.se if self.se > 0 else 0.0


def ratio_mean_var(successes, requests) -> tuple[float, float, int]:
    """(ratio, delta-method variance, users) of ``sum(s) / sum(n)`` over users: the CR0
    cluster-robust variance ``sum((s_u - R n_u)^2) / (sum n_u)^2``."""
    import numpy as np

    s = np.asarray(successes, dtype=np.float64)
    n = np.asarray(requests, dtype=np.float64)
    total = float(n.sum())
    if total <= 0:
        raise ValueError("a group needs at least one request")
    ratio = float(s.sum()) / total
    resid = s - ratio * n
    return ratio, float(resid @ resid) / total**2, int(s.size)


def msprt_lambda(diff: float, variance: float, tau: float) -> float:
    """The normal mixture SPRT's likelihood ratio for H0: difference 0, mixing N(0, tau^2)
    over the alternative (Johari, Koomen, Pekelis, Walsh, "Always Valid Inference: Continuous
    Monitoring of A/B Tests", Operations Research 2022; with V the variance of the
    difference)::

        Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 diff^2 / (2 V (V + tau^2)))
    """
    if variance <= 0:
        return math.inf if diff != 0 else 1.0
    t2 = tau * tau
    log_lambda = (0.5 * math.log(variance / (variance + t2))
                  + t2 * diff * diff / (2 * variance * (variance + t2)))
    return math.exp(log_lambda) if log_lambda < 700 else math.inf


def msprt_half_width(variance: float, tau: float, alpha: float) -> float:
    """Half-width of the mSPRT's confidence sequence at level 1 - alpha: the set of
    differences ``d`` with ``Lambda(diff - d) < 1/alpha``."""
    if variance <= 0:
        return 0.0
    t2 = tau * tau
    return math.sqrt(variance * (variance + t2) / t2
                     * (2 * math.log(1 / alpha) + math.log((variance + t2) / variance)))


def user_level_diff(
    control: tuple, treatment: tuple, confidence: float = 0.95, sequential: bool = True,
    tau: float = 0.05, covariates: tuple | None = None,
) -> RatioDiff:
    """Treatment - control of a per-request rate with users as the unit.

    ``control`` and ``treatment`` are ``(successes per user, requests per user)`` sequences.
    ``tau``: the mixing standard deviation of the sequential test, the size of difference it
    is most sensitive to (here 5 points of watch-through).

    ``covariates``: ``(control x, treatment x)``, one value per user in the same order, e.g.
    each user's watch-through before the experiment (CUPED, Deng, Xu, Kohavi, Walker, WSDM
    2013, applied to the delta method's per-user linearisation of the ratio): with
    ``y_u = (s_u - R n_u) / mean(n)`` and ``theta = cov(y, x) / var(x)`` pooled over both
    groups, the difference becomes ``(R_t - R_c) - theta (mean x_t - mean x_c)`` with variance
    ``var(y_t - theta x_t) / k_t + var(y_c - theta x_c) / k_c``. Randomisation makes the
    covariate independent of the group, so the estimate stays unbiased while the variance
    falls by the share of it the pre-period explains."""
    import numpy as np

    rc, vc, uc = ratio_mean_var(*control)
    rt, vt, ut = ratio_mean_var(*treatment)
    diff, var = rt - rc, vc + vt
    reduction = 0.0
    if covariates is not None:
        sc, nc = (np.asarray(a, np.float64) for a in control)
        st, nt = (np.asarray(a, np.float64) for a in treatment)
        xc, xt = (np.asarray(a, np.float64) for a in covariates)
        if xc.shape != sc.shape or xt.shape != st.shape:
            raise ValueError("one covariate value per user, in the order of the counts")
        yc, yt = (sc - rc * nc) / nc.mean(), (st - rt * nt) / nt.mean()
        x, y = np.concatenate([xc, xt]), np.concatenate([yc, yt])
        vx = float(x.var())
        if vx > 0:
            theta = float(((x - x.mean()) * y).mean() / vx)
            adjusted = (float((yc - theta * xc).var()) / uc + float((yt - theta * xt).var()) / ut)
            diff -= theta * (float(xt.mean()) - float(xc.mean()))
            reduction = 1 - adjusted / var if var > 0 else 0.0
            var = adjusted
    se = math.sqrt(var)
    alpha = 1 - confidence
    if sequential:
        lam = msprt_lambda(diff, var, tau)
        half = msprt_half_width(var, tau, alpha)
        p = min(1.0, 1.0 / lam) if lam > 0 else 1.0
        return RatioDiff(rc, rt, diff, se, diff - half, diff + half, p, confidence, uc, ut,
                         True, lam, reduction)
    zc = float(norm.isf(alpha / 2))
    p = float(2 * norm.sf(abs(diff) / se)) if se > 0 else (1.0 if diff == 0 else 0.0)
    return RatioDiff(rc, rt, diff, se, diff - zc * se, diff + zc * se, p, confidence, uc, ut,
                     False, math.nan, reduction)
